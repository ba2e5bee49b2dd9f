"""Multi-task architectures: the configuration objects that build the networks.

``architecture=`` takes a name of :data:`~._registry.ARCHITECTURES`, an
:class:`Architecture` object (whose parameters ``GridSearchCV`` can search as
``architecture__<name>``), or a user ``nn.Module``. Every network built here
has the same call contract::

    forward(X, task_ids=None) -> logits

* with ``task_ids`` (a (n,) long tensor, one task per row) it returns the
  (n, C) outputs of each row's own task;
* without, it returns the (n, T, C) outputs of every task for every row.

``C`` is the largest output width over tasks; the estimator masks the
columns a task does not use. A network may define ``shared_parameters()``
(used by gradient-based weightings) and ``penalty()`` (added to the loss).

Every architecture declares its parameters in ``_parameter_constraints`` (the
constraint objects of :mod:`sklearn.utils._param_validation`);
:func:`~._registry.build_architecture` validates them with ``_validate_params()`` before
anything is built, so a bad value raises
``sklearn.utils._param_validation.InvalidParameterError`` (a ``ValueError``).
"""

import math
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from ..base import trunk_output_shape
from ._attention import AttentionNet
from ._blocks import block_shapes, fresh_copy, layer_sequence, split_blocks
from ._conditioned import TaskConditionedNet
from ._experts import MixtureOfExpertsNet
from ._hard import HardSharingNet
from ._ple import ProgressiveLayeredExtractionNet
from ._soft_sharing import ColumnNet

__all__ = [
    "Architecture",
    "CGC",
    "CrossStitch",
    "HardParameterSharing",
    "Independent",
    "MMoE",
    "MTAN",
    "PLE",
    "Sluice",
    "TaskConditioning",
]


def _output_width(trunk, example):
    """Width of the trunk's flattened output for samples shaped like ``example``'s."""
    return int(math.prod(trunk_output_shape(trunk, tuple(example.shape[1:]))))


def _checked_width(trunk, example, what):
    try:
        return _output_width(trunk, example)
    except RuntimeError as exc:
        raise ValueError(f"the trunk module failed on {what}: {exc}") from exc


def _distinct_copies(make_trunk, n):
    """``n`` trunks with independently drawn weights."""
    first = make_trunk(None)
    out = [first]
    for _ in range(n - 1):
        trunk = make_trunk(None)
        same = all(torch.equal(a, b) for a, b in zip(first.parameters(), trunk.parameters()))
        out.append(fresh_copy(trunk, reinit=same))
    return out


class Architecture(BaseEstimator, metaclass=ABCMeta):
    """Base class of multi-task architectures (configuration only).

    Subclasses implement :meth:`build`, which returns a fresh network, and
    declare one entry of ``_parameter_constraints`` per ``__init__``
    parameter (validated before anything is built). The network is an
    ``nn.Module`` with

    * ``forward(X, task_ids=None)``: with ``task_ids`` (a (n,) long tensor)
      the (n, C) outputs of each row's own task, without the (n, T, C)
      outputs of every task (``C = n_outputs``);
    * optionally ``shared_parameters()``: the list of parameters all tasks
      share, which the gradient-based weightings and GradNorm need (an
      empty list: nothing is shared);
    * optionally ``penalty()``: a scalar tensor added to the loss for the
      last forward pass, or None;
    * optionally a ``trunk`` module and ``heads``, for MGDA-UB
      (``weighting="mgda_ub"``), which takes the task gradients at the
      trunk's output.

    A strategy is given to an estimator by name (a key of
    :data:`~sktransfer.multitask.ARCHITECTURES`) or as an object:
    ``MultiTaskClassifier(architecture=MyArchitecture(width=8))``.
    """

    _parameter_constraints: dict = {}

    @abstractmethod
    def build(self, make_trunk, X_example, n_tasks, n_outputs):
        """A fresh network for ``n_tasks`` tasks of at most ``n_outputs`` outputs each.

        ``make_trunk(None)`` returns a new trunk for the input (the
        estimator's ``module``, or its default MLP / Conv4 of
        ``hidden_layer_sizes``); ``make_trunk(n)``, for the default MLP, one
        that takes ``n`` input features. ``X_example`` is a (2, ...) float
        tensor of input rows, to infer shapes. Called once per new model,
        inside the estimator's seeded random stream.
        """


