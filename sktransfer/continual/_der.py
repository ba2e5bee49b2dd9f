"""Dark Experience Replay and DER++ (Buzzega et al., 2020).

A reservoir memory (:class:`~sktransfer.continual.ReservoirBuffer`) is filled
at every training step with the incoming mini-batch *and the network's
logits for it at that moment*. At every step the loss gets

.. math::

    \\alpha \\, \\frac{1}{n C} \\sum_{i} \\lVert f_\\theta(x_i) - z_i \\rVert_2^2
    \\;\\big[ + \\beta \\, \\mathrm{CE}(f_\\theta(x'_j), y'_j) \\big]

with ``(x_i, z_i)`` drawn from the memory (the logits ``z`` stored when
``x`` was inserted), ``C`` the number of classes, and, for DER++ only, a
second draw ``(x'_j, y'_j)`` with its stored labels. Matching logits instead
of labels distils the network's past function along the whole training
trajectory. The logits stored and matched are the heads' raw outputs,
before the masks of the scenarios (``ContinualModule.forward(...,
masked=False)``), as in the authors' code, where nothing is masked: in the
class scenario this also keeps the logits of the classes that did not exist
yet low on the remembered samples, which is what protects the old classes
from the new ones. (For a network whose forward has no ``masked`` argument
the masked logits are stored, and masked entries count as zero.) The
stored logits are computed in an extra forward pass without gradient.
"""

import torch
from torch.nn import functional as F

from .._weights import SAMPLE_WEIGHT, weighted_mean
from ..base import MASK_VALUE
from ._replay import ReservoirBuffer
from ._strategies import _NON_NEGATIVE, _POSITIVE_INT, Plugin, Strategy

__all__ = ["DER", "DERPlusPlus"]


def _raw_logits(module, X, t):
    try:
        return module(X, t, masked=False)
    except TypeError:  # a network without masks to skip
        return module(X, t)


def _mean(values, w):
    return values.mean() if w is None else weighted_mean(values, w)


def logit_matching_loss(logits, stored):
    """Per-row squared error to the stored logits, over the classes stored unmasked.

    ``sum_c valid_c (logits_c - stored_c)^2 / n_classes`` for every row, with
    ``valid`` the classes whose stored logit is not masked.
    """
    stored = stored.to(device=logits.device, dtype=torch.float32)
    valid = stored > MASK_VALUE / 2
    sq = (logits.float() - stored) ** 2
    return sq.masked_fill(~valid, 0.0).sum(1) / stored.shape[1]


class _DERPlugin(Plugin):
    def __init__(self, memory_size, alpha, beta, replay_batch_size):
        self.buffer = ReservoirBuffer(memory_size)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.replay_batch_size = replay_batch_size
        self._n_rows = None

    def augment_batch(self, net, X, y):
        self._n_rows = len(y)  # the rows stored after this step
        return X, y

    def _draw(self, net, n):
        device = net.training_device()
        Xm, ym, tm, wm, zm = self.buffer.sample(n, return_weight=True, return_logits=True)
        return _raw_logits(net.module_, Xm.to(device), tm.to(device)), ym.to(device), wm, zm

    def extra_loss(self, net, X, y_pred, y):
        n_rows = self._n_rows if self._n_rows is not None else len(y)
        loss = None
        if self.buffer.size:
            n = self.replay_batch_size or n_rows
            out, _, wm, zm = self._draw(net, n)
            loss = self.alpha * _mean(logit_matching_loss(out, zm), wm)
            if self.beta:
                device = net.training_device()
                Xm, ym, tm, wm = self.buffer.sample(n, return_weight=True)
                out = net.module_(Xm.to(device), tm.to(device)).float()
                loss = loss + self.beta * _mean(F.cross_entropy(out, ym.to(device),
                                                                reduction="none"), wm)
        w = X.get(SAMPLE_WEIGHT)
        with torch.no_grad():
            Xi, ti = X["X"][:n_rows].detach(), X["task_ids"][:n_rows].detach()
            logits = _raw_logits(net.module_, Xi.to(y_pred.device), ti.to(y_pred.device))
            self.buffer.add(Xi, y[:n_rows].detach(), ti,
                            None if w is None else w[:n_rows].detach(),
                            logits=logits.float().to(Xi.device))
        self._n_rows = None
        return loss


