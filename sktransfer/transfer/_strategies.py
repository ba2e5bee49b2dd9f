"""Fine-tuning strategies: which layer groups of a pretrained network train when.

A strategy is a small scikit-learn-style configuration object
(``get_params`` / ``set_params``, so ``GridSearchCV`` can search
``strategy`` and ``strategy__<param>``); :class:`~sktransfer.transfer.FineTuner`
accepts one of the names of :data:`STRATEGIES` (the estimator's
``n_layers`` and ``unfreeze_every`` then configure ``"top"`` and
``"gradual"``) or an object. The network is cut into layer groups, bottom to
top, the head last (see ``_layers.layer_groups``); with ``G`` backbone
groups, a strategy answers, through the hooks of :class:`TransferStrategy`:

* :meth:`~TransferStrategy.n_open`: how many backbone groups, counted from
  the top, train in epoch ``epoch`` (the head always trains);
* :meth:`~TransferStrategy.probes_head`: whether a new head is first fitted
  to convergence on the frozen features (the linear probe);
* ``default_rates``: the learning rates of the head and of the top backbone
  group used when ``lr=None``, and ``backbone_scale``: the backbone's rate
  relative to a given ``lr`` when ``backbone_lr=None``;
* ``opens_exactly_trainable``: whether the ``trainable`` name patterns are
  exactly what trains (strategies with a fixed set of open groups) or only
  bound what the strategy opens (schedules).

The strategies: ``"last"`` (:class:`LastLayer`), ``"top"``
(:class:`TopLayers`), ``"full"`` (:class:`FullFineTuning`), ``"gradual"``
(:class:`GradualUnfreezing`, ULMFiT) and ``"lp_ft"`` (:class:`LPFT`, Kumar et
al.'s linear probe, then fine-tune). The plan that applies a strategy to a
network's parameter names, with batch norm and learning-rate scales, is
:class:`~sktransfer.transfer._plan.TransferPlan`.
"""

from abc import ABCMeta, abstractmethod
from numbers import Integral

from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval

__all__ = ["STRATEGIES", "FullFineTuning", "GradualUnfreezing", "LPFT", "LastLayer",
           "TopLayers", "TransferStrategy", "get_strategy"]


class TransferStrategy(BaseEstimator, metaclass=ABCMeta):
    """Base class of the fine-tuning strategies.

    Subclasses implement :meth:`n_open`, may override :meth:`probes_head`
    and the class attributes below, and declare one entry of
    ``_parameter_constraints`` per ``__init__`` parameter (validated at every
    fit).

    Attributes
    ----------
    default_rates : tuple of (float, float)
        ``(head, backbone)`` learning rates used by ``lr=None`` (the backbone
        rate is that of the top backbone group). Default ``(1e-2, 1e-3)``.
    backbone_scale : float
        The top backbone group's rate relative to a given ``lr`` when
        ``backbone_lr=None``. Default 1.0.
    opens_exactly_trainable : bool
        ``True`` (default): with ``trainable`` patterns, exactly the matching
        backbone parameters train (with the head); ``False``: the patterns
        only bound the groups the strategy opens.
    """

    _parameter_constraints: dict = {}

    default_rates = (1e-2, 1e-3)
    backbone_scale = 1.0
    opens_exactly_trainable = True

    @abstractmethod
    def n_open(self, epoch, n_groups):
        """Backbone groups, counted from the top, that train in ``epoch`` (0-based).

        Parameters
        ----------
        epoch : int
            The epoch, counted over every call of the model (``partial_fit``
            continues the schedule).
        n_groups : int
            The number of backbone groups (the head not counted).

        Returns
        -------
        int, from 0 (only the head trains) to ``n_groups`` (everything).
        """

    def probes_head(self, head):
        """Whether a new head is first fitted on the frozen features by the linear probe.

        ``head`` is the estimator's ``head`` parameter (``"replace"``,
        ``"keep"`` or ``"add"``). Default: no probe.
        """
        return False


