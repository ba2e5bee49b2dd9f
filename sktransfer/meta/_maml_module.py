"""The MAML meta-model: a learner, its inner update, and a task-batching runner.

:class:`MAMLModule` is MAML's outer objective on top of the shared inner
loop (:class:`~sktransfer.meta._inner_loop.InnerLoopModule`): the query loss
of a task after ``inner_steps`` inner steps on its support set
(:meth:`MAMLModule.task_loss`), averaged over a meta-batch and
differentiated by the runner chosen at build (vmap, loop or compiled; see
:mod:`._task_batching`). The inner update (plain SGD, Meta-SGD, the learned
meta-LSTM rule, or a user's) is a strategy object (:mod:`._inner_update`).
:func:`build_maml_module` builds one from the estimators' parameters.
"""

import torch

from ._functional_forward import functional_forward_fn
from ._inner_loop import InnerLoopModule, inner_loop, resolve_adapt_layers
from ._inner_update import build_inner_update
from ._learner import has_batch_norm, use_fused_batch_norm, use_primitive_batch_norm
from ._task_batching import (
    CompiledRunner,
    LoopRunner,
    VmapRunner,
    choose_runner,
    choose_task_batching,  # noqa: F401  (its home before 0.2)
    vmap_failure,
)

__all__ = ["MAMLModule", "build_maml_module"]


class MAMLModule(InnerLoopModule):
    """MAML's meta-step on a learner adapted by the shared inner loop.

    Parameters
    ----------
    learner, inner_update, adapt_layers, inner_steps, inner_steps_test, task
        See :class:`~sktransfer.meta._inner_loop.InnerLoopModule`.
    runner : TaskBatchRunner
        How a meta-batch becomes the meta-loss and its gradient.
    first_order : bool
        Drop the second-order terms of the meta-gradient.
    """

    def __init__(self, learner, inner_update, runner, *, first_order, adapt_layers,
                 inner_steps, inner_steps_test, task="classification"):
        super().__init__(learner, inner_update, adapt_layers=adapt_layers,
                         inner_steps=inner_steps, inner_steps_test=inner_steps_test, task=task)
        self.first_order = bool(first_order)
        self.runner = runner

    def _upgrade_state(self, state):
        state = super()._upgrade_state(state)
        batching = state.pop("task_batching")
        reason = state.pop("task_batching_reason", "")
        if state.pop("compile_step", False):
            state["runner"] = CompiledRunner(reason)
        else:  # "auto:vmap" only before the first step, which rewrote it
            state["runner"] = (LoopRunner if batching == "loop" else VmapRunner)(reason)
        return state

    def task_loss(self, Xs, ys, Xq, yq, functional, channels_last=False):
        """One task's query loss after the inner loop on its support set, and its metric
        (query accuracy, or the query loss for regression).

        Differentiable with respect to the meta-parameters (the learner's
        initial parameters and the inner update's). ``functional=True``
        computes the inner gradients with :mod:`torch.func` (for
        :func:`torch.func.vmap`).
        """
        params = dict(self.learner.named_parameters())
        forward, fs, fq = self.task_forward(None, Xs, Xq, channels_last)
        fast = inner_loop(forward, {k: params[k] for k in self.adapt_names}, fs, ys,
                          self.loss_fn, self.inner_steps, self.inner_update,
                          first_order=self.first_order, functional=functional)
        out = forward(fast, fq)
        loss = self.loss_fn(out, yq)
        if self.task == "classification":
            metric = (out.argmax(-1) == yq).float().mean()
        else:
            metric = loss.detach()
        return loss, metric

    def meta_step(self, tasks, backward=True):
        """Mean query loss and accuracy of a meta-batch; the meta-gradient in ``.grad``.

        ``tasks`` is ``(Xs, ys, Xq, yq)``, each stacked over the meta-batch;
        the accuracy is ``None`` for regression.
        """
        loss, metric = self.runner.meta_step(self, tasks, backward)
        return loss, (metric if self.task == "classification" else None)


def _dummy_tasks(sample_shape, support_size, query_size, n_out, task, dtype):
    """A meta-batch of one all-zero task of the given shape (for :func:`vmap_failure`)."""
    Xs = torch.zeros(1, support_size, *sample_shape, dtype=dtype)
    Xq = torch.zeros(1, query_size, *sample_shape, dtype=dtype)
    if task == "classification":
        ys = (torch.arange(support_size) % n_out).unsqueeze(0)
        yq = (torch.arange(query_size) % n_out).unsqueeze(0)
    else:
        ys = torch.zeros(1, support_size, dtype=dtype)
        yq = torch.zeros(1, query_size, dtype=dtype)
    return Xs, ys, Xq, yq


def build_maml_module(learner, *, inner_lr, inner_steps, inner_steps_test=None,
                      first_order=False, learn_inner_lr=False, adapt_layers="all",
                      inner_optimizer="sgd", task_batching="loop", compile_step=False,
                      task="classification", device="cpu", sample_shape=None,
                      support_size=1, query_size=1, fuse_batch_norm=False):
    """A :class:`MAMLModule` from the parameters of the MAML-family estimators.

    The runner is chosen here, once (:func:`~._task_batching.choose_runner`):
    with ``task_batching="auto"``, by device and task size
    (``support_size + query_size`` examples), and a vmapped step is tried on
    a dummy task of ``sample_shape`` (see :func:`~._task_batching.vmap_failure`):
    if it fails, the per-task loop. With ``fuse_batch_norm`` (the default
    network) the loop and compiled runners get PyTorch's fused batch norm
    (:func:`~._learner.use_fused_batch_norm`).
    """
    n_params = sum(p.numel() for p in learner.parameters())
    if compile_step:
        if not first_order or learn_inner_lr or inner_optimizer != "sgd":
            raise ValueError(
                "compile_step=True needs first-order MAML with a fixed inner rate "
                "(first_order=True, learn_inner_lr=False, inner_optimizer='sgd'): the "
                "second-order meta-gradient cannot be compiled")
    runner = choose_runner(task_batching, compile_step, device, support_size + query_size,
                           n_params, has_batch_norm(learner))
    if fuse_batch_norm and isinstance(runner, (LoopRunner, CompiledRunner)):
        use_fused_batch_norm(learner)
    if isinstance(runner, VmapRunner):
        use_primitive_batch_norm(learner)  # a user's fused batch norm is inexact under vmap
    if compile_step and functional_forward_fn(learner) is None:
        raise ValueError(
            "compile_step=True needs a network made of plain layers (MLP, Conv4, "
            "Sequential stacks of Linear/Conv2d/batch norm without running "
            "statistics/ReLU/Tanh/MaxPool2d/Flatten)")
    params = dict(learner.named_parameters())
    adapted = {n: params[n] for n in resolve_adapt_layers(adapt_layers, list(params))}
    update = build_inner_update(inner_optimizer, learn_inner_lr, inner_lr, adapted)
    steps_test = inner_steps if inner_steps_test is None else inner_steps_test
    module = MAMLModule(learner, update, runner, first_order=first_order,
                        adapt_layers=adapt_layers, inner_steps=inner_steps,
                        inner_steps_test=steps_test, task=task)
    if task_batching == "auto" and isinstance(runner, VmapRunner) and sample_shape is not None:
        dummy = _dummy_tasks(sample_shape, support_size, query_size, learner.head.out_features,
                             task, learner.head.weight.dtype)
        failure = vmap_failure(module, dummy)
        if failure is not None:
            module.runner = LoopRunner(f"vmap failed on this module ({failure}); using the "
                                       "per-task loop")
    return module
