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
  bound what the strategy opens (schedules);
* :meth:`~TransferStrategy.prepare_network`,
  :meth:`~TransferStrategy.trainable_parameters` and
  :meth:`~TransferStrategy.finish_call`: strategies that train chosen
  parameters rather than layer groups (BitFit's biases) or that change the
  network (LoRA's adapters, merged after every call).

The strategies: ``"last"`` (:class:`LastLayer`), ``"top"``
(:class:`TopLayers`), ``"full"`` (:class:`FullFineTuning`), ``"gradual"``
(:class:`GradualUnfreezing`, ULMFiT), ``"lp_ft"`` (:class:`LPFT`, Kumar et
al.'s linear probe, then fine-tune), ``"lora"`` (:class:`LoRA`, low-rank
adapters) and ``"bitfit"`` (:class:`BitFit`, the biases only). The plan that applies a strategy to a
network's parameter names, with batch norm and learning-rate scales, is
:class:`~sktransfer.transfer._plan.TransferPlan`.
"""

from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval

from ._lora import LoRALayer, add_adapters, lora_targets, merge_adapters

__all__ = ["STRATEGIES", "BitFit", "FullFineTuning", "GradualUnfreezing", "LPFT", "LastLayer",
           "LoRA", "TopLayers", "TransferStrategy", "get_strategy"]


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

    def prepare_network(self, network, head_name):
        """Change the network in place before it trains; return whether it changed.

        Called on the new network before its layer groups are read, and again
        on the fitted network at the start of every later ``partial_fit``
        (a changed network there gets a new optimizer, which keeps the state
        of the parameters it had before). Default: nothing, ``False``.

        Parameters
        ----------
        network : nn.Module
            The network with its head.
        head_name : str
            The name of its output layer.

        Returns
        -------
        bool
        """
        return False

    def trainable_parameters(self, backbone_names):
        """The backbone parameters that train in every epoch, or ``None``.

        A set of names replaces the layer-group schedule of :meth:`n_open`
        (the head still trains, and ``trainable`` patterns add parameters
        that train fully). Default: ``None``, the schedule.

        Parameters
        ----------
        backbone_names : list of str
            The parameter names of the backbone groups (of the network after
            :meth:`prepare_network`).

        Returns
        -------
        set of str or None
        """
        return None

    def finish_call(self, network):
        """Change the trained network in place at the end of every call.

        Called at the end of every ``fit`` and ``partial_fit`` (LoRA merges
        its adapters there). Default: nothing.

        Parameters
        ----------
        network : nn.Module
            The trained network.
        """


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


class LoRA(TransferStrategy):
    """Low-rank adapters on the linear and convolutional layers, the base weights frozen.

    Hu et al.'s (2022) LoRA: every ``nn.Linear`` and ``nn.Conv2d`` of the
    backbone (or those ``target_modules`` names) computes
    ``W0 x + b + alpha / rank * B A dropout(x)``; only ``A`` and ``B`` (and
    the head) train, ``B`` starting at zero so that training starts from the
    pretrained network. An ``nn.Conv2d`` gets ``A`` as a convolution with its
    kernel into ``rank`` channels and ``B`` as a 1x1 convolution (grouped
    convolutions get no adapter).

    With ``merge=True`` the adapters are folded into the weights
    (``W0 += alpha / rank * B A``) at the end of every ``fit`` and
    ``partial_fit`` call: the fitted ``net_.module_`` has exactly the
    pretrained architecture and predicts at its cost, and a later
    ``partial_fit`` puts fresh adapters (``B = 0``) on the merged weights
    (the head's optimizer state carries over, the adapters' restarts). The
    adapters learn at ``backbone_lr`` (default ``3e-3``, or ``0.3 * lr``
    for a given ``lr``), the head at ``lr``.
    ``merge=False`` keeps the adapters (``LoRALayer`` modules) in the fitted
    network, so ``partial_fit`` continues them exactly.

    Parameters
    ----------
    rank : int, default=4
        The rank ``r`` of each update.
    alpha : float, default=8.0
        The update is scaled by ``alpha / rank``.
    dropout : float, default=0.0
        Dropout on the adapters' input.
    target_modules : list of str or None, default=None
        ``fnmatch`` patterns over module names (``"features.*"``); ``None``:
        every linear and 2-d convolutional layer outside the head. A pattern
        that matches none is an error.
    merge : bool, default=True
        Merge the adapters into the weights after every call.

    Examples
    --------
    >>> import torch
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.transfer import FineTuner, LoRA
    >>> X, y = load_digits(return_X_y=True)
    >>> _ = torch.manual_seed(0)
    >>> source = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
    ...                              torch.nn.Linear(32, 32), torch.nn.ReLU(),
    ...                              torch.nn.Linear(32, 5))
    >>> ft = FineTuner(source, strategy=LoRA(rank=2), max_epochs=20,
    ...                random_state=0).fit(X[:500] / 16, y[:500])
    >>> ft.n_trainable_params_, ft.n_params_   # adapters 192 + 128, head 330
    (650, 3466)
    >>> ft.net_.module_                 # merged: the pretrained architecture
    Sequential(
      (0): Linear(in_features=64, out_features=32, bias=True)
      (1): ReLU()
      (2): Linear(in_features=32, out_features=32, bias=True)
      (3): ReLU()
      (4): Linear(in_features=32, out_features=10, bias=True)
    )
    """

    _parameter_constraints: dict = {
        "rank": [Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, np.inf, closed="neither")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "target_modules": [list, tuple, None],
        "merge": ["boolean"],
    }

    # the adapters learn at 3e-3 (a given lr: lr * 0.3): at 1e-2 they overshoot
    # (Omniglot's held-out alphabet, 5 shots: 0.756 at 1e-2, 0.836 at 3e-3,
    # full fine-tuning 0.822)
    default_rates = (1e-2, 3e-3)
    backbone_scale = 0.3

    def __init__(self, rank=4, alpha=8.0, dropout=0.0, target_modules=None, merge=True):
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.target_modules = target_modules
        self.merge = merge

    def n_open(self, epoch, n_groups):
        return n_groups

    def prepare_network(self, network, head_name):
        if any(isinstance(m, LoRALayer) for m in network.modules()):
            return False  # adapters kept (merge=False): training continues with them
        patterns = None if self.target_modules is None else list(self.target_modules)
        if patterns is not None and not all(isinstance(p, str) for p in patterns):
            raise TypeError(f"LoRA target_modules must be a list of name patterns, got "
                            f"{self.target_modules!r}")
        names = lora_targets(network, head_name, patterns)
        if not names:
            raise ValueError(f"the pretrained {type(network).__name__} has no nn.Linear or "
                             f"nn.Conv2d layer outside the head for a LoRA adapter")
        add_adapters(network, names, self.rank, self.alpha, self.dropout)
        return True

    def trainable_parameters(self, backbone_names):
        return {n for n in backbone_names if ".lora_A." in f".{n}" or ".lora_B." in f".{n}"}

    def finish_call(self, network):
        if self.merge:
            merge_adapters(network)


class BitFit(TransferStrategy):
    """Train the biases of the backbone and the head, nothing else (Ben Zaken et al., 2022).

    Every parameter of the backbone named ``bias`` trains (a batch-norm
    layer's only when ``bn`` lets the layer train), every other backbone
    parameter stays at its pretrained value: the fewest parameters of any
    strategy that still changes the features. A new head is first fitted by
    the linear probe, as with ``"last"``.

    Examples
    --------
    >>> from sktransfer.transfer import BitFit
    >>> sorted(BitFit().trainable_parameters(["0.weight", "0.bias", "2.weight", "2.bias"]))
    ['0.bias', '2.bias']
    """

    default_rates = (1e-2, 1e-2)

    def n_open(self, epoch, n_groups):
        return n_groups

    def probes_head(self, head):
        # the head holds most of what trains: a new one starts from the linear
        # probe, as with "last" (digits 0-4 -> 5-9, 300 examples: 0.79 against
        # 0.66 from a random head)
        return head != "keep"

    def trainable_parameters(self, backbone_names):
        return {n for n in backbone_names if n.rpartition(".")[2] == "bias"}


#: The strategies ``strategy=`` accepts by name.
STRATEGIES = {
    "last": LastLayer,
    "top": TopLayers,
    "full": FullFineTuning,
    "gradual": GradualUnfreezing,
    "lp_ft": LPFT,
    "lora": LoRA,
    "bitfit": BitFit,
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
