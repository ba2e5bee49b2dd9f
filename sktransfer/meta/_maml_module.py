"""The MAML meta-model: the learner, learned inner rates, the meta-step and adaptation.

``meta_step`` computes the meta-loss of a meta-batch of tasks and its
gradient in one of two ways that give the same numbers:

* ``"vmap"``: :func:`torch.func.vmap` over the tasks of a pure per-task
  function (inner loop with :func:`torch.func.grad_and_value`, query loss with
  :func:`torch.func.functional_call`), then one backward pass. Fast when
  every task is small (few-shot queries, small networks, GPUs), but every
  task's graph is alive at once.
* ``"loop"``: one task at a time with :func:`torch.autograd.grad`, each
  task's graph freed by its own backward pass. Less memory, no batching
  rules needed (any module works), faster for large tasks on a CPU.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, grad_and_value, vmap

from ._functional import functional_forward_fn
from ._inner_loop import MetaLSTMUpdate, inner_loop

__all__ = ["MAMLModule", "choose_task_batching", "resolve_adapt_layers"]

#: On a CPU the vmapped path wins while a task holds at most this many examples
#: (support + query) for a Conv4 on 28x28 images; see ``choose_task_batching``.
CPU_VMAP_MAX_EXAMPLES = 16


def resolve_adapt_layers(adapt_layers, names):
    """Names of the parameters adapted in the inner loop."""
    if isinstance(adapt_layers, str):
        if adapt_layers == "all":
            return list(names)
        if adapt_layers == "head":
            return [n for n in names if n.startswith("head.")]
        prefixes = (adapt_layers,)
    elif isinstance(adapt_layers, (list, tuple)) and adapt_layers and all(
            isinstance(p, str) for p in adapt_layers):
        prefixes = tuple(adapt_layers)
    else:
        raise ValueError(
            "adapt_layers must be 'all', 'head' or a non-empty list of parameter-name "
            f"prefixes (such as 'head.' or 'trunk.features.8'), got {adapt_layers!r}"
        )
    chosen = [n for n in names if n.startswith(prefixes)]
    if not chosen:
        raise ValueError(f"adapt_layers={adapt_layers!r} matches no parameter; the "
                         f"parameters are {list(names)[:20]}")
    return chosen


def choose_task_batching(device, examples_per_task, n_params, batch_norm=False):
    """The rule behind ``task_batching="auto"``; returns ``(choice, reason)``.

    * On CUDA: ``"vmap"`` (one batched kernel per layer for the whole
      meta-batch keeps the GPU busy).
    * On a CPU with batch normalisation in the network: ``"loop"``. The loop
      runs PyTorch's fused batch-norm kernel (exact outside ``vmap``), which
      halves the step time of a Conv4; under ``vmap`` batch norm must be
      written with primitive operations.
    * On a CPU otherwise: ``"vmap"`` when a task is small (at most
      ``CPU_VMAP_MAX_EXAMPLES`` support + query examples, scaled down for
      networks larger than a 64-channel Conv4's 113k parameters), else
      ``"loop"``: on one thread the batched path saves per-operation
      overhead, which dominates small tasks, but for larger tasks its bigger
      intermediate tensors (and every task's graph alive at once) cost more
      than they save.

    ``benchmarks/bench_maml_speed.py`` measures both paths. If the vmapped
    step raises (a module without batching rules, in-place buffer updates),
    ``"auto"`` falls back to ``"loop"``.
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


def _classification_loss(out, y):
    return F.cross_entropy(out, y)


def _regression_loss(out, y):
    return F.mse_loss(out.reshape(y.shape), y)


class MAMLModule(nn.Module):
    """A learner with MAML's meta-step and test-time adaptation (see the module docstring)."""

    def __init__(self, learner, *, inner_lr, inner_steps, inner_steps_test, first_order,
                 learn_inner_lr, adapt_layers, task_batching, inner_optimizer="sgd",
                 task="classification", reason="", compile_step=False):
        super().__init__()
        self.learner = learner
        names = [n for n, _ in learner.named_parameters()]
        self.adapt_names = resolve_adapt_layers(adapt_layers, names)
        self.anil = all(n.startswith("head.") for n in self.adapt_names)
        self.inner_lr = float(inner_lr)
        self.inner_steps = int(inner_steps)
        self.inner_steps_test = int(inner_steps_test)
        self.first_order = bool(first_order)
        self.task = task
        params = dict(learner.named_parameters())
        if learn_inner_lr:
            self.inner_lrs = nn.ParameterDict({
                n.replace(".", "__"): nn.Parameter(torch.full_like(params[n], float(inner_lr)))
                for n in self.adapt_names})
        else:
            self.inner_lrs = None
        self.update_rule = MetaLSTMUpdate(inner_lr) if inner_optimizer == "meta_lstm" else None
        self.task_batching = task_batching  # "vmap", "loop" or "auto:vmap"
        self.task_batching_reason = reason
        self.compile_step = bool(compile_step)
        if self.compile_step:
            if not self.first_order or self.inner_lrs is not None or self.update_rule is not None:
                raise ValueError(
                    "compile_step=True needs first-order MAML with a fixed inner rate "
                    "(first_order=True, learn_inner_lr=False, inner_optimizer='sgd'): the "
                    "second-order meta-gradient cannot be compiled")
            if functional_forward_fn(learner) is None:
                raise ValueError(
                    "compile_step=True needs a network made of plain layers (MLP, Conv4, "
                    "Sequential stacks of Linear/Conv2d/batch norm without running "
                    "statistics/ReLU/Tanh/MaxPool2d/Flatten)")
            self.task_batching, self.task_batching_reason = "loop", "compiled first-order step"

    #: torch.compile backend of ``compile_step`` (tests use "eager" to skip code generation).
    compile_backend = "inductor"

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_compiled", None)  # compiled code is rebuilt after unpickling
        state.pop("_plans", None)  # so are the functional forwards
        return state

    def _functional_forward(self, channels_last=False):
        """:func:`functional_forward_fn` of the learner, planned once per memory format."""
        plans = self.__dict__.setdefault("_plans", {})
        if channels_last not in plans:
            plans[channels_last] = functional_forward_fn(self.learner,
                                                         channels_last=channels_last)
        return plans[channels_last]

    # ---------------------------------------------------------------- pieces
    @property
    def loss_fn(self):
        return _classification_loss if self.task == "classification" else _regression_loss

    def _lrs(self, detach=False, resize=None):
        if self.inner_lrs is None:
            return self.inner_lr
        out = {}
        for n in self.adapt_names:
            lr = self.inner_lrs[n.replace(".", "__")]
            lr = lr.detach() if detach else lr
            if resize is not None and n.startswith("head.") and lr.shape[0] != resize:
                lr = lr.mean(0, keepdim=True).expand(resize, *lr.shape[1:])
            out[n] = lr
        return out

    def _forward_fns(self, params, Xs, Xq, channels_last=False):
        """``(forward, support_input, query_input)`` for the inner loop.

        ``forward(p, X)`` runs the learner with the tensors of ``p`` in place
        of the adapted parameters (and ``params``, or the learner's own, for
        the others): as a compiled list of functional calls when the network
        is made of plain layers (see :func:`functional_forward_fn`), else with
        :func:`torch.func.functional_call`. With ANIL (only head parameters
        adapted) the trunk runs once per task and the inner loop works on the
        head alone.
        """
        if self.anil:
            if params is None:
                fs, fq = self.learner.trunk(Xs), self.learner.trunk(Xq)
            else:
                trunk = {k[6:]: v for k, v in params.items() if k.startswith("trunk.")}
                fs = functional_call(self.learner.trunk, trunk, (Xs,))
                fq = functional_call(self.learner.trunk, trunk, (Xq,))
            fs, fq = fs.flatten(1), fq.flatten(1)
            source = params if params is not None else dict(self.learner.named_parameters())
            head = {k: source[k] for k in ("head.weight", "head.bias")}

            def forward(p, X):
                return F.linear(X, p.get("head.weight", head["head.weight"]),
                                p.get("head.bias", head["head.bias"]))
            return forward, fs, fq
        learner = self.learner
        compiled = self._functional_forward(channels_last)
        if compiled is not None:
            base = params if params is not None else dict(learner.named_parameters())

            def forward(p, X):
                return compiled({**base, **p}, X)
            return forward, Xs, Xq
        base = params or {}

        def forward(p, X):
            return functional_call(learner, {**base, **p}, (X,))
        return forward, Xs, Xq

    def _task_loss(self, Xs, ys, Xq, yq, functional, channels_last=False):
        params = dict(self.learner.named_parameters())
        forward, fs, fq = self._forward_fns(None, Xs, Xq, channels_last)
        fast = inner_loop(forward, {k: params[k] for k in self.adapt_names}, fs, ys,
                          self.loss_fn, self.inner_steps, self._lrs(),
                          first_order=self.first_order, functional=functional,
                          update_rule=self.update_rule)
        out = forward(fast, fq)
        loss = self.loss_fn(out, yq)
        if self.task == "classification":
            metric = (out.argmax(-1) == yq).float().mean()
        else:
            metric = loss.detach()
        return loss, metric

    # ------------------------------------------------------------- meta-step
    def _meta_vmap(self, tasks, backward):
        losses, metrics = vmap(lambda *t: self._task_loss(*t, functional=True),
                               randomness="different")(*tasks)
        loss = losses.mean()
        if backward:
            loss.backward()
        return loss.detach(), metrics.mean().item()

    def _meta_loop(self, tasks, backward):
        n = tasks[0].shape[0]
        total, metric = 0.0, 0.0
        channels_last = self._use_channels_last(
            tasks[0], tasks[0].shape[1] + tasks[2].shape[1], second_order=not self.first_order)
        for t in range(n):
            loss, m = self._task_loss(*(a[t] for a in tasks), functional=False,
                                      channels_last=channels_last)
            if backward:
                (loss / n).backward()
            total = total + loss.detach()
            metric = metric + m.detach()
        return total / n, float(metric) / n

    #: Channels-last convolutions on a CPU: ``"auto"`` (the rule of
    #: ``_use_channels_last``), ``True`` or ``False``; a switch for benchmarks.
    channels_last = "auto"

    #: Second-order steps use channels-last from this many examples per task.
    CHANNELS_LAST_MIN_EXAMPLES = 20

    def _use_channels_last(self, X, examples_per_task=None, second_order=False):
        """Whether the convolutions of the per-task loop run in channels-last memory format.

        On a CPU, oneDNN's convolutions are faster on channels-last (NHWC)
        tensors: for a 64-channel Conv4 on 28x28 images a first-order MAML
        step is 1.3-1.6x faster. PyTorch's double backward (second order)
        gains 1.1-1.5x from 20 examples per task (support + query) but loses
        about 8% on 10, so second-order steps switch at
        ``CHANNELS_LAST_MIN_EXAMPLES``. Adaptation and prediction (first
        order, forward only) always use it, on float32 inputs. The results
        are the same up to float32 rounding (the rounding differs: on a
        random Conv4 with inner rate 0.4 both formats' meta-gradients are
        about 1e-4 to 1e-3 from a float64 computation).
        ``benchmarks/bench_maml_speed.py`` measures the speed.
        """
        if self.channels_last != "auto":
            return bool(self.channels_last)
        if X.device.type != "cpu" or X.dtype != torch.float32:
            return False
        return not second_order or examples_per_task >= self.CHANNELS_LAST_MIN_EXAMPLES

    def _compiled_task(self):
        """The first-order per-task gradient as one function, compiled once."""
        compiled = self.__dict__.get("_compiled")
        if compiled is None:
            forward = self._functional_forward()
            loss_fn, steps, lr = self.loss_fn, self.inner_steps, self.inner_lr
            adapt = set(self.adapt_names)
            classification = self.task == "classification"

            def task_gradient(params, Xs, ys, Xq, yq):
                fast = params
                for _ in range(steps):
                    g = grad(lambda p: loss_fn(forward(p, Xs), ys))(fast)
                    fast = {k: (v - lr * g[k] if k in adapt else v) for k, v in fast.items()}

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

    def _meta_compiled(self, tasks, backward):
        fn = self._compiled_task()
        named = dict(self.learner.named_parameters())
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

    def meta_step(self, tasks, backward=True):
        """Mean query loss and accuracy of a meta-batch; the meta-gradient in ``.grad``.

        ``tasks`` is ``(Xs, ys, Xq, yq)``, each stacked over the meta-batch.
        """
        if self.compile_step:
            loss, metric = self._meta_compiled(tasks, backward)
            return loss, (metric if self.task == "classification" else None)
        if self.task_batching == "loop":
            loss, metric = self._meta_loop(tasks, backward)
        elif self.task_batching == "vmap":
            loss, metric = self._meta_vmap(tasks, backward)
        else:  # "auto:vmap": fall back to the loop if this module cannot be vmapped
            try:
                loss, metric = self._meta_vmap(tasks, backward)
            except (RuntimeError, NotImplementedError) as exc:
                # torch's errors for an operation without a batching rule under vmap
                for p in self.parameters():
                    p.grad = None
                self.task_batching = "loop"
                self.task_batching_reason = (f"vmap failed on this module "
                                             f"({type(exc).__name__}: {str(exc)[:120]}); "
                                             "using the per-task loop")
                loss, metric = self._meta_loop(tasks, backward)
            else:
                self.task_batching = "vmap"
        return loss, (metric if self.task == "classification" else None)

    # -------------------------------------------------------------- adapting
    def adapt_state(self, Xs, ys, n_classes=None, steps=None):
        """Adapted parameters (a dict of detached tensors) for the support set.

        ``steps`` inner steps (default ``inner_steps_test``) with the inner
        rule of meta-training, without second-order graphs.

        For classification with ``n_classes`` different from the head's
        width, every row of the new head starts from the mean of the
        meta-learned rows (a permutation-invariant start, as in Ye & Chao,
        2022) and the learned inner rates of the head are averaged the same way.
        """
        params = {k: v.detach() for k, v in self.learner.named_parameters()}
        resize = None
        if self.task == "classification" and n_classes is not None:
            width = params["head.weight"].shape[0]
            if n_classes != width:
                resize = n_classes
                for k in ("head.weight", "head.bias"):
                    params[k] = params[k].mean(0, keepdim=True).expand(
                        n_classes, *params[k].shape[1:]).clone()
        adapt = {k: params[k].clone().requires_grad_(True) for k in self.adapt_names}
        with torch.enable_grad():
            forward, fs, _ = self._forward_fns(params, Xs, Xs[:1],
                                               self._use_channels_last(Xs))
            if self.anil:
                fs = fs.detach()
            steps = self.inner_steps_test if steps is None else steps
            fast = inner_loop(forward, adapt, fs, ys, self.loss_fn, steps,
                              self._lrs(detach=True, resize=resize), first_order=True,
                              functional=False, update_rule=self.update_rule)
        params.update({k: v.detach() for k, v in fast.items()})
        return params

    def predict_logits(self, state, X):
        compiled = self._functional_forward(self._use_channels_last(X))
        if compiled is not None:
            return compiled(state, X)
        return functional_call(self.learner, state, (X,))

