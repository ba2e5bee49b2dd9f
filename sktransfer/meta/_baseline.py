"""BaselineFewShotClassifier: Baseline and Baseline++ (Chen et al., 2019)."""

import math
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted
from skorch import NeuralNet
from skorch.utils import to_tensor as _to_device
from torch import nn

from .._weights import (
    CLASS_WEIGHT_CONSTRAINT,
    SAMPLE_WEIGHT,
    WeightedLossMixin,
    check_sample_weight,
    class_weight_table,
    combine_weights,
)
from ..base import NeuralEstimatorMixin, parameter_constraints, to_tensor
from ._adaptation import ADAPTATIONS, Adaptation, get_adaptation
from ._augmentation import AUGMENT_CONSTRAINT, augment_rows, resolve_augmentation
from ._base import (
    META_PARAMETER_CONSTRAINTS,
    FewShotClassifierMixin,
    adapt_in_eval,
    embed_in_chunks,
    state_to,
)
from ._learner import trunk_width
from ._test_time import TTA_CONSTRAINT, ShiftAveragingMixin, shift_averaged

__all__ = ["BaselineFewShotClassifier"]



def head_logits(kind, state, feats):
    """Logits of a linear or cosine head given as a dict of tensors."""
    if kind == "linear":
        return F.linear(feats, state["weight"], state["bias"])
    return state["scale"] * F.normalize(feats, dim=1) @ F.normalize(state["weight"], dim=1).T