# A finite number >= 0 (an Interval never holds NaN, and this one excludes inf).
_NON_NEGATIVE = Interval(Real, 0, np.inf, closed="left")
# The weight a unit keeps of itself in a mixing matrix whose rows sum to 1: in
# [0, 1], the off-diagonal weights (1 - init_self) / (T - 1) are then >= 0 too.
_INIT_SELF = Interval(Real, 0, 1, closed="both")


class HardParameterSharing(Architecture):
    """Shared trunk, one linear head per task (``"hard"``).

    Parameters
    ----------
    task_covariance_penalty : float, default=0.0
        Weight of a penalty that couples the heads through a learned task
        covariance, in the spirit of multilinear relationship networks (see
        :class:`HardSharingNet`). 0 switches it off.

    Examples
    --------
    >>> from sktransfer.multitask import HardParameterSharing
    >>> HardParameterSharing(task_covariance_penalty=1e-3)
    HardParameterSharing(task_covariance_penalty=0.001)
    """

    _parameter_constraints: dict = {"task_covariance_penalty": [_NON_NEGATIVE]}

    def __init__(self, task_covariance_penalty=0.0):
        self.task_covariance_penalty = task_covariance_penalty

    def build(self, make_trunk, X_example, n_tasks, n_outputs):
        trunk = make_trunk(None)
        width = _checked_width(trunk, X_example, f"X of sample shape {tuple(X_example.shape[1:])}")
        return HardSharingNet(trunk, width, n_tasks, n_outputs, self.task_covariance_penalty)


class Independent(Architecture):
    """One network per task, nothing shared (``"independent"``).

    The control that reveals negative transfer: if a shared architecture does
    worse than this, the tasks hurt each other. Each row runs through its own
    task's network only.

    Examples
    --------
    >>> from sktransfer.multitask import Independent
    >>> Independent()
    Independent()
    """

    def build(self, make_trunk, X_example, n_tasks, n_outputs):
        trunks = _distinct_copies(make_trunk, n_tasks)
        shapes = block_shapes([trunks[0]], X_example)
        return ColumnNet([[t] for t in trunks], shapes, n_tasks, n_outputs, mixing=None)


class CrossStitch(Architecture):
    """A column per task with learned linear mixing after each block (``"cross_stitch"``).

    Misra et al. (2016). Each mixing matrix starts with ``init_self`` on the
    diagonal and ``(1 - init_self) / (T - 1)`` elsewhere. The trunk must be
    made of layers (the default MLP / Conv4, or an ``nn.Sequential``); a
    block ends after each activation.

    Parameters
    ----------
    init_self : float in [0, 1], default=0.9

    Examples
    --------
    >>> from sktransfer.multitask import CrossStitch
    >>> CrossStitch(init_self=0.8)
    CrossStitch(init_self=0.8)
    """

    _parameter_constraints: dict = {"init_self": [_INIT_SELF]}

    def __init__(self, init_self=0.9):
        self.init_self = init_self

    def build(self, make_trunk, X_example, n_tasks, n_outputs):
        columns = [split_blocks(layer_sequence(t, "cross_stitch"))
                   for t in _distinct_copies(make_trunk, n_tasks)]
        shapes = block_shapes(columns[0], X_example)
        return ColumnNet(columns, shapes, n_tasks, n_outputs, mixing="cross_stitch",
                         init_self=float(self.init_self))


