"""Averaged gradient episodic memory, A-GEM (Chaudhry et al., 2019).

A reservoir memory keeps samples of past tasks. At every step the gradient
``g`` of the current mini-batch is compared with the gradient ``g_ref`` of a
mini-batch drawn from the memory; when they conflict (``g . g_ref < 0``) the
step uses the projection

``g <- g - (g . g_ref) / (g_ref . g_ref) * g_ref``

so that, to first order, the loss on the memory does not increase.
"""

import torch
from torch.nn import functional as F

from .._weights import weighted_mean
from ._replay import ReservoirBuffer
from ._strategies import _POSITIVE_INT, Plugin, Strategy

__all__ = ["AGEM"]


class _AGEMPlugin(Plugin):
    def __init__(self, memory_size, sample_size):
        self.buffer = ReservoirBuffer(memory_size)
        self.sample_size = sample_size
        self.n_projected = 0

    def project_gradients(self, net, params, grads):
        if not self.buffer.size:
            return
        n = self.sample_size or (net.batch_size if net.batch_size > 0 else 256)
        Xm, ym, tm, wm = self.buffer.sample(n, return_weight=True)
        device = net.training_device()
        with torch.enable_grad():
            logits = net.module_(Xm.to(device), tm.to(device))
            if wm is None:
                loss = F.cross_entropy(logits, ym.to(device))
            else:
                loss = weighted_mean(F.cross_entropy(logits, ym.to(device), reduction="none"),
                                     wm)
            ref = torch.autograd.grad(loss, params, allow_unused=True)
        ref = [torch.zeros_like(p) if r is None else r for p, r in zip(params, ref)]
        dot = float(torch.stack([x.sum() for x in torch._foreach_mul(grads, ref)]).sum())
        if dot < 0:
            norm = float(torch.stack([x.sum() for x in torch._foreach_mul(ref, ref)]).sum())
            if norm > 0:
                torch._foreach_add_(grads, ref, alpha=-dot / norm)
                self.n_projected += 1

    def after_task(self, net, task):
        self.buffer.add(task.X, task.y, task.t, task.w)


class AGEM(Strategy):
    """A-GEM: project the gradient so the loss on a memory does not increase.

    Parameters
    ----------
    memory_size : int, default=1000
        Samples of past tasks kept (a reservoir over all of them).
    sample_size : int or None, default=None
        Memory samples for the reference gradient of each step (the
        training batch size when ``None``).

    Examples
    --------
    >>> from sktransfer.continual import AGEM, ContinualClassifier
    >>> ContinualClassifier(strategy=AGEM(memory_size=200))
    ContinualClassifier(strategy=AGEM(memory_size=200))
    """

    _parameter_constraints: dict = {
        "memory_size": [_POSITIVE_INT],
        "sample_size": [_POSITIVE_INT, None],
    }
    _keeps_memory = True

    def __init__(self, memory_size=1000, sample_size=None):
        self.memory_size = memory_size
        self.sample_size = sample_size

    def _build(self, scenario):
        sample_size = None if self.sample_size is None else int(self.sample_size)
        return _AGEMPlugin(int(self.memory_size), sample_size)
