"""Experience replay with asymmetric cross-entropy, ER-ACE (Caccia et al., 2022).

As in experience replay, a reservoir memory keeps samples of past tasks, but
the incoming mini-batch and the remembered samples get different losses:

``CE(mask_B(f(x)), y) + CE(f(x_m), y_m)``

where ``mask_B`` keeps only the logits of the classes present in the
incoming batch ``B`` (the others get a logit of ``MASK_VALUE``, probability
0), while the memory samples ``(x_m, y_m)`` use the full cross-entropy. The
new classes' samples then no longer push the old classes' logits down, which
is what makes plain replay forget after each new task (the representation
drift at task boundaries). As in the authors' code, the memory is a
reservoir over the stream, filled with every incoming mini-batch during
training (so it also holds the current task's samples, whose full
cross-entropy is what lets the new classes compete with the old ones), and
during the first task the loss is the plain cross-entropy.
"""

import torch
from torch.nn import functional as F

from .._weights import SAMPLE_WEIGHT, weighted_mean
from ..base import MASK_VALUE
from ._replay import ReservoirBuffer
from ._strategies import _POSITIVE_INT, Plugin, Strategy

__all__ = ["ERACE"]


def mask_absent_classes(logits, y):
    """``logits`` with every class that is not among the labels ``y`` masked."""
    present = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
    present[y.to(logits.device)] = True
    return logits.masked_fill(~present, MASK_VALUE)


class _ERACEPlugin(Plugin):
    def __init__(self, memory_size, replay_batch_size):
        self.buffer = ReservoirBuffer(memory_size)
        self.replay_batch_size = replay_batch_size
        self.n_learned = 0
        self._n_rows = None

    def augment_batch(self, net, X, y):
        self._n_rows = len(y)  # the incoming rows, before later plugins add theirs
        return X, y

    def loss_logits(self, net, X, y_pred, y):
        if not self.n_learned:
            return y_pred
        n = self._n_rows if self._n_rows is not None else len(y)
        masked = mask_absent_classes(y_pred[:n], y[:n])
        return masked if n == len(y) else torch.cat([masked, y_pred[n:]])

    def extra_loss(self, net, X, y_pred, y):
        n_rows = self._n_rows if self._n_rows is not None else len(y)
        self._n_rows = None
        loss = None
        if self.n_learned and self.buffer.size:
            device = net.training_device()
            Xm, ym, tm, wm = self.buffer.sample(self.replay_batch_size or n_rows,
                                                return_weight=True)
            out = net.module_(Xm.to(device), tm.to(device)).float()
            ce = F.cross_entropy(out, ym.to(device), reduction="none")
            loss = ce.mean() if wm is None else weighted_mean(ce, wm)
        w = X.get(SAMPLE_WEIGHT)
        self.buffer.add(X["X"][:n_rows].detach(), y[:n_rows].detach(),
                        X["task_ids"][:n_rows].detach(),
                        None if w is None else w[:n_rows].detach())
        return loss

    def after_task(self, net, task):
        self.n_learned += 1


class ERACE(Strategy):
    """ER-ACE: replay with a cross-entropy restricted to the incoming batch's classes.

    The incoming mini-batch's cross-entropy only compares the classes
    present in that batch (the other logits are masked), while
    ``replay_batch_size`` samples drawn from a reservoir memory get the full
    cross-entropy, added as a second term. The memory is a reservoir over
    the stream, filled with every incoming mini-batch during training; both
    rules apply from the second task on.

    Parameters
    ----------
    memory_size : int, default=1000
        Samples kept (a reservoir over every sample trained on).
    replay_batch_size : int or None, default=None
        Memory samples per step (the batch size when ``None``).

    Examples
    --------
    >>> from sktransfer.continual import ERACE, ContinualClassifier
    >>> ContinualClassifier(strategy=ERACE(memory_size=500))
    ContinualClassifier(strategy=ERACE(memory_size=500))
    """

    _parameter_constraints: dict = {
        "memory_size": [_POSITIVE_INT],
        "replay_batch_size": [_POSITIVE_INT, None],
    }
    _keeps_memory = True

    def __init__(self, memory_size=1000, replay_batch_size=None):
        self.memory_size = memory_size
        self.replay_batch_size = replay_batch_size

    def _build(self, scenario):
        batch = None if self.replay_batch_size is None else int(self.replay_batch_size)
        return _ERACEPlugin(int(self.memory_size), batch)