class Sluice(Architecture):
    """Cross-stitch with subspaces and a learned mix of layer outputs (``"sluice"``).

    Ruder et al. (2019): every block output is split into ``n_subspaces``
    parts along its first feature axis; all (task, subspace) units are mixed
    by a learned matrix; a penalty ``orthogonality * sum ||U_a^T U_b||_F^2 /
    n^2`` keeps a task's subspaces apart; each task's representation is a
    learned mix of the block outputs that have the last block's width.

    Parameters
    ----------
    n_subspaces : int >= 1, default=2
    init_self : float in [0, 1], default=0.9
    orthogonality : float >= 0, default=0.01

    Examples
    --------
    >>> from sktransfer.multitask import Sluice
    >>> Sluice(n_subspaces=4).n_subspaces
    4
    """

    _parameter_constraints: dict = {
        "n_subspaces": [Interval(Integral, 1, None, closed="left")],
        "init_self": [_INIT_SELF],
        "orthogonality": [_NON_NEGATIVE],
    }

    def __init__(self, n_subspaces=2, init_self=0.9, orthogonality=0.01):
        self.n_subspaces = n_subspaces
        self.init_self = init_self
        self.orthogonality = orthogonality

    def build(self, make_trunk, X_example, n_tasks, n_outputs):
        columns = [split_blocks(layer_sequence(t, "sluice"))
                   for t in _distinct_copies(make_trunk, n_tasks)]
        shapes = block_shapes(columns[0], X_example)
        return ColumnNet(columns, shapes, n_tasks, n_outputs, mixing="sluice",
                         init_self=float(self.init_self), n_subspaces=int(self.n_subspaces),
                         orthogonality=float(self.orthogonality))


class MTAN(Architecture):
    """Shared trunk with per-task soft attention masks (``"mtan"``, Liu et al., 2019).

    Examples
    --------
    >>> from sktransfer.multitask import MTAN
    >>> MTAN()
    MTAN()
    """

    def build(self, make_trunk, X_example, n_tasks, n_outputs):
        blocks = split_blocks(layer_sequence(make_trunk(None), "mtan"))
        shapes = block_shapes(blocks, X_example)
        return AttentionNet(blocks, shapes, n_tasks, n_outputs)


class MMoE(Architecture):
    """Multi-gate mixture of experts (``"mmoe"``, Ma et al., 2018).

    Parameters
    ----------
    n_experts : int, default=4
        Number of expert trunks, shared by all tasks through per-task gates.

    Examples
    --------
    >>> from sktransfer.multitask import MMoE
    >>> MMoE(n_experts=3)
    MMoE(n_experts=3)
    """

    _parameter_constraints: dict = {"n_experts": [Interval(Integral, 1, None, closed="left")]}

    def __init__(self, n_experts=4):
        self.n_experts = n_experts

    def build(self, make_trunk, X_example, n_tasks, n_outputs):
        experts = _distinct_copies(make_trunk, int(self.n_experts))
        width = _checked_width(experts[0], X_example,
                               f"X of sample shape {tuple(X_example.shape[1:])}")
        return MixtureOfExpertsNet(experts, width, X_example[0].numel(), n_tasks, n_outputs)


