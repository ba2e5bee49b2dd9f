"""Feature regularisers of fine-tuning: BSS and DELTA, next to the L2-SP weight penalty.

A regulariser is a configuration object (``regularizer=`` of
:class:`~sktransfer.transfer.FineTuner`, searchable as
``regularizer__<name>``) whose :meth:`~TransferRegularizer.build` returns
a fresh penalty object for one network. While the network trains, the net
captures what the penalty asked for (the inputs or outputs of named
submodules, see :meth:`~TransferRegularizer.watch`) in every training
forward pass, and adds the penalty's value to the loss. Validation and
prediction never compute it.

* :class:`BSS`, batch spectral shrinkage (Chen et al., 2019): the squares of
  the ``k`` smallest singular values of the batch's features (the input of
  the head), which carry the source knowledge that does not transfer;
* :class:`DELTA` (Li et al., 2019): the distance between the feature maps
  of the network and those of the pretrained network on the same batch,
  each channel weighted by how much the pretrained network's target loss
  grows without it.
"""

import copy
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval
from torch import nn

__all__ = ["BSS", "DELTA", "Capture", "TransferRegularizer"]

#: Rows of the training data DELTA's channel attention is measured on.
ATTENTION_ROWS = 512


class TransferRegularizer(BaseEstimator, metaclass=ABCMeta):
    """Base class of the feature regularisers of fine-tuning.

    A subclass declares its parameters in ``_parameter_constraints`` and
    implements :meth:`build`.
    """

    _parameter_constraints: dict = {}

    @abstractmethod
    def build(self, network, head_name):
        """A fresh penalty for ``network`` (whose output layer is ``head_name``).

        The penalty implements ``watch()`` (the ``(module name, "input" or
        "output")`` pairs to capture in every training forward pass),
        ``setup(network, X, y, loss, batch_size, device)`` (before the first
        epoch of a new model, on the network with its starting head) and
        ``penalty(captured, X)`` (the term added to one batch's loss);
        ``_Penalty`` is a base whose hooks are no-ops.
        """


class _Penalty:
    """What a regulariser builds: the hooks the net calls."""

    def watch(self):
        """``[(module name, "input" or "output"), ...]`` to capture in training."""
        return []

    def setup(self, network, X, y, loss, batch_size, device):
        """Before the first epoch of a new model, with its training data. No-op."""

    def penalty(self, captured, X):
        """The penalty of one batch: ``captured`` maps each watched pair to its tensor."""
        return None


class _BSSPenalty(_Penalty):
    def __init__(self, head_name, eta, k):
        self.head_name, self.eta, self.k = head_name, float(eta), int(k)

    def watch(self):
        return [(self.head_name, "input")]

    def penalty(self, captured, X):
        feats = captured[(self.head_name, "input")].flatten(1).float()
        sv = torch.linalg.svdvals(feats)           # descending
        return self.eta * sv[-self.k:].pow(2).sum()


class BSS(TransferRegularizer):
    """Batch spectral shrinkage (Chen et al., 2019).

    .. math::

        \\Omega = \\eta \\sum_{i=1}^{k} \\sigma_{-i}^2(F)

    over the ``k`` smallest singular values of the mini-batch's feature
    matrix ``F`` (the input of the head, one row per sample). Shrinking them
    suppresses the feature directions that the few target examples cannot
    tell apart from noise (negative transfer), without pulling the weights
    anywhere.

    Parameters
    ----------
    eta : float, default=1e-3
        Strength (the paper's value).
    k : int, default=1
        Singular values shrunk (the paper's value).

    Examples
    --------
    >>> import torch
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.transfer import BSS, FineTuner
    >>> X, y = load_digits(return_X_y=True)
    >>> _ = torch.manual_seed(0)
    >>> source = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
    ...                              torch.nn.Linear(32, 5))
    >>> ft = FineTuner(source, strategy="full", regularizer=BSS(), lr=1e-2, max_epochs=30,
    ...                random_state=0).fit(X[:500] / 16, y[:500])
    >>> ft.score(X[500:] / 16, y[500:]) > 0.8
    True
    """

    _parameter_constraints: dict = {
        "eta": [Interval(Real, 0, np.inf, closed="left")],
        "k": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, eta=1e-3, k=1):
        self.eta = eta
        self.k = k

    def build(self, network, head_name):
        return _BSSPenalty(head_name, self.eta, self.k)


def _feature_layers(network, head_name):
    """Default DELTA layers: the convolutions outside the head, else its linear layers."""
    mods = [(n, m) for n, m in network.named_modules()
            if n and n != head_name and not n.startswith(f"{head_name}.")]
    convs = [n for n, m in mods if isinstance(m, nn.modules.conv._ConvNd)]
    if convs:
        return convs
    return [n for n, m in mods if isinstance(m, nn.Linear)]


class Capture:
    """Forward hooks that keep given inputs and outputs of submodules."""

    def __init__(self, network, wanted):
        self.network, self.wanted, self.seen, self.handles = network, wanted, {}, []

    def __enter__(self):
        for name, kind in self.wanted:
            module = self.network.get_submodule(name)

            def hook(mod, args, out, key=(name, kind)):
                self.seen[key] = args[0] if key[1] == "input" else out

            self.handles.append(module.register_forward_hook(hook))
        return self.seen

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles = []


