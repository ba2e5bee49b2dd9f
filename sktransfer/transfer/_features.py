"""PretrainedFeatures: a frozen pretrained network as a scikit-learn transformer."""

import copy

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..base import (
    NeuralEstimatorMixin,
    _Call,
    parameter_constraints,
    resolve_device,
)
from ._layers import _Stop, find_output_layer
from ._pretrained import PRETRAINED_CONSTRAINT, resolve_pretrained

__all__ = ["PretrainedFeatures", "embed"]


def embed(network, X, layer=None, mode="input", batch_size=256, device="cpu"):
    """Run ``network`` in eval mode on ``X`` and capture an intermediate tensor.

    Parameters
    ----------
    network : nn.Module
    X : ndarray or tensor
        Samples, batched ``batch_size`` at a time (-1 or None: all at once).
    layer : str or None
        Submodule to capture; ``None`` captures what the network returns.
    mode : {"input", "output"}
        Capture the layer's input or its output. The forward pass stops
        there, so later layers are not computed.
    batch_size : int
    device : str

    Returns
    -------
    Z : tensor of shape (n_samples, n_features)
        On ``device``, flattened from the second dimension.
    """
    captured = []

    def pre_hook(mod, args):
        captured.append(args[0])
        raise _Stop

    def post_hook(mod, args, out):
        captured.append(out)
        raise _Stop

    handle = None
    if layer:
        target = network.get_submodule(layer)
        handle = (target.register_forward_pre_hook(pre_hook) if mode == "input"
                  else target.register_forward_hook(post_hook))
    n = len(X)
    bs = n if batch_size in (None, -1) else int(batch_size)
    was_training = network.training
    network.eval()
    outs = []
    try:
        with torch.no_grad():
            for start in range(0, n, max(bs, 1)):
                xb = X[start:start + bs]
                xb = torch.as_tensor(np.ascontiguousarray(xb) if isinstance(xb, np.ndarray)
                                     else xb).to(device)
                try:
                    out = network(xb)
                except _Stop:
                    out = captured.pop()
                else:
                    if layer:
                        raise ValueError(f"the layer {layer!r} is never called by the "
                                         f"network's forward pass")
                if not isinstance(out, torch.Tensor):
                    raise TypeError(f"the captured output is a {type(out).__name__}, "
                                    f"not a tensor")
                outs.append(out.reshape(out.shape[0], -1) if out.dim() != 2 else out)
    finally:
        if handle is not None:
            handle.remove()
        network.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0, 0, device=device)