class PLE(Architecture):
    """Progressive layered extraction (``"ple"``, Tang et al., 2020).

    ``n_levels`` extraction levels, each with ``n_shared_experts`` shared
    experts and ``n_task_experts`` experts per task. Task ``t``'s gate (a
    softmax over its own and the shared experts) gives its representation
    of the level; a shared gate over all the level's experts gives the
    input of the next level's shared experts (the last level has no shared
    gate). Each task's head reads its representation of the last level.
    The first level's experts are fresh copies of the trunk (the default
    MLP of ``hidden_layer_sizes``, the Conv4 trunk, or the user's
    ``module``) and, like MMoE's gates, the first level's gates read the
    flattened input; the next levels' experts are MLPs on the previous
    level's output, and their gates read that output.

    ``shared_parameters()`` (for the gradient-based weightings) holds
    every parameter through which more than one task's output passes: the
    shared experts and gates, and the task experts of every level but the
    last.

    Parameters
    ----------
    n_shared_experts : int >= 1, default=2
        Shared experts per level.
    n_task_experts : int >= 1, default=1
        Experts of every task per level.
    n_levels : int >= 1, default=2
        Extraction levels (1 is :class:`CGC`).
    expert_hidden_layer_sizes : tuple of int or None, default=None
        Hidden layers of the experts of the levels after the first (each a
        ReLU MLP whose last layer gives the level's output width); None:
        one layer as wide as the trunk's output.

    Examples
    --------
    >>> from sktransfer.multitask import PLE
    >>> PLE(n_shared_experts=1, n_levels=3)
    PLE(n_levels=3, n_shared_experts=1)
    """

    _parameter_constraints: dict = {
        "n_shared_experts": [Interval(Integral, 1, None, closed="left")],
        "n_task_experts": [Interval(Integral, 1, None, closed="left")],
        "n_levels": [Interval(Integral, 1, None, closed="left")],
        "expert_hidden_layer_sizes": ["array-like", None],
    }

    def __init__(self, n_shared_experts=2, n_task_experts=1, n_levels=2,
                 expert_hidden_layer_sizes=None):
        self.n_shared_experts = n_shared_experts
        self.n_task_experts = n_task_experts
        self.n_levels = n_levels
        self.expert_hidden_layer_sizes = expert_hidden_layer_sizes

    def _upper_sizes(self, width):
        sizes = self.expert_hidden_layer_sizes
        if sizes is None:
            return (width,)
        sizes = tuple(sizes)
        if not sizes or not all(isinstance(h, Integral) and not isinstance(h, bool) and h >= 1
                                for h in sizes):
            raise ValueError(
                f"{type(self).__name__}'s expert_hidden_layer_sizes must be a non-empty "
                f"sequence of positive ints (or None), got {self.expert_hidden_layer_sizes!r}")
        return tuple(int(h) for h in sizes)

    def build(self, make_trunk, X_example, n_tasks, n_outputs):
        from ..modules import MLP

        n_shared, n_task = int(self.n_shared_experts), int(self.n_task_experts)
        n_levels = int(self.n_levels)
        first = _distinct_copies(make_trunk, n_shared + n_tasks * n_task)
        width = _checked_width(first[0], X_example,
                               f"X of sample shape {tuple(X_example.shape[1:])}")
        levels = [(first[:n_shared],
                   [first[n_shared + t * n_task:n_shared + (t + 1) * n_task]
                    for t in range(n_tasks)])]
        gate_inputs = [X_example[0].numel()]
        sizes = self._upper_sizes(width) if n_levels > 1 else ()
        for _ in range(1, n_levels):
            levels.append(([MLP(width, sizes) for _ in range(n_shared)],
                           [[MLP(width, sizes) for _ in range(n_task)] for _ in range(n_tasks)]))
            gate_inputs.append(width)
            width = sizes[-1]
        return ProgressiveLayeredExtractionNet(levels, gate_inputs, width, n_tasks, n_outputs)


class CGC(PLE):
    """Customized gate control (``"cgc"``): one level of :class:`PLE` (Tang et al., 2020).

    ``n_shared_experts`` shared experts and ``n_task_experts`` experts per
    task, all fresh copies of the trunk; task ``t``'s softmax gate, which
    reads the (flattened) input, mixes its own and the shared experts, and
    its head reads the mix. Unlike :class:`MMoE`, a task's own experts are
    never mixed into another task's representation; ``shared_parameters()``
    is the shared experts.

    Parameters
    ----------
    n_shared_experts : int >= 1, default=2
    n_task_experts : int >= 1, default=1

    Examples
    --------
    >>> from sktransfer.multitask import CGC
    >>> CGC(n_task_experts=2)
    CGC(n_task_experts=2)
    """

    _parameter_constraints: dict = {
        "n_shared_experts": [Interval(Integral, 1, None, closed="left")],
        "n_task_experts": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, n_shared_experts=2, n_task_experts=1):
        self.n_shared_experts = n_shared_experts
        self.n_task_experts = n_task_experts

    n_levels = 1
    expert_hidden_layer_sizes = None


