"""Task-batching runners: how a meta-batch of tasks becomes MAML's meta-loss and meta-gradient.

Three runners give the same numbers (up to float rounding) in different ways:

* :class:`VmapRunner`: :func:`torch.func.vmap` over the tasks of the pure
  per-task function (:meth:`MAMLModule.task_loss
  <sktransfer.meta._maml_module.MAMLModule.task_loss>` with
  ``functional=True``: the inner loop with :func:`torch.func.grad_and_value`,
  the query loss with functional calls), then one backward pass. Fast when
  every task is small (few-shot queries, small networks, GPUs), but every
  task's graph is alive at once.
* :class:`LoopRunner`: one task at a time with :func:`torch.autograd.grad`,
  each task's graph freed by its own backward pass. Less memory, no batching
  rules needed (any module works), faster for large tasks on a CPU.
* :class:`CompiledRunner`: first-order MAML only; the per-task step (inner
  loop and query gradient) as one pure function compiled with
  :func:`torch.compile`.

The estimator chooses one when it builds the meta-model
(:func:`choose_runner`), from ``task_batching`` and ``compile_step``, the
device and the task size (:func:`choose_task_batching`) and, for
``task_batching="auto"``, whether a vmapped step runs on this module at all
(:func:`vmap_failure`).
"""

from abc import ABCMeta, abstractmethod

import torch
from torch.func import grad_and_value, vmap

from ._inner_loop import inner_loop

__all__ = ["CPU_VMAP_MAX_EXAMPLES", "CompiledRunner", "LoopRunner", "TaskBatchRunner",
           "VmapRunner", "choose_runner", "choose_task_batching", "vmap_failure"]

#: On a CPU the vmapped path wins while a task holds at most this many examples
#: (support + query) for a Conv4 on 28x28 images; see ``choose_task_batching``.
CPU_VMAP_MAX_EXAMPLES = 16


def choose_task_batching(device, examples_per_task, n_params, batch_norm=False):
    """The rule behind ``task_batching="auto"``; returns ``(choice, reason)``.

    * On CUDA: ``"vmap"`` (one batched kernel per layer for the whole
      meta-batch keeps the GPU busy).
    * On a CPU with batch normalisation in the network: ``"loop"``. The loop
      runs PyTorch's fused batch-norm kernel (exact outside ``vmap``), which
      is faster for a Conv4; under ``vmap`` batch norm must be written with
      primitive operations.
    * On a CPU otherwise: ``"vmap"`` when a task is small (at most
      ``CPU_VMAP_MAX_EXAMPLES`` support + query examples, scaled down for
      networks larger than a 64-channel Conv4's 113k parameters), else
      ``"loop"``: on one thread the batched path saves per-operation
      overhead, which dominates small tasks, but for larger tasks its bigger
      intermediate tensors (and every task's graph alive at once) cost more
      than they save.

    The measurements behind the rule are on the Benchmarks page
    (:ref:`benchmarks_meta`). When the rule picks ``"vmap"`` but a vmapped
    step raises on the module (no batching rules, in-place buffer updates),
    ``"auto"`` uses ``"loop"``: the estimator tries one step on a dummy task
    when it builds the model.

    Parameters
    ----------
    device : str or torch.device
        The device of the meta-model; a name starting with ``"cuda"`` means
        a GPU.
    examples_per_task : int
        Support plus query examples of one task.
    n_params : int
        Parameters of the network (its size scales the CPU limit down).
    batch_norm : bool, default=False
        Whether the network has batch normalisation.

    Returns
    -------
    choice : {"vmap", "loop"}
        The task batching.
    reason : str
        Why, in words (the estimator's ``task_batching_reason_``, unless a
        vmapped step then fails on the module).
    """
    if str(device).startswith("cuda"):
        return "vmap", "CUDA device: vmap batches the meta-batch into one kernel per layer"
    if batch_norm:
        return "loop", ("CPU and batch norm: the per-task loop with the fused batch-norm "
                        "kernel is fastest, and frees each task's graph")
    limit = CPU_VMAP_MAX_EXAMPLES * min(1.0, 113_000 / max(n_params, 1))
    if examples_per_task <= limit:
        return "vmap", (f"CPU, {examples_per_task} examples per task <= {limit:.0f}: "
                        "per-operation overhead dominates, vmap amortises it")
    return "loop", (f"CPU, {examples_per_task} examples per task > {limit:.0f}: the per-task "
                    "loop is faster and frees each task's graph")


class TaskBatchRunner(metaclass=ABCMeta):
    """Base class of the task-batching runners.

    A runner has one method, :meth:`meta_step`. It holds no tensors of the
    model; ``reason`` says why it was chosen (the estimator's
    ``task_batching_reason_``).

    Attributes
    ----------
    task_batching : str
        What the estimator reports as ``task_batching_``: ``"vmap"`` or ``"loop"``.
    reason : str
    """

    task_batching = None

    def __init__(self, reason=""):
        self.reason = reason

    @abstractmethod
    def meta_step(self, model, tasks, backward):
        """The meta-loss of a meta-batch and, with ``backward``, its gradient.

        Parameters
        ----------
        model : MAMLModule
            The meta-model (:meth:`~sktransfer.meta._maml_module.MAMLModule.task_loss`
            is one task's query loss after the inner loop).
        tasks : tuple of Tensor
            ``(Xs, ys, Xq, yq)``, each stacked over the tasks of the meta-batch.
        backward : bool
            Add the meta-gradient (of the mean query loss) to the ``.grad``
            of the model's parameters.

        Returns
        -------
        (Tensor, float)
            The mean query loss (detached) and the mean of the per-task metric
            (query accuracy, or the query loss for regression).
        """


