"""Task-weighting strategies: how per-task losses become one training loss.

A strategy is a small scikit-learn-style object (``get_params`` /
``set_params``), so ``GridSearchCV`` can search ``weighting`` and its
parameters (``weighting__init_log_var``). It holds configuration only: at
fit time :meth:`Weighting.build` returns a fresh ``nn.Module`` (the
*weighter*) that holds any learned or running state. The weighter lives in
the skorch net's module, so learned weights (uncertainty's log-variances)
are optimised together with the network and are pickled with it.

A weighter is called as ``weighter(losses, present)`` with ``losses`` the
(T,) per-task mean losses of a batch and ``present`` a (T,) bool mask of the
tasks that have at least one label in the batch, and returns
``(total_loss, weights)``. Absent tasks get weight 0 and contribute nothing.

Every strategy declares its parameters in ``_parameter_constraints`` (the
constraint objects of :mod:`sklearn.utils._param_validation`);
:func:`get_weighting` validates them with ``_validate_params()`` before
anything is built, so a bad value raises
``sklearn.utils._param_validation.InvalidParameterError`` (a ``ValueError``).
"""

from abc import ABCMeta, abstractmethod
from numbers import Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval
from torch import nn

__all__ = [
    "Weighting",
    "EqualWeighting",
    "StaticWeighting",
    "UncertaintyWeighting",
    "WEIGHTINGS",
    "get_weighting",
]


class Weighting(BaseEstimator, metaclass=ABCMeta):
    """Base class of task-weighting strategies.

    Subclasses implement :meth:`build`, which returns a fresh weighter
    ``nn.Module`` for ``n_tasks`` tasks, and declare one entry of
    ``_parameter_constraints`` per ``__init__`` parameter.
    """

    _parameter_constraints: dict = {}

    @abstractmethod
    def build(self, n_tasks, task_types=None):
        """A fresh weighter module for ``n_tasks`` tasks of the given types."""


class _StaticWeighter(nn.Module):
    def __init__(self, weights):
        super().__init__()
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float32))
        self._all_ones = bool((self.weights == 1).all())

    def forward(self, losses, present):
        if self._all_ones:
            # An absent task's mean loss is exactly 0, so the plain sum is the
            # weighted sum; this is the hot path of equal weighting.
            return losses.sum(), present.to(losses.dtype)
        w = self.weights.to(losses.dtype) * present.to(losses.dtype)
        return (w * losses).sum(), w


class EqualWeighting(Weighting):
    """Sum of the per-task losses, each with weight 1.

    Examples
    --------
    >>> from sktransfer.multitask import EqualWeighting
    >>> EqualWeighting().build(3)
    _StaticWeighter()
    """

    def build(self, n_tasks, task_types=None):
        return _StaticWeighter(np.ones(n_tasks))


class StaticWeighting(Weighting):
    """Fixed, user-chosen task weights: ``sum_t w_t L_t``.

    Parameters
    ----------
    weights : array-like of shape (n_tasks,) or dict
        One non-negative weight per task, in the order of ``tasks_`` (or a
        dict from task to weight; missing tasks get weight 1).

    Examples
    --------
    >>> from sktransfer.multitask import StaticWeighting
    >>> StaticWeighting([1.0, 0.5]).build(2).weights
    tensor([1.0000, 0.5000])
    """

    # The values (finite, >= 0, one per task) depend on the tasks and are
    # checked when the weights are resolved against them.
    _parameter_constraints: dict = {"weights": ["array-like", dict, None]}

    def __init__(self, weights=None):
        self.weights = weights

    def build(self, n_tasks, task_types=None):
        return _StaticWeighter(_weights_array(self.weights, n_tasks))