_WHERE = ("input", "hidden", "all")
_HOW = ("concat", "film")


class TaskConditioning(Architecture):
    """One network for every task, told the task (``"conditioned"``).

    Parameters
    ----------
    where : {"input", "hidden", "all"}, default="input"
        Where the task enters: the input, the output of every hidden block, or
        both. ``"hidden"``/``"all"`` with ``how="concat"`` need the default
        MLP trunk (its layers are widened); with ``"film"`` any layered trunk.
    how : {"concat", "film"}, default="concat"
        A one-hot task vector concatenated to the features, or a learned
        per-task scale and shift of them (FiLM).

    Examples
    --------
    >>> from sktransfer.multitask import TaskConditioning
    >>> TaskConditioning(where="all", how="film")
    TaskConditioning(how='film', where='all')
    """

    _parameter_constraints: dict = {
        "where": [StrOptions(set(_WHERE))],
        "how": [StrOptions(set(_HOW))],
    }

    def __init__(self, where="input", how="concat"):
        self.where = where
        self.how = how

    def build(self, make_trunk, X_example, n_tasks, n_outputs):
        from ..modules import MLP

        if self.how == "concat" and X_example.dim() != 2:
            raise ValueError(
                "conditioning by concatenation appends a one-hot task vector to the input "
                f"features, so X must be 2-D; got samples of shape {tuple(X_example.shape[1:])}"
                "; use how='film' for images"
            )
        # A user trunk is the same module whatever the width asked for; the default MLP
        # is built for the plain input, and its conditioned layers are widened below.
        n_in = X_example.shape[1] + n_tasks if X_example.dim() == 2 else None
        trunk = make_trunk(None)
        if self.how == "concat" and not isinstance(trunk, MLP):
            if self.where != "input":
                raise ValueError(
                    "conditioning hidden layers by concatenation needs the default MLP trunk "
                    "(its layers are widened); with a user trunk use where='input' or "
                    "how='film'"
                )
            example = torch.cat([X_example, torch.zeros(X_example.shape[0], n_tasks)], 1)
            try:
                width = _output_width(trunk, example)
            except RuntimeError as exc:
                raise ValueError(
                    "architecture='conditioned' feeds the trunk n_features + n_tasks = "
                    f"{n_in} inputs, and the given module failed on them: {exc}"
                ) from exc
            shapes = [tuple(X_example.shape[1:]), (width,)]
            return TaskConditionedNet([trunk], {0}, "concat", shapes, n_tasks, n_outputs)
        blocks = split_blocks(layer_sequence(trunk, "conditioned")) if (
            self.where != "input" or isinstance(trunk, MLP)) else [trunk]
        shapes = [tuple(X_example.shape[1:])] + block_shapes(blocks, X_example)
        n_blocks = len(blocks)
        positions = {"input": {0}, "hidden": set(range(1, n_blocks + 1)),
                     "all": set(range(n_blocks + 1))}[self.where]
        if self.how == "concat":
            # Rebuild the MLP with every conditioned layer's input widened by T.
            widths = [X_example.shape[1]] + [b[0].out_features for b in blocks]
            blocks = [
                nn.Sequential(nn.Linear(widths[i] + (n_tasks if i in positions else 0),
                                        widths[i + 1]), *list(block)[1:])
                for i, block in enumerate(blocks)
            ]
        return TaskConditionedNet(blocks, positions, self.how, shapes, n_tasks, n_outputs)