class LastLayer(TransferStrategy):
    """Train the head only; a new head first fitted by the linear probe.

    A kept pretrained head (``head="keep"``) starts from its pretrained
    weights instead (refitting it from a few examples would throw them away).

    Examples
    --------
    >>> from sktransfer.transfer import LastLayer
    >>> LastLayer().n_open(epoch=5, n_groups=3)
    0
    """

    def n_open(self, epoch, n_groups):
        return 0

    def probes_head(self, head):
        return head != "keep"


class TopLayers(TransferStrategy):
    """Train the head and the top ``n_layers`` backbone groups.

    Parameters
    ----------
    n_layers : int, default=1
        Backbone groups trained (more than there are: all).

    Examples
    --------
    >>> from sktransfer.transfer import TopLayers
    >>> TopLayers(n_layers=2).n_open(epoch=0, n_groups=3)
    2
    """

    _parameter_constraints: dict = {"n_layers": [Interval(Integral, 0, None, closed="left")]}

    def __init__(self, n_layers=1):
        self.n_layers = n_layers

    def n_open(self, epoch, n_groups):
        return min(n_groups, int(self.n_layers))


class FullFineTuning(TransferStrategy):
    """Train everything.

    Examples
    --------
    >>> from sktransfer.transfer import FullFineTuning
    >>> FullFineTuning().n_open(epoch=0, n_groups=3)
    3
    """

    def n_open(self, epoch, n_groups):
        return n_groups


class GradualUnfreezing(TransferStrategy):
    """The head at first, then one more group from the top every ``unfreeze_every`` epochs.

    Howard & Ruder's (2018) gradual unfreezing (ULMFiT). ``trainable``
    patterns bound the groups it opens.

    Parameters
    ----------
    unfreeze_every : int, default=1
        Epochs between two unfreezings.

    Examples
    --------
    >>> from sktransfer.transfer import GradualUnfreezing
    >>> [GradualUnfreezing(unfreeze_every=2).n_open(e, n_groups=3) for e in range(8)]
    [0, 0, 1, 1, 2, 2, 3, 3]
    """

    _parameter_constraints: dict = {
        "unfreeze_every": [Interval(Integral, 1, None, closed="left")]}

    opens_exactly_trainable = False

    def __init__(self, unfreeze_every=1):
        self.unfreeze_every = unfreeze_every

    def n_open(self, epoch, n_groups):
        return min(n_groups, epoch // int(self.unfreeze_every))


class LPFT(TransferStrategy):
    """Linear probe, then fine-tune everything (Kumar et al., 2022).

    The head is first fitted to convergence on the frozen features (L-BFGS),
    then everything trains, the backbone at a tenth of a given ``lr`` unless
    ``backbone_lr`` says otherwise. ``trainable`` patterns bound what opens.

    Examples
    --------
    >>> from sktransfer.transfer import LPFT
    >>> LPFT().n_open(epoch=0, n_groups=3), LPFT().probes_head("keep")
    (3, True)
    """

    backbone_scale = 0.1
    opens_exactly_trainable = False

    def n_open(self, epoch, n_groups):
        return n_groups

    def probes_head(self, head):
        return True


#: The strategies ``strategy=`` accepts by name.
STRATEGIES = {
    "last": LastLayer,
    "top": TopLayers,
    "full": FullFineTuning,
    "gradual": GradualUnfreezing,
    "lp_ft": LPFT,
}


def get_strategy(strategy, n_layers=1, unfreeze_every=1):
    """The strategy object for ``strategy``: a name of :data:`STRATEGIES` or an object.

    A name of ``"top"`` or ``"gradual"`` is configured with ``n_layers`` or
    ``unfreeze_every``; an object is returned as it is.
    """
    if isinstance(strategy, TransferStrategy):
        return strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {sorted(STRATEGIES)} or a TransferStrategy, "
                         f"got {strategy!r}")
    if strategy == "top":
        return TopLayers(n_layers=n_layers)
    if strategy == "gradual":
        return GradualUnfreezing(unfreeze_every=unfreeze_every)
    return STRATEGIES[strategy]()
