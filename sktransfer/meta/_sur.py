"""SURClassifier: selecting relevant features from a multi-domain representation
(Dvornik, Schmid & Mairal, 2020)."""

import copy
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_consistent_length, column_or_1d
from skorch import NeuralNet
from torch import nn

from ..base import NeuralEstimatorMixin, derive_seed, parameter_constraints
from ._base import META_PARAMETER_CONSTRAINTS, FewShotClassifierMixin, embed_in_chunks
from ._baseline import BaselineFewShotClassifier
from ._metric_learner import class_means

__all__ = ["SURClassifier"]


class _Extractor(nn.Module):
    """A frozen feature extractor: ``embed(X)`` gives flat (n, d) features."""

    def __init__(self, module, method=None):
        super().__init__()
        self.module = module
        self.method = method
        for p in self.module.parameters():
            p.requires_grad_(False)

    def forward(self, X):
        out = getattr(self.module, self.method)(X) if self.method else self.module(X)
        return out.reshape(out.shape[0], -1)


def _extractor_of(item, index):
    """An :class:`_Extractor` of one entry of ``extractors``."""
    if isinstance(item, FrozenEstimator):
        est = item.estimator
        net = getattr(est, "net_", None)
        module = getattr(net, "module_", None)
        if module is None:
            raise ValueError(f"extractors[{index}]: the {type(est).__name__} inside "
                             "FrozenEstimator is not fitted; fit it first")
        if not callable(getattr(module, "embed", None)):
            raise TypeError(f"extractors[{index}]: the network of {type(est).__name__} has no "
                            "embed method; pass its feature extractor as an nn.Module")
        return _Extractor(copy.deepcopy(module), "embed")
    if isinstance(item, nn.Module):
        return _Extractor(copy.deepcopy(item))
    if hasattr(item, "fit") and hasattr(item, "get_params"):
        name = type(item).__name__
        raise TypeError(
            f"extractors[{index}] is a {name} estimator. clone() (used by GridSearchCV, "
            f"cross_validate, ...) would reset it to an unfitted copy, so it is not accepted "
            f"as is: pass FrozenEstimator(fitted_{name.lower()}) (from sklearn.frozen import "
            f"FrozenEstimator), or its feature extractor as an nn.Module")
    raise TypeError(f"extractors[{index}] must be an nn.Module or a FrozenEstimator of a "
                    f"fitted sktransfer few-shot estimator; got {type(item).__name__}")


def select_features(feats, lambdas):
    """The concatenation of the L2-normalised features of every extractor, each
    scaled by its selection weight: :math:`[\\lambda_1 \\hat f_1, \\dots,
    \\lambda_m \\hat f_m]`."""
    return torch.cat([lam * F.normalize(f, dim=1) for lam, f in zip(lambdas, feats)], dim=1)


def cosine_logits(z, prototypes, temperature):
    """``temperature`` times the cosine similarity of every row to every prototype."""
    return temperature * F.normalize(z, dim=1) @ F.normalize(prototypes, dim=1).T


class _SURNet(NeuralNet):
    """The net that holds SUR's frozen extractors: nothing in it is trained by
    the net itself (the extractors are trained before, the selection weights
    in ``adapt``), so it has no optimizer."""

    def initialize_optimizer(self, *args, **kwargs):
        self.optimizer_ = None
        return self