@parameter_constraints(
    pretrained=PRETRAINED_CONSTRAINT,
    layer=[str, None],
)
class PretrainedFeatures(ClassNamePrefixFeaturesOutMixin, TransformerMixin, NeuralEstimatorMixin,
                         BaseEstimator):
    """Embed samples with a frozen pretrained network, as a transformer.

    The linear-probe baseline of transfer learning is
    ``make_pipeline(PretrainedFeatures(net), LogisticRegression())``: the
    network is never trained, and the classifier sees the representation
    that the network's output layer sees.

    Parameters
    ----------
    pretrained : nn.Module, factory, (factory, path) or FrozenEstimator
        The source network, in any form :class:`FineTuner` accepts: an
        ``nn.Module`` instance (copied at ``fit``, never modified), a
        zero-argument factory, a pair ``(factory, weights_path)`` (safetensors,
        or a torch file read with ``weights_only=True``; never unpickled), or
        ``sklearn.frozen.FrozenEstimator(fitted)`` for a fitted sktransfer
        estimator or skorch net. For a multi-task model the shared trunk is
        used.
    layer : str or None, default=None
        ``None``: the input of the output layer (the last ``nn.Linear`` in
        module order), i.e. the network up to, not including, its head; for a
        feature extractor without an output layer (a multi-task trunk), its
        output. A name (as in ``named_modules()``): the output of that layer.
    batch_size : int, default=256
        Samples per forward pass (-1: all at once).
    device : {"cpu", "cuda", "auto"}, default="cpu"
    random_state : int, RandomState or None, default=None
        Only used to initialise lazy modules (such as ``nn.LazyLinear``) and
        factories that build random networks, reproducibly.

    Attributes
    ----------
    module_ : nn.Module
        The frozen copy of the network, in eval mode.
    layer_ : str or None
        The layer whose input (``layer=None``) or output is the embedding.
    n_features_in_ : int
    input_shape_ : tuple
        Shape of one sample.

    Examples
    --------
    >>> import torch
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sktransfer.transfer import PretrainedFeatures
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
    ...                           torch.nn.Linear(32, 10))
    >>> PretrainedFeatures(net).fit_transform(X[:5]).shape
    (5, 32)
    >>> probe = make_pipeline(PretrainedFeatures(net), LogisticRegression(max_iter=500))
    >>> probe.fit(X[:1000], y[:1000]).score(X[1000:], y[1000:]) > 0.8
    True
    """

    def __init__(self, pretrained, layer=None, batch_size=256, device="cpu", random_state=None):
        self.pretrained = pretrained
        self.layer = layer
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def fit(self, X, y=None):
        """Copy and freeze the network; check that it embeds samples of this shape.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n, C, H, W)
        y : ignored

        Returns
        -------
        self
        """
        return self._run("fit", X, y)

    # --------------------------------------------------------- template hooks
    _fitted_attribute = "module_"

    def _fitted_module(self):
        check_is_fitted(self, "module_")
        return self.module_

    def _call_context(self, call, new_model):
        return _Call(call, new_model, resolve_device(self.device), None)

    def _encode(self, ctx, X, y=None):
        return {"X": self._validate_X(X, reset=True)}

    def _build(self, ctx, data):
        device = ctx.device
        module, has_output = resolve_pretrained(self.pretrained)
        module.to(device).eval()
        names = dict(module.named_modules())
        if self.layer is not None:
            if self.layer not in names or self.layer == "":
                some = [n for n in names if n][:12]
                raise ValueError(f"layer={self.layer!r} is not a submodule of the "
                                 f"pretrained {type(module).__name__}; its submodules "
                                 f"include {some}")
            layer, mode = self.layer, "output"
        elif has_output:
            try:
                layer = find_output_layer(module)
            except ValueError as exc:
                raise ValueError(
                    f"the pretrained {type(module).__name__} has no nn.Linear output "
                    f"layer to cut before; pass layer=<name> to take the output of a "
                    f"named layer as the embedding") from exc
            mode = "input"
        else:
            layer, mode = None, "output"
        # the dry run: two samples through the network up to the embedding
        Z = embed(module, data["X"][:2], layer, mode, self.batch_size, device)
        module.requires_grad_(False)
        data.update(layer=layer, mode=mode, n_features_out=int(Z.shape[1]))
        return module

    def _train(self, ctx, module, data):
        """Nothing to train: the network stays frozen."""

    def _record(self, ctx, module, data, result):
        self.module_ = module
        self.layer_ = data["layer"]
        self._mode = data["mode"]
        self._n_features_out = data["n_features_out"]
        return self

    def transform(self, X):
        """Embed ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Samples of the shape the transformer was fitted on.

        Returns
        -------
        ndarray of shape (n_samples, n_features_out)
            The embedding (float32), flattened from the second dimension.
        """
        check_is_fitted(self, "module_")
        X = self._validate_X(X, reset=False)
        device = resolve_device(self.device)
        first = next(self.module_.parameters(), None)
        if first is not None and first.device != torch.device(device):
            self.module_.to(device)
        with self._torch_context(device=device):
            Z = embed(self.module_, X, self.layer_, self._mode, self.batch_size, device)
        return Z.float().cpu().numpy()

    def __getstate__(self):
        state = self.__dict__.copy()
        if "module_" in state:
            state["module_"] = copy.deepcopy(state["module_"]).cpu()
        return state