class DER(Strategy):
    """Dark Experience Replay: match the logits stored with remembered samples.

    At every step the incoming mini-batch is offered to a reservoir memory of
    ``memory_size`` samples together with the network's logits for it, and
    the loss gets ``alpha * MSE(f(x_m), z_m)`` on ``replay_batch_size``
    samples ``x_m`` drawn from the memory, ``z_m`` their logits when they
    were stored (see :mod:`sktransfer.continual._der` for the masked
    classes). The memory is filled during training, so it also holds the
    current task's samples.

    Parameters
    ----------
    memory_size : int, default=1000
        Samples (with their logits) kept in memory in total.
    alpha : float, default=1.0
        Weight of the logit-matching term (Mammoth's setting for sequential
        MNIST with a memory of 500).
    replay_batch_size : int or None, default=None
        Memory samples drawn per step (the batch size when ``None``).

    See Also
    --------
    DERPlusPlus : DER with an extra cross-entropy on remembered labels.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.continual import DER, ContinualClassifier
    >>> from sktransfer.datasets import make_split_tasks
    >>> X, y = load_digits(return_X_y=True)
    >>> Xs, ys, t = make_split_tasks(X / 16, y, n_tasks=2)
    >>> clf = ContinualClassifier(strategy=DER(memory_size=200), max_epochs=2,
    ...                           random_state=0).fit(Xs, ys, task_ids=t)
    >>> clf.net_.plugins[0].buffer.logits.shape
    torch.Size([200, 10])
    """

    _parameter_constraints: dict = {
        "memory_size": [_POSITIVE_INT],
        "alpha": [_NON_NEGATIVE],
        "replay_batch_size": [_POSITIVE_INT, None],
    }
    _keeps_memory = True

    def __init__(self, memory_size=1000, alpha=1.0, replay_batch_size=None):
        self.memory_size = memory_size
        self.alpha = alpha
        self.replay_batch_size = replay_batch_size

    def _beta(self):
        return 0.0

    def _build(self, scenario):
        batch = None if self.replay_batch_size is None else int(self.replay_batch_size)
        return _DERPlugin(int(self.memory_size), self.alpha, self._beta(), batch)


class DERPlusPlus(DER):
    """DER++: logit matching plus cross-entropy on remembered labels.

    As :class:`DER`, with ``beta * CE(f(x'_m), y'_m)`` added on a second draw
    from the memory, ``y'_m`` the labels stored with the samples; this
    corrects the stored logits of samples that were learned poorly when they
    were stored (Buzzega et al., 2020).

    Parameters
    ----------
    memory_size : int, default=1000
        Samples (with their logits and labels) kept in memory in total.
    alpha : float, default=1.0
        Weight of the logit-matching term.
    beta : float, default=0.5
        Weight of the cross-entropy on remembered labels (``alpha`` and
        ``beta`` are Mammoth's settings for sequential MNIST with a memory
        of 500).
    replay_batch_size : int or None, default=None
        Memory samples per draw (the batch size when ``None``).

    Examples
    --------
    >>> from sktransfer.continual import ContinualClassifier, DERPlusPlus
    >>> ContinualClassifier(strategy=DERPlusPlus(memory_size=500, beta=1.0))
    ContinualClassifier(strategy=DERPlusPlus(beta=1.0, memory_size=500))
    """

    _parameter_constraints: dict = {**DER._parameter_constraints, "beta": [_NON_NEGATIVE]}

    def __init__(self, memory_size=1000, alpha=1.0, beta=0.5, replay_batch_size=None):
        super().__init__(memory_size=memory_size, alpha=alpha,
                         replay_batch_size=replay_batch_size)
        self.beta = beta

    def _beta(self):
        return float(self.beta)