class SURModule(nn.Module):
    """The frozen extractors and SUR's rule (selection weights, cosine nearest centroid)."""

    def __init__(self, extractors):
        super().__init__()
        self.extractors = nn.ModuleList(extractors)

    def features(self, X):
        """The features of every extractor for rows ``X`` (a list of (n, d_j) tensors)."""
        return [embed_in_chunks(e, X) for e in self.extractors]

    def adapt_state(self, Xs, ys, n_classes, steps=40, lr=0.1, temperature=10.0,
                    init=0.5):
        with torch.no_grad():
            feats = [f.detach() for f in self.features(Xs)]
        init = float(np.clip(init, 1e-6, 1 - 1e-6))
        alpha = torch.full((len(feats),), float(np.log(init / (1 - init))),
                           dtype=feats[0].dtype, device=feats[0].device, requires_grad=True)
        opt = torch.optim.Adam([alpha], lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                opt.zero_grad()
                z = select_features(feats, torch.sigmoid(alpha))
                logits = cosine_logits(z, class_means(z, ys, n_classes), temperature)
                F.cross_entropy(logits, ys).backward()
                opt.step()
        lambdas = torch.sigmoid(alpha).detach()
        with torch.no_grad():
            prototypes = class_means(select_features(feats, lambdas), ys, n_classes)
        return {"lambdas": lambdas, "prototypes": prototypes, "temperature": float(temperature)}

    def predict_logits(self, state, X):
        z = select_features(self.features(X), state["lambdas"])
        return cosine_logits(z, state["prototypes"], state["temperature"])


_POSITIVE = Interval(Real, 0, np.inf, closed="neither")


@parameter_constraints(
    **META_PARAMETER_CONSTRAINTS,
    extractors=[list, tuple, None],
    selection_steps=[Interval(Integral, 0, None, closed="left")],
    selection_lr=[_POSITIVE],
    temperature=[_POSITIVE],
    init_lambda=[Interval(Real, 0, 1, closed="neither")],
)
class SURClassifier(FewShotClassifierMixin, NeuralEstimatorMixin, ClassifierMixin,
                    BaseEstimator):
    """SUR: select the relevant features of several extractors for each task
    (Dvornik, Schmid & Mairal, 2020).

    A multi-domain representation is the features of several extractors, each
    trained on a different domain. For a task, SUR learns one selection weight
    :math:`\\lambda_j \\in (0, 1)` per extractor on the support set alone, and
    classifies by cosine nearest centroid on the weighted concatenation of
    the L2-normalised features
    :math:`z(x) = [\\lambda_1 \\hat f_1(x), \\dots, \\lambda_m \\hat f_m(x)]`:
    :meth:`adapt` sets :math:`\\lambda_j = \\sigma(\\alpha_j)` (from
    ``init_lambda``) and takes ``selection_steps`` Adam steps on
    :math:`\\alpha` to minimise the cross-entropy of the support examples
    against the prototypes :math:`c_k` (class means of :math:`z`) of the same
    support set, with logits :math:`\\tau \\cos(z(x), c_k)`; queries get the
    class of the largest of these logits.

    The extractors come from two places (both may be used together):

    * ``extractors``: networks trained elsewhere, each an ``nn.Module``
      (rows to features) or ``FrozenEstimator(fitted)`` of a fitted
      sktransfer few-shot estimator whose network has ``embed`` (a
      :class:`~sktransfer.meta.BaselineFewShotClassifier`,
      :class:`~sktransfer.meta.PrototypicalClassifier`, ...), used frozen;
    * ``fit(X, y, groups=...)``: one
      :class:`~sktransfer.meta.BaselineFewShotClassifier` trained by SUR on
      the rows of every distinct value of ``groups`` (a domain: for example
      a set of Omniglot alphabets), with the training parameters below.

    With neither, ``fit`` trains one extractor on all of ``X`` (and SUR is
    cosine nearest centroid on it). After ``fit``, ``predict`` adapts to up
    to 20 training rows per class (at most about 1000 rows).

    Parameters
    ----------
    extractors : list of (nn.Module or FrozenEstimator) or None, default=None
        Pre-trained feature extractors, used frozen (copied at ``fit``). A
        bare fitted estimator is refused (``clone`` would reset it): wrap it
        in :class:`sklearn.frozen.FrozenEstimator`.
    selection_steps : int, default=40
        Adam steps on the selection logits in :meth:`adapt` (0 keeps every
        :math:`\\lambda_j` at ``init_lambda``).
    selection_lr : float, default=0.1
        Their learning rate.
    temperature : float, default=10.0
        :math:`\\tau`, the scale of the cosine similarities.
    init_lambda : float in (0, 1), default=0.5
        Every :math:`\\lambda_j` before the selection.
    head : {"linear", "cosine"}, default="cosine"
        The training head of the extractors SUR trains (see
        :class:`~sktransfer.meta.BaselineFewShotClassifier`).
    module : None, nn.Module class, factory or instance, default=None
        The trunk of the extractors SUR trains: an MLP with
        ``hidden_layer_sizes`` for 2-D X, :class:`~sktransfer.modules.Conv4`
        for images.
    hidden_layer_sizes : tuple of int, default=(64,)
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=1e-3
    max_epochs : int, default=10
        Epochs of training of every extractor SUR trains.
    batch_size : int, default=64
    callbacks, train_split, device, random_state, verbose, net_params
        See :class:`~sktransfer.base.NeuralEstimatorMixin`; the training
        parameters go to every extractor SUR trains (the ``i``-th on a seed
        derived from ``random_state`` and ``i``).

    Attributes
    ----------
    net_ : skorch.NeuralNet
        ``net_.module_.extractors`` are the frozen extractors: first those of
        ``extractors``, then one per domain.
    domains_ : ndarray
        The values of ``groups`` SUR trained an extractor on (empty without
        ``groups``, unless it trained the one default extractor: ``[None]``).
    n_extractors_ : int
    classes_ : ndarray
    adapted_state_ : dict
        ``lambdas`` (the selection weights), ``prototypes`` and
        ``temperature`` of the task ``predict`` answers.
    n_features_in_ : int
    input_shape_ : tuple

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.meta import SURClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> base = X[y < 6], y[y < 6]
    >>> sur = SURClassifier(max_epochs=5, random_state=0).fit(*base, groups=base[1] // 3)
    >>> sur.n_extractors_                       # one per domain: digits 0-2 and 3-5
    2
    >>> new = sur.adapt(X[y >= 6][:40], y[y >= 6][:40])
    >>> new.score(X[y >= 6][40:], y[y >= 6][40:]) > 0.6
    True
    """

    def __init__(
        self,
        extractors=None,
        selection_steps=40,
        selection_lr=0.1,
        temperature=10.0,
        init_lambda=0.5,
        head="cosine",
        module=None,
        hidden_layer_sizes=(64,),
        optimizer=torch.optim.Adam,
        lr=1e-3,
        max_epochs=10,
        batch_size=64,
        callbacks=None,
        train_split=None,
        device="cpu",
        random_state=None,
        verbose=0,
        net_params=None,
    ):
        self.extractors = extractors
        self.selection_steps = selection_steps
        self.selection_lr = selection_lr
        self.temperature = temperature
        self.init_lambda = init_lambda
        self.head = head
        self.module = module
        self.hidden_layer_sizes = hidden_layer_sizes
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.callbacks = callbacks
        self.train_split = train_split
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.net_params = net_params

    def _adapt_options(self):
        return {"steps": int(self.selection_steps), "lr": float(self.selection_lr),
                "temperature": float(self.temperature), "init": float(self.init_lambda)}

    def fit(self, X, y, groups=None):
        """Train one extractor per domain of ``groups`` and collect the given ones.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        y : array-like of shape (n_samples,)
        groups : array-like of shape (n_samples,), default=None
            The domain of every row: SUR trains one extractor on the rows of
            each distinct value (each needs at least 2 classes). ``None``:
            no domain extractors (one on all rows if ``extractors`` is empty).

        Returns
        -------
        self
        """
        return self._run("fit", X, y, groups=groups)

    # --------------------------------------------------------- template hooks
    def _encode(self, ctx, X, y, groups=None):
        if ctx.name == "adapt":
            return super()._encode(ctx, X, y)
        X = self._validate_X(X, reset=True)
        y = self._validate_y(y, X.shape[0])
        classes, y_enc = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes; y has "
                             f"{len(classes)} class")
        if groups is not None:
            groups = column_or_1d(groups)
            check_consistent_length(X, groups)
        given = [_extractor_of(item, i) for i, item in enumerate(self.extractors or [])]
        return {"X": X, "y_enc": y_enc, "classes": classes, "groups": groups,
                "given": given}

    def _build(self, ctx, data):
        return None  # the network is assembled in _train, from the trained extractors

    def _dry_run_example(self, ctx, net, data):
        return None  # each trained extractor has its own; _train runs the given ones

    def _domain_estimator(self, seed):
        return BaselineFewShotClassifier(
            head=self.head, module=self.module, hidden_layer_sizes=self.hidden_layer_sizes,
            optimizer=self.optimizer, lr=self.lr, max_epochs=self.max_epochs,
            batch_size=self.batch_size, callbacks=self.callbacks,
            train_split=self.train_split, device=self.device, random_state=seed,
            verbose=self.verbose, net_params=self.net_params)

    def _train(self, ctx, net, data):
        if ctx.name == "adapt":
            return super()._train(ctx, net, data)
        X, y_enc, groups = data["X"], data["y_enc"], data["groups"]
        extractors = list(data["given"])
        if groups is not None:
            domains = np.unique(groups)
        elif not extractors:
            domains = np.array([None], dtype=object)
        else:
            domains = np.array([], dtype=object)
        for i, domain in enumerate(domains):
            rows = np.arange(len(y_enc)) if domain is None else np.flatnonzero(groups == domain)
            if len(np.unique(y_enc[rows])) < 2:
                raise ValueError(f"the domain groups={domain!r} has fewer than 2 classes; "
                                 "SUR trains a classifier on every domain")
            est = self._domain_estimator(derive_seed(ctx.seed, i + 1))
            est.fit(X[rows], y_enc[rows])
            extractors.append(_Extractor(copy.deepcopy(est.net_.module_.trunk)))
        for i, extractor in enumerate(data["given"]):  # the trained ones ran one already
            tensors = list(extractor.parameters()) + list(extractor.buffers())
            device = tensors[0].device if tensors else "cpu"
            try:
                with torch.no_grad():
                    extractor.eval()(torch.as_tensor(X[:2]).to(device))
            except RuntimeError as exc:
                raise ValueError(
                    f"extractor {i} does not fit the data: X has sample shape "
                    f"{tuple(X.shape[1:])}. Its forward pass failed with: {exc}") from exc
        net = _SURNet(SURModule(extractors), criterion=nn.CrossEntropyLoss,
                        device=ctx.device, max_epochs=0, train_split=None)
        net.initialize()
        net.module_.eval()
        rng = np.random.RandomState(ctx.seed)
        n_classes = len(data["classes"])
        rows = self._predict_support(y_enc, n_classes, rng)
        state = self._adapt_module(net, X[rows], y_enc[rows], n_classes)
        return net, domains, state

    def _record(self, ctx, net, data, result):
        if ctx.name == "adapt":
            return super()._record(ctx, net, data, result)
        net, domains, state = result
        self.net_ = net
        self.classes_ = data["classes"]
        self.domains_ = domains
        self.n_extractors_ = len(net.module_.extractors)
        self.adapted_state_ = state
        return self