def _weights_array(weights, n_tasks, tasks=None):
    if weights is None:
        raise ValueError("static weighting needs task weights; pass task_weights=[...]")
    if isinstance(weights, dict):
        if tasks is None:
            tasks = range(n_tasks)
        unknown = set(weights) - set(tasks)
        if unknown:
            raise ValueError(f"task_weights names unknown tasks {sorted(unknown, key=str)}; "
                             f"the tasks are {list(tasks)}")
        weights = [weights.get(t, 1.0) for t in tasks]
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_tasks,):
        raise ValueError(f"task_weights must have one weight per task ({n_tasks}), "
                         f"got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"task_weights must be finite and non-negative, got {w.tolist()}")
    return w


class _UncertaintyWeighter(nn.Module):
    def __init__(self, n_tasks, init_log_var, regression):
        super().__init__()
        self.log_vars = nn.Parameter(torch.full((n_tasks,), float(init_log_var)))
        self.register_buffer("scale", torch.where(
            torch.as_tensor(regression, dtype=torch.bool), 0.5, 1.0))

    def forward(self, losses, present):
        s = self.log_vars.to(losses.dtype)
        mask = present.to(losses.dtype)
        precision = self.scale.to(losses.dtype) * torch.exp(-s)
        total = (mask * (precision * losses + 0.5 * s)).sum()
        return total, (precision * mask).detach()


class UncertaintyWeighting(Weighting):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, 2018).

    Each task has a learned log-variance ``s_t = log sigma_t^2``, optimised
    with the network. A classification task contributes
    ``exp(-s_t) L_t + s_t / 2`` (the paper's softmax-likelihood form, eq. 10),
    a regression task ``exp(-s_t) L_t / 2 + s_t / 2`` (eq. 7, Gaussian
    likelihood). The recorded weight of a task is its factor on ``L_t``.

    Parameters
    ----------
    init_log_var : float, default=0.0
        Initial ``s_t`` for every task (0 means weight 1 for classification).

    Examples
    --------
    >>> from sktransfer.multitask import UncertaintyWeighting
    >>> UncertaintyWeighting().build(2).log_vars.shape
    torch.Size([2])
    """

    _parameter_constraints: dict = {
        "init_log_var": [Interval(Real, -np.inf, np.inf, closed="neither")],
    }

    def __init__(self, init_log_var=0.0):
        self.init_log_var = init_log_var

    def build(self, n_tasks, task_types=None):
        regression = [t == "regression" for t in (task_types or ["classification"] * n_tasks)]
        return _UncertaintyWeighter(n_tasks, self.init_log_var, regression)


# The loss- and gradient-based strategies subclass Weighting, so they are imported here.
from ._gradient_weighting import (  # noqa: E402
    AlignedMTLWeighting,
    CAGradWeighting,
    IMTLWeighting,
    MGDAUBWeighting,
    MGDAWeighting,
    NashMTLWeighting,
    PCGradWeighting,
    UPGradWeighting,
)
from ._loss_weighting import (  # noqa: E402
    DWAWeighting,
    FAMOWeighting,
    GradNormWeighting,
    RLWWeighting,
)

#: Weighting names accepted by ``weighting=`` and the strategy each builds.
WEIGHTINGS = {
    "equal": EqualWeighting,
    "static": StaticWeighting,
    "uncertainty": UncertaintyWeighting,
    "dwa": DWAWeighting,
    "rlw": RLWWeighting,
    "famo": FAMOWeighting,
    "gradnorm": GradNormWeighting,
    "mgda": MGDAWeighting,
    "mgda_ub": MGDAUBWeighting,
    "pcgrad": PCGradWeighting,
    "cagrad": CAGradWeighting,
    "imtl": IMTLWeighting,
    "upgrad": UPGradWeighting,
    "aligned_mtl": AlignedMTLWeighting,
    "nash_mtl": NashMTLWeighting,
}


def get_weighting(weighting, task_weights=None, tasks=None):
    """Resolve ``weighting`` (a name or a :class:`Weighting`) to a strategy.

    ``task_weights`` are the static weights used by ``"static"``; with
    ``"equal"`` given explicit ``task_weights`` they are used as well (equal
    weighting scaled by fixed priors is static weighting).

    The strategy's parameters are validated against its
    ``_parameter_constraints``; a bad value raises
    ``sklearn.utils._param_validation.InvalidParameterError`` (a
    ``ValueError``) naming the parameter and the strategy.
    """
    if isinstance(weighting, Weighting):
        strategy = weighting
    elif isinstance(weighting, str) and weighting in WEIGHTINGS:
        strategy = WEIGHTINGS[weighting]()
    else:
        raise ValueError(
            f"unknown weighting {weighting!r}; valid names are {sorted(WEIGHTINGS)}, "
            "or pass a sktransfer.multitask.Weighting instance"
        )
    strategy._validate_params()
    if task_weights is not None:
        n = len(tasks)
        w = _weights_array(task_weights, n, tasks)
        if isinstance(strategy, (EqualWeighting, StaticWeighting)):
            return StaticWeighting(w)
        raise ValueError(
            f"task_weights are static weights; they cannot be combined with "
            f"weighting={weighting!r}. Use weighting='static' (or 'equal')"
        )
    if isinstance(strategy, StaticWeighting) and strategy.weights is None:
        raise ValueError("weighting='static' needs task_weights=[w_1, ..., w_T]")
    if isinstance(strategy, StaticWeighting) and isinstance(strategy.weights, dict):
        return StaticWeighting(_weights_array(strategy.weights, len(tasks), tasks))
    return strategy