class _DELTAPenalty(_Penalty):
    def __init__(self, layers, alpha, attention):
        self.layers, self.alpha, self.attention = list(layers), float(alpha), attention
        self.source = None
        self.weights = None   # per layer: (channels,) attention, summing to 1

    def watch(self):
        return [(name, "output") for name in self.layers]

    def setup(self, network, X, y, loss, batch_size, device):
        self.source = copy.deepcopy(network).eval()
        for p in self.source.parameters():
            p.requires_grad_(False)
        self.weights = [None] * len(self.layers)
        if not self.attention:
            return
        rows = slice(0, min(len(X), ATTENTION_ROWS))
        X, y = X[rows].to(device), y[rows].to(device)

        def total_loss(mask_layer=None, channel=None):
            def zero(mod, args, out):
                out = out.clone()
                out[:, channel] = 0
                return out

            handle = None
            if mask_layer is not None:
                handle = self.source.get_submodule(mask_layer).register_forward_hook(zero)
            try:
                with torch.no_grad():
                    return sum(float(loss(self.source(X[i:i + batch_size]),
                                          y[i:i + batch_size])) * len(X[i:i + batch_size])
                               for i in range(0, len(X), batch_size)) / len(X)
            finally:
                if handle is not None:
                    handle.remove()

        base = total_loss()
        with Capture(self.source, self.watch()) as seen, torch.no_grad():
            self.source(X[:2])
        for i, name in enumerate(self.layers):
            channels = seen[(name, "output")].shape[1]
            gain = torch.tensor([total_loss(name, c) - base for c in range(channels)])
            self.weights[i] = torch.softmax(gain, 0).to(device)

    def penalty(self, captured, X):
        with torch.no_grad(), Capture(self.source, self.watch()) as ref:
            self.source(X)
        total = 0.0
        for i, name in enumerate(self.layers):
            key = (name, "output")
            diff = (captured[key].float() - ref[key].float()).pow(2)
            # squared distance per sample and channel, averaged over the batch
            per_channel = diff.flatten(2).sum(2) if diff.dim() > 2 else diff
            per_channel = per_channel.mean(0)
            w = self.weights[i]
            total = total + (per_channel.mean() if w is None else (w * per_channel).sum())
        return self.alpha * total


class DELTA(TransferRegularizer):
    """Feature-map regularisation with channel attention (Li et al., 2019).

    .. math::

        \\Omega = \\alpha \\sum_{l} \\sum_{j} W_{lj}
                  \\,\\lVert FM_{lj}(w, x) - FM_{lj}(w^0, x) \\rVert_2^2

    over the channels ``j`` of the feature maps ``FM_l`` of the chosen
    layers: the network being fine-tuned (``w``) against the pretrained one
    (``w0``, kept frozen) on the same batch, averaged over the batch. The
    attention ``W_l`` is the softmax over channels of how much the pretrained
    network's loss on the target (with the linear probe's head on its
    features) grows when channel ``j`` is zeroed,
    measured once before training on the first 512 training rows; with
    ``attention=False`` every channel weighs ``1 / channels``. The behaviour
    that matters is kept, the channels that do not matter for the target may
    move. The paper adds an L2 penalty on the new head: ``l2sp_beta``.

    Parameters
    ----------
    alpha : float, default=0.01
        Strength (the paper's value).
    layers : list of str or None, default=None
        Names of the modules whose outputs are the feature maps; ``None``:
        every convolution outside the head, or every linear layer outside the
        head of a network without convolutions.
    attention : bool, default=True
        Weigh the channels by their measured importance (costs one pass over
        those rows per channel before training).

    Examples
    --------
    >>> import torch
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.transfer import DELTA, FineTuner
    >>> X, y = load_digits(return_X_y=True)
    >>> _ = torch.manual_seed(0)
    >>> source = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
    ...                              torch.nn.Linear(32, 5))
    >>> ft = FineTuner(source, strategy="full", regularizer=DELTA(), lr=1e-2, max_epochs=30,
    ...                random_state=0).fit(X[:500] / 16, y[:500])
    >>> ft.score(X[500:] / 16, y[500:]) > 0.8
    True
    """

    _parameter_constraints: dict = {
        "alpha": [Interval(Real, 0, np.inf, closed="left")],
        "layers": [list, tuple, None],
        "attention": ["boolean"],
    }

    def __init__(self, alpha=0.01, layers=None, attention=True):
        self.alpha = alpha
        self.layers = layers
        self.attention = attention

    def build(self, network, head_name):
        names = dict(network.named_modules())
        if self.layers is None:
            layers = _feature_layers(network, head_name)
        else:
            layers = list(self.layers)
            missing = [n for n in layers if not isinstance(n, str) or n not in names or not n]
            if missing:
                some = [n for n in names if n][:12]
                raise ValueError(f"DELTA layers {missing} are not submodules of the network; "
                                 f"its submodules include {some}")
        if not layers:
            raise ValueError(f"DELTA found no layer outside the head of the "
                             f"{type(network).__name__} to regularise; name them with layers=")
        return _DELTAPenalty(layers, self.alpha, self.attention)