class VmapRunner(TaskBatchRunner):
    """All tasks at once: :func:`torch.func.vmap` over the tasks, one backward pass."""

    task_batching = "vmap"

    def meta_step(self, model, tasks, backward):
        losses, metrics = vmap(lambda *t: model.task_loss(*t, functional=True),
                               randomness="different")(*tasks)
        loss = losses.mean()
        if backward:
            loss.backward()
        return loss.detach(), metrics.mean().item()


class LoopRunner(TaskBatchRunner):
    """One task at a time, each task's graph freed by its own backward pass.

    On a CPU the convolutions may run channels-last (see
    :meth:`~sktransfer.meta._inner_loop.InnerLoopModule.use_channels_last`).
    """

    task_batching = "loop"

    def meta_step(self, model, tasks, backward):
        n = tasks[0].shape[0]
        total, metric = 0.0, 0.0
        channels_last = model.use_channels_last(
            tasks[0], tasks[0].shape[1] + tasks[2].shape[1], second_order=not model.first_order)
        for t in range(n):
            loss, m = model.task_loss(*(a[t] for a in tasks), functional=False,
                                      channels_last=channels_last)
            if backward:
                (loss / n).backward()
            total = total + loss.detach()
            metric = metric + m.detach()
        return total / n, float(metric) / n


class CompiledRunner(TaskBatchRunner):
    """First-order MAML, one task at a time, the per-task step compiled.

    The per-task step (the inner loop, then the gradient of the query loss
    at the adapted parameters, which is the first-order meta-gradient) is one
    pure function of the parameters, compiled once with :func:`torch.compile`
    (backend :attr:`compile_backend`) and kept until the runner is pickled
    or copied. Needs first-order MAML, a fixed inner rate and a network of
    plain layers (:func:`~sktransfer.meta._functional_forward.functional_forward_fn`);
    :func:`choose_runner` checks.
    """

    task_batching = "loop"

    #: torch.compile backend (tests use "eager" to skip code generation).
    compile_backend = "inductor"

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_compiled", None)  # compiled code is rebuilt after unpickling
        return state

    def _task_gradient(self, model):
        """The first-order per-task gradient as one function, compiled once."""
        compiled = self.__dict__.get("_compiled")
        if compiled is None:
            forward = model.functional_forward()
            loss_fn, steps, update = model.loss_fn, model.inner_steps, model.inner_update
            adapt = model.adapt_names
            classification = model.task == "classification"

            def task_gradient(params, Xs, ys, Xq, yq):
                def support_forward(p, X):
                    return forward({**params, **p}, X)

                fast = inner_loop(support_forward, {k: params[k] for k in adapt}, Xs, ys,
                                  loss_fn, steps, update, first_order=True, functional=True)
                fast = {**params, **fast}

                def query_loss(p):
                    out = forward(p, Xq)
                    loss = loss_fn(out, yq)
                    metric = (out.argmax(-1) == yq).float().mean() if classification else loss
                    return loss, metric.detach()

                gq, (loss, metric) = grad_and_value(query_loss, has_aux=True)(fast)
                return gq, loss.detach(), metric

            compiled = torch.compile(task_gradient, backend=self.compile_backend)
            self.__dict__["_compiled"] = compiled
        return compiled

    def meta_step(self, model, tasks, backward):
        fn = self._task_gradient(model)
        named = dict(model.learner.named_parameters())
        params = {k: v.detach() for k, v in named.items()}
        n = tasks[0].shape[0]
        total = {k: torch.zeros_like(v) for k, v in params.items()}
        loss_sum, metric_sum = 0.0, 0.0
        for t in range(n):
            g, loss, metric = fn(params, *(a[t] for a in tasks))
            for k in total:
                total[k] += g[k] / n
            loss_sum += loss
            metric_sum += float(metric)
        if backward:
            for k, p in named.items():
                p.grad = total[k] if p.grad is None else p.grad + total[k]
        return loss_sum / n, metric_sum / n


RUNNERS = {"vmap": VmapRunner, "loop": LoopRunner}


def choose_runner(task_batching, compile_step, device, examples_per_task, n_params,
                  batch_norm=False):
    """The runner of a meta-model, from the estimator's parameters and the machine.

    ``compile_step=True`` gives :class:`CompiledRunner`; ``task_batching``
    ``"vmap"`` or ``"loop"`` gives that runner; ``"auto"`` follows
    :func:`choose_task_batching` (the caller then checks with
    :func:`vmap_failure` that a vmapped step runs on its module).
    """
    if compile_step:
        return CompiledRunner("compiled first-order step")
    if task_batching == "auto":
        choice, reason = choose_task_batching(device, examples_per_task, n_params, batch_norm)
        return RUNNERS[choice](reason)
    return RUNNERS[task_batching]("set by task_batching")


def vmap_failure(model, tasks):
    """Why one vmapped meta-step fails on ``model`` (a string), or ``None`` if it runs.

    Runs :class:`VmapRunner` with a backward pass on ``tasks`` (a dummy
    meta-batch) and leaves no trace: the global random stream is forked, the
    gradients are reset and the buffers restored. Only torch's errors for an
    operation without a batching rule (``RuntimeError``,
    ``NotImplementedError``) count as a failure.
    """
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            VmapRunner().meta_step(model, tasks, backward=True)
    except (RuntimeError, NotImplementedError) as exc:
        return f"{type(exc).__name__}: {str(exc)[:120]}"
    finally:
        for p in model.parameters():
            p.grad = None
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
    return None
