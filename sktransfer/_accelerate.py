"""Training through Hugging Face Accelerate: one or several GPUs, data parallel.

An estimator with an ``accelerator`` (an :class:`accelerate.Accelerator`)
trains its private skorch net through skorch's
:class:`skorch.hf.AccelerateMixin`: Accelerate places the model on its
device, wraps it for distributed data parallelism when the script runs
under ``accelerate launch`` with several processes (each process trains on
its shard of every epoch's batches and the gradients are averaged across
processes), and runs the forward pass under its mixed precision.

:class:`AcceleratedNetMixin` adds what sktransfer's nets need on top of
skorch's mixin:

* the network is not wrapped in ``DistributedDataParallel``: the
  gradients are averaged across processes after each backward pass by one
  all-reduce (:meth:`~AcceleratedNetMixin.sync_gradients`), so the parts of
  a training step outside ``forward`` (task weightings, continual
  penalties and gradient projections) see the averaged gradients;
* every ``fit``/``partial_fit`` prepares the net again if an earlier one
  unwrapped it, so that the continual estimators, which call
  ``partial_fit`` once per task, train every task data-parallel;
* the batches come from a :class:`torch.utils.data.DataLoader`, which
  Accelerate shards across processes (sktransfer's faster in-memory
  iterator cannot be sharded).
"""

import torch
from skorch.callbacks import LRScheduler
from skorch.hf import AccelerateMixin

__all__ = ["AcceleratedNetMixin", "check_accelerator"]


def check_accelerator(accelerator):
    """Validate an estimator's ``accelerator`` parameter; returns it (or None)."""
    if accelerator is None:
        return None
    try:
        from accelerate import Accelerator
    except ImportError as exc:  # pragma: no cover - accelerate is in the test extra
        raise ImportError(
            "accelerator= needs Hugging Face Accelerate: pip install 'sktransfer[accelerate]'"
        ) from exc
    if not isinstance(accelerator, Accelerator):
        raise TypeError(
            "accelerator must be None or an accelerate.Accelerator, got "
            f"{type(accelerator).__name__}"
        )
    return accelerator


class AcceleratedNetMixin(AccelerateMixin):
    """skorch's :class:`~skorch.hf.AccelerateMixin` for sktransfer's nets (see the module)."""

    def training_device(self):
        """The accelerator's device (skorch's ``device`` is None under Accelerate)."""
        return self.accelerator.device

    @property
    def n_processes(self):
        """Number of data-parallel processes of the accelerator."""
        return int(self.accelerator.num_processes)

    def _initialize_accelerator(self):
        """Place the modules on the accelerator's device and prepare the optimizers.

        Unlike skorch's mixin this does not wrap the module in
        ``DistributedDataParallel``, whose gradient hooks only see parameters
        used inside ``forward``: task weightings and continual strategies use
        parameters outside it (uncertainty weights, penalties) and leave some
        unused (other tasks' heads). The gradients are averaged across
        processes after each backward pass instead (:meth:`sync_gradients`).
        """
        if self._wrapped_with_accelerator:
            return self
        accelerator = self.accelerator
        for name in self._modules + self._criteria:
            module = getattr(self, name + "_")
            if isinstance(module, torch.nn.Module):
                module.to(accelerator.device)
                if self.n_processes > 1:  # start every process from the same weights
                    for tensor in list(module.parameters()) + list(module.buffers()):
                        torch.distributed.broadcast(tensor.data, src=0)
        with self._current_init_context("optimizer"):
            for name in self._optimizers:
                optimizer = getattr(self, name + "_")
                if isinstance(optimizer, torch.optim.Optimizer):
                    setattr(self, name + "_", accelerator.prepare(optimizer))
        for _, callback in self.callbacks_:
            if isinstance(callback, LRScheduler):
                callback.policy_ = accelerator.prepare(callback.policy_)
        self._wrapped_with_accelerator = True
        return self

    def sync_gradients(self):
        """Average the gradients of the trainable parameters across processes (once a step).

        One all-reduce of the flattened gradients; a parameter without a
        gradient on every process keeps ``grad=None`` (so optimizers skip it
        as in a single process).
        """
        if self.n_processes == 1 or self.__dict__.get("_grads_synced"):
            return
        params = [p for p in self.module_.parameters() if p.requires_grad]
        if not params:
            return
        # the gradients and, at the end, one "has a gradient" flag per parameter
        flat = torch.cat(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
             for p in params]
            + [torch.tensor([p.grad is not None for p in params], dtype=params[0].dtype,
                            device=params[0].device)])
        flat = self.accelerator.reduce(flat, "sum")
        has = flat[-len(params):].tolist()
        flat = flat[:-len(params)] / self.n_processes
        offset = 0
        for p, used in zip(params, has):
            n = p.numel()
            if used:
                p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n
        self.__dict__["_grads_synced"] = True

    def _step_optimizer(self, step_fn):
        def step_and_sync():
            self.__dict__["_grads_synced"] = False
            out = step_fn()
            self.sync_gradients()
            return out

        return super()._step_optimizer(step_and_sync)

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        # partial_fit after an unwrapping on_train_end: wrap the (maybe grown)
        # network and the (maybe new) optimizer again
        self._initialize_accelerator()
        return super().fit_loop(X, y=y, epochs=epochs, **fit_params)

    def autocast(self):
        """Accelerate's mixed-precision context (replaces ``precision=``)."""
        return self.accelerator.autocast()
