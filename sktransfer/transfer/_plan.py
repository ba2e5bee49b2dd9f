"""The plan of a fine-tuning run: which parameters train in each epoch, at which rate.

A :class:`TransferPlan` applies a strategy (see
:mod:`sktransfer.transfer._strategies`) to a network's layer groups. It holds
only parameter *names* (never tensors), so it pickles with the skorch net and
stays valid after unpickling or moving the network to another device.

``trainable`` (name patterns) replaces the groups a strategy with a fixed set
of open groups chooses (``LastLayer``, ``TopLayers``, ``FullFineTuning``),
bounds what a schedule opens (``GradualUnfreezing``, ``LPFT``) and adds to
the parameters a strategy chooses itself (``BitFit``, ``LoRA``).

Batch norm, per layer: a *frozen* batch-norm layer never trains its
parameters and always uses its running statistics; a *trained* one trains
like any other layer of its group while the group is open (its statistics
update, its parameters learn) and uses its running statistics while the group
is frozen. ``bn="freeze"`` freezes every layer, ``bn="train"`` trains every
layer, and ``bn="auto"`` (the estimators' default, resolved by the caller
into ``bn_train``) trains exactly the layers whose running statistics were
never updated (see ``_layers.untrained_batch_norm``):
pretrained statistics are kept, statistics that were never estimated are
estimated on the target.
"""

import fnmatch

from . import _strategies
from ._strategies import TransferStrategy, get_strategy

__all__ = ["BN_MODES", "TransferPlan"]

BN_MODES = ("auto", "freeze", "train")


class TransferPlan:
    """The trainable parameters of every epoch and the per-group learning-rate scales.

    Parameters
    ----------
    groups : list of list of str
        Parameter names per layer group, bottom to top, the head's group last.
    bn_layers : list of (str, int)
        Batch-norm layers outside the head: module name and group index.
    strategy : str or TransferStrategy
        A name is configured with ``n_layers`` / ``unfreeze_every``.
    n_layers : int
    unfreeze_every : int
    trainable : list of str or None
        fnmatch patterns over parameter names.
    bn : {"auto", "freeze", "train"}
    backbone_scale : float
        Learning rate of the top backbone group relative to the head's.
    layer_lr_decay : float
        Each group further down gets this factor more.
    bn_train : collection of str or None
        With ``bn="auto"``: the batch-norm layers that train (the others are
        frozen); ``None`` (or any other ``bn``) follows ``bn``.
    """

    def __init__(self, groups, bn_layers, strategy, n_layers, unfreeze_every, trainable, bn,
                 backbone_scale, layer_lr_decay, bn_train=None):
        self.backbone = [list(g) for g in groups[:-1]]
        self.head = list(groups[-1])
        self.bn_layers = list(bn_layers)
        self.strategy = get_strategy(strategy, n_layers, unfreeze_every)
        self.n_layers = n_layers
        self.unfreeze_every = unfreeze_every
        self.bn = bn
        names = [n for g in self.backbone for n in g]
        self.allowed = None
        if trainable is not None:
            self.allowed = {n for n in names if any(fnmatch.fnmatchcase(n, p) for p in trainable)}
            unmatched = [p for p in trainable if not any(fnmatch.fnmatchcase(n, p) for n in names)]
            if unmatched:
                raise ValueError(
                    f"trainable patterns {unmatched} match no backbone parameter; the backbone's "
                    f"parameters are {names[:12]}{' ...' if len(names) > 12 else ''}"
                )
        chosen = self.strategy.trainable_parameters(names)
        #: the backbone parameters the strategy itself trains (BitFit, LoRA), or None
        self.chosen = None if chosen is None else set(chosen)
        bn_names = {m for m, _ in self.bn_layers}
        self.bn_params = {n for n in names if n.rpartition(".")[0] in bn_names}
        if bn == "train":
            trained = bn_names
        elif bn == "auto" and bn_train is not None:
            trained = bn_names & set(bn_train)
        else:
            trained = set()
        #: batch-norm layers that train while their group is open
        self.bn_train = sorted(trained)
        #: parameters of the frozen batch-norm layers, which never train
        self.bn_frozen_params = {n for n in self.bn_params
                                 if n.rpartition(".")[0] not in trained}
        G = len(self.backbone)
        # Learning-rate scale per group: the head 1, the top backbone group
        # backbone_scale, each further group down layer_lr_decay times more.
        self.lr_scales = [backbone_scale * layer_lr_decay ** (G - 1 - i) for i in range(G)]
        self.lr_scales.append(1.0)

    @property
    def n_groups(self):
        """Number of backbone groups (the head not counted)."""
        return len(self.backbone)

    def _schedule(self):
        # a plan pickled before the strategy objects holds the strategy's name
        if not isinstance(self.strategy, TransferStrategy):
            self.strategy = get_strategy(self.strategy, self.n_layers, self.unfreeze_every)
        return self.strategy

    def _exact(self):
        """Whether a fixed set of backbone parameters trains (else the schedule decides)."""
        if vars(self).get("chosen") is not None:
            return True
        return self.allowed is not None and self._schedule().opens_exactly_trainable

    def _exact_names(self):
        """The fixed set: the strategy's own parameters and those ``trainable`` names."""
        return set(vars(self).get("chosen") or ()) | set(self.allowed or ())

    def n_open(self, epoch):
        """Backbone groups open (from the top) in epoch ``epoch`` (0-based)."""
        return self._schedule().n_open(epoch, self.n_groups)

    def trainable_names(self, epoch):
        """Names of the parameters that train in epoch ``epoch``."""
        G = self.n_groups
        if self._exact():
            open_names = self._exact_names()
        else:
            k = self.n_open(epoch)
            open_names = {n for g in self.backbone[G - k:] for n in g} if k else set()
            if self.allowed is not None:
                open_names &= self.allowed
        open_names -= self._bn_frozen_params()
        return open_names | set(self.head)

    def _bn_trained(self):
        if "bn_train" in vars(self):
            return set(self.bn_train)
        # a plan pickled before per-layer batch norm
        return {m for m, _ in self.bn_layers} if self.bn == "train" else set()

    def _bn_frozen_params(self):
        if "bn_frozen_params" in vars(self):
            return self.bn_frozen_params
        trained = self._bn_trained()
        return {n for n in self.bn_params if n.rpartition(".")[0] not in trained}

    def bn_modes(self):
        """``{layer name: "train" or "freeze"}`` for every batch-norm layer outside the head."""
        trained = self._bn_trained()
        return {m: "train" if m in trained else "freeze" for m, _ in self.bn_layers}

    def eval_layers(self, epoch):
        """Batch-norm layers that use their running statistics in epoch ``epoch``.

        The frozen layers (all of them with ``bn="freeze"``), and the trained
        ones whose groups are still frozen.
        """
        trained = self._bn_trained()
        if not trained:
            return [m for m, _ in self.bn_layers]
        first_open = self.n_groups - self.n_open(epoch)
        if self._exact():
            exact = self._exact_names()
            open_groups = {i for i, g in enumerate(self.backbone) if exact & set(g)}
        else:
            open_groups = set(range(first_open, self.n_groups))
        return [m for m, i in self.bn_layers if m not in trained or i not in open_groups]


# TransferPlan lived in _strategies.py before the strategy objects: fitted models
# pickled then name it there. Set from here, so that _strategies imports nothing
# of this module (importing any submodule of the package imports this one first).
_strategies.TransferPlan = TransferPlan
