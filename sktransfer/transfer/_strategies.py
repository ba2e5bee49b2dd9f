"""Which layer groups train when, and at which learning rate.

A :class:`TransferPlan` holds only parameter *names* (never tensors), so it
pickles with the skorch net and stays valid after unpickling or moving the
network to another device. Strategies, with ``G`` backbone groups:

``"last"``    only the head trains;
``"top"``     the head and the top ``n_layers`` backbone groups;
``"full"``    everything;
``"gradual"`` the head at first, then one more group from the top every
              ``unfreeze_every`` epochs (ULMFiT's gradual unfreezing);
``"lp_ft"``   everything, after the head has been fitted to convergence on the
              frozen features (Kumar et al.'s linear probe, then fine-tune).

``trainable`` (name patterns) replaces the groups chosen by ``"last"``,
``"top"`` and ``"full"`` and bounds what ``"gradual"`` and ``"lp_ft"`` open.
With ``bn="freeze"`` batch-norm parameters never train and batch-norm layers
always use their running statistics; with ``bn="train"`` those of open groups
train like any other layer.
"""

import fnmatch

__all__ = ["STRATEGIES", "TransferPlan"]

STRATEGIES = ("last", "top", "full", "gradual", "lp_ft")
BN_MODES = ("freeze", "train")


class TransferPlan:
    """The trainable parameters of every epoch and the per-group learning-rate scales.

    Parameters
    ----------
    groups : list of list of str
        Parameter names per layer group, bottom to top, the head's group last.
    bn_layers : list of (str, int)
        Batch-norm layers outside the head: module name and group index.
    strategy : str
    n_layers : int
    unfreeze_every : int
    trainable : list of str or None
        fnmatch patterns over parameter names.
    bn : {"freeze", "train"}
    backbone_scale : float
        Learning rate of the top backbone group relative to the head's.
    layer_lr_decay : float
        Each group further down gets this factor more.
    """

    def __init__(self, groups, bn_layers, strategy, n_layers, unfreeze_every, trainable, bn,
                 backbone_scale, layer_lr_decay):
        self.backbone = [list(g) for g in groups[:-1]]
        self.head = list(groups[-1])
        self.bn_layers = list(bn_layers)
        self.strategy = strategy
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
        bn_names = {m for m, _ in self.bn_layers}
        self.bn_params = {n for n in names if n.rpartition(".")[0] in bn_names}
        G = len(self.backbone)
        # Learning-rate scale per group: the head 1, the top backbone group
        # backbone_scale, each further group down layer_lr_decay times more.
        self.lr_scales = [backbone_scale * layer_lr_decay ** (G - 1 - i) for i in range(G)]
        self.lr_scales.append(1.0)

    @property
    def n_groups(self):
        """Number of backbone groups (the head not counted)."""
        return len(self.backbone)

    def n_open(self, epoch):
        """Backbone groups open (from the top) in epoch ``epoch`` (0-based)."""
        G = self.n_groups
        if self.strategy == "last":
            return 0
        if self.strategy == "top":
            return min(G, self.n_layers)
        if self.strategy == "gradual":
            return min(G, epoch // self.unfreeze_every)
        return G  # "full", "lp_ft"

    def trainable_names(self, epoch):
        """Names of the parameters that train in epoch ``epoch``."""
        G = self.n_groups
        if self.allowed is not None and self.strategy in ("last", "top", "full"):
            open_names = set(self.allowed)
        else:
            k = self.n_open(epoch)
            open_names = {n for g in self.backbone[G - k:] for n in g} if k else set()
            if self.allowed is not None:
                open_names &= self.allowed
        if self.bn == "freeze":
            open_names -= self.bn_params
        return open_names | set(self.head)

    def eval_layers(self, epoch):
        """Batch-norm layers that use their running statistics in epoch ``epoch``.

        All of them with ``bn="freeze"``; with ``bn="train"`` those of the
        groups that are still frozen.
        """
        if self.bn == "freeze":
            return [m for m, _ in self.bn_layers]
        first_open = self.n_groups - self.n_open(epoch)
        if self.allowed is not None and self.strategy in ("last", "top", "full"):
            open_groups = {i for i, g in enumerate(self.backbone) if self.allowed & set(g)}
        else:
            open_groups = set(range(first_open, self.n_groups))
        return [m for m, i in self.bn_layers if i not in open_groups]