class BaselineModule(nn.Module):
    """A trunk and a (linear or cosine) head over all base classes.

    ``tta`` is the test-time augmentation of the rows to adapt to and to
    predict (``None`` or ``"shift"``, see :meth:`embed_rows`); the estimator
    sets it for each adapt and predict call.
    """

    tta = None

    def __init__(self, trunk, width, n_classes, head):
        super().__init__()
        self.trunk = trunk
        self.kind = head
        self.weight = nn.Parameter(torch.empty(n_classes, width))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if head == "linear":
            self.bias = nn.Parameter(torch.zeros(n_classes))
        else:
            self.register_parameter("bias", None)
            self.scale = nn.Parameter(torch.tensor(10.0))

    def embed(self, X):
        out = self.trunk(X)
        return out.reshape(out.shape[0], -1)

    def embed_rows(self, X, trunk_params=None):
        """The embeddings of rows to adapt to or to predict (in chunks).

        With ``trunk_params`` (a dict of the trunk's tensors, when adapting
        fine-tunes the trunk) the trunk runs on those instead of its own
        parameters. With ``self.tta == "shift"`` a row's embedding is the
        mean over its 9 one-pixel shifts
        (:func:`~sktransfer.meta._test_time.shift_averaged`).
        """
        if trunk_params is None:
            embed = partial(embed_in_chunks, self.embed)
        else:
            embed = partial(self._embed_with, trunk_params)
        return shift_averaged(embed, X) if self.tta == "shift" else embed(X)

    def head_state(self):
        state = {"weight": self.weight.detach().clone()}
        if self.kind == "linear":
            state["bias"] = self.bias.detach().clone()
        else:
            state["scale"] = self.scale.detach().clone()
        return state

    def forward(self, X):
        return head_logits(self.kind, {"weight": self.weight, "bias": self.bias,
                                       "scale": getattr(self, "scale", None)}, self.embed(X))

    def adapt_state(self, Xs, ys, n_classes, steps=100, lr=0.01, adaptation=None, Xq=None):
        """Train a new head on the embeddings of the support set (full batch, Adam).

        ``adaptation`` (an :class:`~sktransfer.meta.Adaptation`, default plain
        fine-tuning) gives the loss of each step and the head to start from;
        ``Xq`` is the unlabelled query set of a transductive adaptation. With
        ``adaptation.finetune_backbone`` the trunk's parameters are trained
        too and returned in the state as ``"trunk.<name>"``.
        """
        adaptation = Adaptation() if adaptation is None else adaptation
        if Xq is not None:
            Xq = Xq.to(device=Xs.device, dtype=Xs.dtype)
        trunk = None
        if adaptation.finetune_backbone:
            trunk = {name: p.detach().clone().requires_grad_(True)
                     for name, p in self.trunk.named_parameters()}
        with torch.no_grad():
            feats = self.embed_rows(Xs)
            feats_q = None if Xq is None or trunk is not None else self.embed_rows(Xq)
        width = feats.shape[1]
        weight = torch.empty(n_classes, width, dtype=feats.dtype, device=feats.device)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        state = {"weight": weight}
        if self.kind == "linear":
            state["bias"] = torch.zeros(n_classes, dtype=feats.dtype, device=feats.device)
        else:
            state["scale"] = self.scale.detach().clone()
        state = adaptation.init_head(state, feats, ys, n_classes, self.kind)
        state = {k: v.detach().clone().requires_grad_(True) for k, v in state.items()}
        params = list(state.values()) + ([] if trunk is None else list(trunk.values()))
        opt = torch.optim.Adam(params, lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                opt.zero_grad()
                if trunk is not None:
                    feats = self.embed_rows(Xs, trunk)
                    feats_q = None if Xq is None else self.embed_rows(Xq, trunk)
                query = None if feats_q is None else head_logits(self.kind, state, feats_q)
                adaptation.loss(head_logits(self.kind, state, feats), ys, query).backward()
                opt.step()
        out = {k: v.detach() for k, v in state.items()}
        if trunk is not None:
            out.update({f"trunk.{k}": v.detach() for k, v in trunk.items()})
        return out

    def _embed_with(self, trunk_params, X):
        out = torch.func.functional_call(self.trunk, trunk_params, (X,))
        return out.reshape(out.shape[0], -1)

    def predict_logits(self, state, X):
        trunk = {k[len("trunk."):]: v for k, v in state.items() if k.startswith("trunk.")}
        return head_logits(self.kind, state, self.embed_rows(X, trunk or None))


class _BaselineNet(WeightedLossMixin, NeuralNet):
    """skorch's net with per-row weights in the batch (see :mod:`sktransfer._weights`),
    and the estimator's ``augment`` strategy (or None) applied to the images of
    each training batch (not to validation batches)."""

    augment = None

    def train_step_single(self, batch, **fit_params):
        if self.augment is not None:
            Xi, yi = batch
            if isinstance(Xi, dict):
                Xi = {**Xi, "X": augment_rows(self.augment, _to_device(Xi["X"], self.device))}
            else:
                Xi = augment_rows(self.augment, _to_device(Xi, self.device))
            batch = (Xi, yi)
        return super().train_step_single(batch, **fit_params)


@parameter_constraints(**META_PARAMETER_CONSTRAINTS, class_weight=CLASS_WEIGHT_CONSTRAINT,
                       adaptation=[StrOptions(set(ADAPTATIONS)), Adaptation],
                       augment=AUGMENT_CONSTRAINT, tta=TTA_CONSTRAINT)
class BaselineFewShotClassifier(ShiftAveragingMixin, FewShotClassifierMixin, NeuralEstimatorMixin,
                                ClassifierMixin, BaseEstimator):
    """Baseline (linear head) and Baseline++ (cosine head) for few-shot classification.

    Chen et al. (2019, "A closer look at few-shot classification") showed
    that ordinary training is a strong few-shot learner: ``fit`` trains the
    trunk and a head over *all* classes of ``y`` with mini-batches (no
    episodes); :meth:`adapt` freezes the trunk and trains a new head on the
    support set's embeddings (``adapt_steps`` full-batch Adam steps at
    ``adapt_lr``). ``head="cosine"`` is Baseline++: logits are scaled
    cosine similarities between the embedding and each class's weight vector,
    which reduces intra-class variation. After ``fit``, ``predict`` uses the
    trained head over the classes of ``fit``.

    ``adaptation`` chooses how :meth:`adapt` trains the new head: plain
    fine-tuning on the support set (``"finetune"``), or a transductive method
    that also reads the unlabelled query set given as ``adapt(X_support,
    y_support, X_query=...)``: transductive fine-tuning (``"transductive"``,
    Dhillon et al., 2020) or TIM (``"tim"``, Boudiaf et al., 2020); see
    :class:`~sktransfer.meta.Adaptation`.

    Parameters
    ----------
    head : {"linear", "cosine"}, default="linear"
        The head: linear (Baseline) or scaled cosine similarities (Baseline++).
    adapt_steps : int, default=100
        Steps of training the new head in :meth:`adapt`.
    adapt_lr : float, default=0.01
        Learning rate of the new head.
    adaptation : {"finetune", "transductive", "tim"} or Adaptation, default="finetune"
        How :meth:`adapt` trains the new head: ``"finetune"``
        (:class:`~sktransfer.meta.Adaptation`: the support cross-entropy),
        ``"transductive"`` (:class:`~sktransfer.meta.TransductiveFineTuning`
        with its defaults), ``"tim"`` (:class:`~sktransfer.meta.TIM` with its
        defaults), or a strategy object (for other settings, or a strategy of
        your own). The transductive ones need ``X_query`` in :meth:`adapt`.
    class_weight : None, "balanced" or dict, default=None
        Weights of the base classes in the loss of ``fit`` (multiplied with
        ``sample_weight``): ``"balanced"`` weighs each class by ``n_samples
        / (n_classes * count)`` (as scikit-learn's ``compute_class_weight``);
        a dict from label to weight (labels not in it weigh 1).
    augment : {None, "shift"} or callable, default=None
        Training-time augmentation of the images of each training batch of
        ``fit`` (not of validation batches, adapt or predict); ``"shift"`` is
        :class:`~sktransfer.meta.RandomShift` ``()``, a callable maps a tensor
        (n, C, H, W) to one of the same shape.
    tta : {None, "shift"}, default=None
        Test-time augmentation: with ``"shift"`` the embedding of every image
        that :meth:`adapt` trains the new head on, and that ``predict``
        classifies, is the mean of its embeddings over the 9 one-pixel
        shifts of the image (9 forward passes per row); ``fit`` is
        unchanged. Images only (X of shape (n, C, H, W)).
    module : None, nn.Module class, factory or instance, default=None
        The trunk: an MLP with ``hidden_layer_sizes`` for 2-D X,
        :class:`~sktransfer.modules.Conv4` for images.
    hidden_layer_sizes : tuple of int, default=(64,)
        Hidden layers of the default MLP trunk (2-D X only).
    optimizer : torch optimizer class, default=torch.optim.Adam
        The optimizer of ``fit`` (``adapt`` trains the new head with Adam).
    lr : float, default=1e-3
        The learning rate of ``fit``.
    max_epochs : int, default=10
        Epochs of ``fit``.
    batch_size : int, default=64
        Mini-batch size of ``fit`` (-1 for full batch).
    callbacks : list of skorch callbacks or None, default=None
        Passed through to the skorch net.
    train_split : None or skorch split, default=None
        ``None`` trains on everything; a split records validation losses.
    early_stopping, validation_fraction, n_iter_no_change, tol
        Default ``False, 0.1, 10, 1e-4``: early stopping as in scikit-learn's
        ``MLPClassifier``;
        see :class:`~sktransfer.base.NeuralEstimatorMixin`.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        ``"auto"`` picks CUDA when available.
    random_state : int, RandomState or None, default=None
        Seeds weight initialisation and shuffling in ``fit`` and the new head's
        initialisation in :meth:`adapt`.
    verbose : int, default=0
        0 is silent; 1 prints skorch's progress bar and epoch table.
    net_params : dict or None, default=None
        Forwarded verbatim to the skorch net.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        ``net_.module_.trunk`` is the embedding network.
    classes_ : ndarray
        Classes of ``fit``, or of the support set after :meth:`adapt`.
    adapted_state_ : dict of str to Tensor
        The head ``predict`` uses.
    n_features_in_ : int
    input_shape_ : tuple

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.meta import BaselineFewShotClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> base = BaselineFewShotClassifier(head="cosine", max_epochs=5, random_state=0)
    >>> base = base.fit(X[y < 5], y[y < 5])
    >>> new = base.adapt(X[y >= 5][:50], y[y >= 5][:50])
    >>> new.score(X[y >= 5][50:], y[y >= 5][50:]) > 0.6
    True
    """

    def __init__(
        self,
        head="linear",
        adapt_steps=100,
        adapt_lr=0.01,
        adaptation="finetune",
        class_weight=None,
        augment=None,
        tta=None,
        module=None,
        hidden_layer_sizes=(64,),
        optimizer=torch.optim.Adam,
        lr=1e-3,
        max_epochs=10,
        batch_size=64,
        callbacks=None,
        train_split=None,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        device="cpu",
        random_state=None,
        verbose=0,
        net_params=None,
    ):
        self.head = head
        self.adapt_steps = adapt_steps
        self.adapt_lr = adapt_lr
        self.adaptation = adaptation
        self.class_weight = class_weight
        self.augment = augment
        self.tta = tta
        self.module = module
        self.hidden_layer_sizes = hidden_layer_sizes
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.callbacks = callbacks
        self.train_split = train_split
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.net_params = net_params

    #: The network ``fit`` builds (a subclass may extend it).
    _module_class = BaselineModule

    def _adapt_options(self):
        return {"steps": int(self.adapt_steps), "lr": float(self.adapt_lr),
                "adaptation": get_adaptation(self.adaptation)}

    def adapt(self, X_support, y_support, X_query=None):
        """Train a new head for the classes of a support set (the trunk is kept).

        Parameters
        ----------
        X_support : array-like of shape (n_support, ...)
            The labelled examples of the new task.
        y_support : array-like of shape (n_support,)
            Their labels, any values; they become ``classes_`` of the result.
        X_query : array-like of shape (n_query, ...), default=None
            The unlabelled examples the adapted model will classify: read by
            a transductive ``adaptation`` (``"transductive"``, ``"tim"``),
            which then requires it (a ``ValueError`` without it); ignored by
            ``"finetune"``.

        Returns
        -------
        estimator
            A new fitted estimator whose ``predict`` answers among the support
            set's classes. ``self`` is left unchanged.
        """
        return self._run("adapt", X_support, y_support, X_query=X_query)

    def fit(self, X, y, groups=None, sample_weight=None):
        """Train the trunk and a head over all classes of ``y`` (ordinary training).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        y : array-like of shape (n_samples,)
        groups : ignored
            Accepted for the same signature as the episodic estimators.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sample in the loss (multiplied by ``class_weight``):
            each mini-batch's loss is the weighted mean of its rows' losses.
            ``adapt`` is unweighted.

        Returns
        -------
        self
        """
        return self._run("fit", X, y, groups=groups, sample_weight=sample_weight)

    # --------------------------------------------------------- template hooks
    def _encode(self, ctx, X, y, groups=None, sample_weight=None, X_query=None):
        if ctx.name == "adapt":
            data = super()._encode(ctx, X, y)
            adaptation = self._adapt_options().get("adaptation")
            if X_query is None and adaptation is not None and adaptation.needs_query:
                raise ValueError(
                    f"adaptation={self.adaptation!r} is transductive: it reads the unlabelled "
                    f"query set, so adapt needs it: call adapt(X_support, y_support, "
                    f"X_query=X_query) with the rows the adapted model will classify")
            if X_query is not None:
                data["X_query"] = self._validate_X(X_query, reset=False)
            return data
        self._check_params()
        X = self._validate_X(X, reset=True)
        self._check_tta(X.shape[1:])
        y = self._validate_y(y, X.shape[0])
        classes, y_enc = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 classes; y has "
                             f"{len(classes)} class")
        table = class_weight_table(getattr(self, "class_weight", None), y_enc, classes)
        weights = combine_weights(check_sample_weight(sample_weight, X.shape[0]),
                                  None if table is None else table[y_enc])
        return {"X": X, "y_enc": y_enc, "classes": classes, "weights": weights,
                "augment": resolve_augmentation(self.augment, X.shape[1:])}

    def _build(self, ctx, data):
        X = data["X"]
        trunk = self._make_trunk(X.shape[1:], ctx.hidden_layer_sizes)
        module = self._module_class(trunk, trunk_width(trunk, X.shape[1:]),
                                    len(data["classes"]), self.head)
        return _BaselineNet(module, criterion=nn.CrossEntropyLoss,
                            **self._net_kwargs(ctx.device))

    def _train(self, ctx, net, data):
        if ctx.name == "adapt":
            options = self._adapt_options()
            if data.get("X_query") is not None:
                options["Xq"] = to_tensor(data["X_query"])
            ys = torch.as_tensor(data["y_enc"], dtype=torch.long)
            self._check_tta(data["X"].shape[1:])
            with self._tta(net.module_):
                return adapt_in_eval(net, data["X"], ys, len(data["classes"]), **options)
        X, w = torch.tensor(data["X"]), data["weights"]
        net.augment = data["augment"]
        net.fit(X if w is None else {"X": X, SAMPLE_WEIGHT: torch.as_tensor(w)},
                torch.as_tensor(data["y_enc"]))
        return state_to(net.module_.head_state(), "cpu")

    def _logits(self, X):
        check_is_fitted(self, "net_")
        self._check_tta(self.input_shape_)
        with self._tta(self.net_.module_):
            return super()._logits(X)

    def _record(self, ctx, net, data, state):
        if ctx.name == "adapt":
            return super()._record(ctx, net, data, state)
        self.net_ = net
        self.classes_ = data["classes"]
        self.adapted_state_ = state
        return self
