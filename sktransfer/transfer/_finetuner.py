"""FineTuner and FineTunerRegressor: adapt a pretrained network to a new task."""

import copy
import math
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d
from torch import nn

from .._weights import (
    CLASS_WEIGHT_CONSTRAINT,
    SAMPLE_WEIGHT,
    check_sample_weight,
    class_weight_table,
    combine_weights,
    weighted_mean,
)
from ..base import (
    COMMON_PARAMETER_CONSTRAINTS,
    NeuralEstimatorMixin,
    parameter_constraints,
    to_tensor,
)
from ._features import embed
from ._layers import build_network, layer_groups, untrained_batch_norm
from ._net import FineTuneNet
from ._penalty import L2SP
from ._plan import BN_MODES, TransferPlan
from ._pretrained import PRETRAINED_CONSTRAINT, resolve_pretrained
from ._regularizers import TransferRegularizer
from ._strategies import STRATEGIES, TransferStrategy, get_strategy

__all__ = ["FineTuner", "FineTunerRegressor"]

_HEADS = ("replace", "keep", "add")
#: L-BFGS iterations of the linear probe of ``strategy="last"`` and ``"lp_ft"``.
_LP_MAX_ITER = 200

# The defaults of ``lr=None``, ``backbone_lr=None`` and ``max_epochs=None``
# (benchmarks/bench_finetuner_defaults.py measures them against the linear probe).
#: ``lr=None``: strategy -> (the head's rate, the top backbone group's rate), each
#: strategy's ``default_rates``. The head is new (or fitted by the linear probe)
#: and takes a higher rate than the pretrained layers, which learn ten times slower.
DEFAULT_RATES = {name: cls.default_rates for name, cls in STRATEGIES.items()}
#: ``max_epochs=None``: at least this many epochs ...
MIN_EPOCHS = 20
#: ... and at least this many optimizer steps per call.
MIN_STEPS = 200

_PARAMS_DOC = """
    pretrained : nn.Module, factory, (factory, path) or FrozenEstimator
        The source network:

        * an ``nn.Module`` instance: deep-copied at every fit and never
          modified, so ``clone(est).fit(...)`` always starts from its weights;
        * a zero-argument factory (a function or an ``nn.Module`` class),
          called under ``random_state``;
        * a pair ``(factory, path)``: ``factory()`` builds the architecture and
          the weights are read from ``path``, a ``.safetensors`` file or a torch
          state dict read with ``torch.load(..., weights_only=True)``. A
          weights file is never unpickled; one that does not match the
          architecture is a ``ValueError``;
        * ``sklearn.frozen.FrozenEstimator(fitted)``, ``fitted`` a fitted
          sktransfer estimator (its ``net_.module_``) or skorch net (its
          ``module_``). For a :class:`~sktransfer.multitask.MultiTaskClassifier`
          the shared trunk is the backbone and the task heads are dropped.

        A bare fitted estimator is rejected with a ``TypeError``: ``clone``
        would reset it, so it must be wrapped in ``FrozenEstimator``.
    strategy : {"last", "top", "full", "gradual", "lp_ft", "lora", "bitfit"} or \
            TransferStrategy, default="lp_ft"
        What trains (see the user guide for which to use when); a name, or
        a strategy object (:class:`~sktransfer.transfer.LastLayer`,
        :class:`~sktransfer.transfer.TopLayers`,
        :class:`~sktransfer.transfer.FullFineTuning`,
        :class:`~sktransfer.transfer.GradualUnfreezing`,
        :class:`~sktransfer.transfer.LPFT`, or a subclass of
        :class:`~sktransfer.transfer.TransferStrategy`) whose parameters are
        searchable as ``strategy__<name>``:

        * ``"last"``: only the head. A new head (``head="replace"`` or
          ``"add"``) is first fitted to convergence on the frozen features by
          the linear probe of ``"lp_ft"`` (so it matches
          ``make_pipeline(PretrainedFeatures(net), LogisticRegression())``
          however few the examples), then trains ``max_epochs`` epochs like
          the other strategies; a kept pretrained head (``head="keep"``)
          starts from its pretrained weights (``"top"`` with ``n_layers=0``
          trains the head by gradient descent alone);
        * ``"top"``: the head and the top ``n_layers`` layer groups;
        * ``"full"``: everything;
        * ``"gradual"``: the head, then one more group from the top every
          ``unfreeze_every`` epochs (ULMFiT);
        * ``"lp_ft"``: the head is first fitted to convergence on the frozen
          features (L-BFGS, L2 strength ``lp_alpha``), then everything trains
          for ``max_epochs`` epochs, the backbone at a lower rate (Kumar et
          al., 2022);
        * ``"lora"``: low-rank adapters on every linear and 2-d convolutional
          layer of the backbone, the base weights frozen, merged into the
          weights after every call (:class:`~sktransfer.transfer.LoRA`
          configures rank, scale, dropout, the layers and the merge);
        * ``"bitfit"``: the backbone's biases and the head
          (:class:`~sktransfer.transfer.BitFit`).

        Layer groups come from the network's structure: every module that
        owns parameters starts a group, in module order, and a normalisation
        layer joins the group before it; the head is the last group. The
        fitted ``layer_groups_`` lists them.
    n_layers : int, default=1
        Backbone groups trained by ``"top"`` (more than there are: all); a
        strategy object carries its own.
    unfreeze_every : int, default=1
        Epochs between two unfreezings of ``"gradual"``; a strategy object
        carries its own.
    trainable : str, list of str or None, default=None
        ``fnmatch`` patterns over parameter names (e.g. ``"layers.2.*"``)
        that override the layer groups: with ``"last"``, ``"top"`` and
        ``"full"`` exactly the matching backbone parameters train (and the
        head); with ``"gradual"`` and ``"lp_ft"`` only those are ever opened.
        A pattern that matches nothing is an error.
    head : {"replace", "keep", "add"}, default="replace"
        ``"replace"``: the output layer (``head_name``, or the last
        ``nn.Linear`` in module order, checked to be what the network
        returns) becomes a fresh ``nn.Linear`` with one output per {target}.
        ``"keep"``: keep it (its width must match). ``"add"``: the whole
        network is the backbone and a fresh ``nn.Linear`` goes on its
        flattened output.
    head_name : str or None, default=None
        Name of the output layer (as in ``named_modules()``).
    backbone_lr : float or None, default=None
        Learning rate of the top backbone group (discriminative learning
        rates). ``None``: with ``lr=None``, the strategy's default backbone
        rate (``1e-3`` for every strategy, ten times below the head's: the
        pretrained layers move slower than a new head); with a given ``lr``,
        ``lr`` itself, except with ``"lp_ft"`` where it is ``lr / 10``. The
        fitted ``backbone_lr_`` is the value used.
    layer_lr_decay : float, default=1.0
        Each backbone group below the top one learns ``layer_lr_decay`` times
        as fast as the group above it (ULMFiT uses 1 / 2.6).
    l2sp_alpha : float, default=0.0
        L2-SP: adds ``l2sp_alpha / 2 * ||w - w0||^2`` over the trainable
        pretrained parameters ``w`` (pretrained values ``w0``) to the loss.
    l2sp_beta : float, default=0.0
        Adds ``l2sp_beta / 2 * ||w_head||^2`` over a new head's parameters.
    regularizer : TransferRegularizer, list of them, or None, default=None
        Feature regularisers added to the training loss:
        :class:`~sktransfer.transfer.BSS` (batch spectral shrinkage of the
        head's input) and :class:`~sktransfer.transfer.DELTA` (feature maps
        kept close to the pretrained network's, weighted by channel
        attention); searchable as ``regularizer__<name>``.
    bn : {"auto", "freeze", "train"}, default="auto"
        Batch-norm layers outside the head. ``"freeze"``: they keep their
        statistics (eval mode) and parameters. ``"train"``: those in open
        groups update both (those in frozen groups stay in eval mode).
        ``"auto"``: a layer whose running statistics were never updated (the
        initial zero means and unit variances: a network built from scratch
        by a factory, or batch norm that never saw a batch) trains as with
        ``"train"``, and a layer with pretrained statistics is frozen, whatever
        the strategy: with a few target examples the batch statistics are
        noise, and the pretrained layers above were trained on the pretrained
        statistics. The fitted ``bn_modes_`` says what each layer did.
    lp_alpha : float, default=1e-3
        L2 strength of the linear probe of ``"last"`` and ``"lp_ft"``.{class_weight}
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float or None, default=None
        Learning rate of the head. ``None``: the strategy's default, from
        this table (measured against the linear probe with 5 and 50
        examples per class by ``benchmarks/bench_finetuner_defaults.py``):

        ====================================  ========  ==========================
        strategy                              head      backbone (``backbone_lr``)
        ====================================  ========  ==========================
        ``"last"``                            ``1e-2``  (not trained)
        ``"top"``, ``"full"``, ``"gradual"``  ``1e-2``  ``1e-3``
        ``"lp_ft"``                           ``1e-2``  ``1e-3``
        ``"lora"``                            ``1e-2``  ``3e-3`` (the adapters)
        ``"bitfit"``                          ``1e-2``  ``1e-2`` (the biases)
        ====================================  ========  ==========================

        The fitted ``lr_`` is the value used.
    max_epochs : int or None, default=None
        Epochs per ``fit`` and per ``partial_fit`` call (for ``"last"`` and
        ``"lp_ft"``: after the linear probe). ``None``: enough for at least
        20 epochs and at least 200 optimizer steps on the call's data,
        ``max(20, ceil(200 / n_batches))`` with ``n_batches =
        ceil(n_samples / batch_size)``: 200 epochs for 32 samples or fewer,
        20 from 320 samples on (with the default ``batch_size``). The fitted
        ``max_epochs_`` is the value of the last call.
    batch_size : int, default=32
    callbacks : list of skorch callbacks or None, default=None
    train_split : None or skorch split, default=None
    early_stopping, validation_fraction, n_iter_no_change, tol
        Default ``False, 0.1, 10, 1e-4``: early stopping as in scikit-learn's
        ``MLPClassifier`` (each ``partial_fit`` call);
        see :class:`~sktransfer.base.NeuralEstimatorMixin`.
    device : {"cpu", "cuda", "auto"}, default="cpu"
    random_state : int, RandomState or None, default=None
    verbose : int, default=0
    net_params : dict or None, default=None
        See :class:`~sktransfer.base.NeuralEstimatorMixin` for these. The
        optimizer's parameter groups are built by the estimator.
    precision : {"fp32", "bf16"}, default="fp32"
        ``"bf16"``: bfloat16 mixed precision; see
        :class:`~sktransfer.base.NeuralEstimatorMixin`.
"""

_ATTRS_DOC = """
    net_ : skorch.NeuralNet
        The trained net; ``net_.module_`` is the adapted network and
        ``net_.history[:, "trainable_groups"]`` the number of open backbone
        groups in every epoch.
    layer_groups_ : list of list of str
        Parameter names of every layer group, bottom to top; the last one is
        the head.
    head_name_ : str
        Name of the output layer in ``net_.module_``.
    lr_ : float
        The head's learning rate (``lr``, or its default).
    backbone_lr_ : float or None
        The learning rate of the top backbone group (``backbone_lr``, or its
        default); ``None`` when the network has no backbone group. It applies
        only while the strategy trains the backbone.
    max_epochs_ : int
        The epochs of the last ``fit`` / ``partial_fit`` call (``max_epochs``,
        or its default for that call's data).
    bn_modes_ : dict of str to {"freeze", "train"}
        Every batch-norm layer outside the head and what ``bn`` made of it.
    strategy_ : TransferStrategy
        The strategy object that trained (``strategy``, or the object its
        name stands for).
    n_trainable_params_ : int
        The number of parameters that trained in the last epoch of the last
        call (the head's included; for ``"lora"``, the adapters';
        ``net_.history[:, "trainable_params"]`` has it for every epoch).
    n_params_ : int
        The number of parameters of the fitted ``net_.module_`` (after a
        LoRA merge: those of the pretrained architecture with its new head).
    n_features_in_ : int
    input_shape_ : tuple
        Shape of one sample.
"""


def _check_labels(y):
    # One or a few examples per class is the point of few-shot transfer, so
    # scikit-learn's "more classes than half the samples" warning is noise here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The number of unique classes is greater")
        check_classification_targets(y)


_CLASS_WEIGHT_DOC = """
    class_weight : None, "balanced" or dict, default=None
        Weights of the classes in the loss (and the linear probe's),
        multiplied with ``sample_weight``: ``"balanced"`` weighs each class by
        ``n_samples / (n_classes * count)`` over ``y`` (as scikit-learn's
        ``compute_class_weight``); a dict from label to weight (labels not in
        it weigh 1). ``partial_fit`` takes a dict only."""


def _doc(text, target, class_weight=""):
    return text.replace("{target}", target).replace("{class_weight}", class_weight)


_NON_NEGATIVE = Interval(Real, 0, np.inf, closed="left")
_FINITE_POSITIVE = Interval(Real, 0, np.inf, closed="neither")


class _BaseFineTuner(NeuralEstimatorMixin, BaseEstimator):
    # FineTuner has no default network; the shared parameter check reads this.
    hidden_layer_sizes = ()

    _parameter_constraints = {
        **COMMON_PARAMETER_CONSTRAINTS,
        "pretrained": PRETRAINED_CONSTRAINT,
        "strategy": [StrOptions(set(STRATEGIES)), TransferStrategy],
        "n_layers": [Interval(Integral, 0, None, closed="left")],
        "unfreeze_every": [Interval(Integral, 1, None, closed="left")],
        "trainable": [str, list, tuple, None],
        "head": [StrOptions(set(_HEADS))],
        "head_name": [str, None],
        "lr": [_FINITE_POSITIVE, None],
        "max_epochs": [Interval(Integral, 0, None, closed="left"), None],
        "backbone_lr": [_FINITE_POSITIVE, None],
        "layer_lr_decay": [_FINITE_POSITIVE],
        "l2sp_alpha": [_NON_NEGATIVE],
        "l2sp_beta": [_NON_NEGATIVE],
        "regularizer": [TransferRegularizer, list, tuple, None],
        "bn": [StrOptions(set(BN_MODES))],
        "lp_alpha": [_NON_NEGATIVE],
    }

    def __init__(
        self,
        pretrained,
        strategy="lp_ft",
        n_layers=1,
        unfreeze_every=1,
        trainable=None,
        head="replace",
        head_name=None,
        backbone_lr=None,
        layer_lr_decay=1.0,
        l2sp_alpha=0.0,
        l2sp_beta=0.0,
        regularizer=None,
        bn="auto",
        lp_alpha=1e-3,
        optimizer=torch.optim.Adam,
        lr=None,
        max_epochs=None,
        batch_size=32,
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
        precision="fp32",
    ):
        self.pretrained = pretrained
        self.strategy = strategy
        self.n_layers = n_layers
        self.unfreeze_every = unfreeze_every
        self.trainable = trainable
        self.head = head
        self.head_name = head_name
        self.backbone_lr = backbone_lr
        self.layer_lr_decay = layer_lr_decay
        self.l2sp_alpha = l2sp_alpha
        self.l2sp_beta = l2sp_beta
        self.regularizer = regularizer
        self.bn = bn
        self.lp_alpha = lp_alpha
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
        self.precision = precision

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    # ------------------------------------------------------------ parameters
    def _check_transfer_params(self, lr):
        """The name patterns and the backbone's rate scale relative to the head's
        rate ``lr`` (types and ranges are checked by ``_parameter_constraints``)."""
        trainable = self.trainable
        if isinstance(trainable, str):
            trainable = [trainable]
        if trainable is not None:
            ok = isinstance(trainable, (list, tuple)) and len(trainable) > 0
            if not ok or not all(isinstance(p, str) for p in trainable):
                raise TypeError(f"trainable must be a name pattern or a non-empty list of "
                                f"them, got {self.trainable!r}")
            trainable = list(trainable)
        if self.backbone_lr is not None:
            scale = float(self.backbone_lr) / lr
        elif self._given_lr() is None:
            head, backbone = self._strategy().default_rates
            scale = backbone / head
        else:
            scale = float(self._strategy().backbone_scale)
        return trainable, scale

    def _strategy(self):
        """The strategy object: a copy of the given one, or the one its name stands for
        (configured with ``n_layers`` / ``unfreeze_every``)."""
        if isinstance(self.strategy, TransferStrategy):
            return clone(self.strategy)
        return get_strategy(self.strategy, self.n_layers, self.unfreeze_every)

    def _given_lr(self):
        """The head's rate the user gave: ``lr``, or one in ``net_params``; else None."""
        own = self.net_params or {}
        for key in ("optimizer__lr", "lr"):  # what the net would use instead
            if key in own:
                return float(own[key])
        return None if self.lr is None else float(self.lr)

    def _resolved_lr(self):
        """The head's learning rate: ``lr``, or the strategy's default for ``None``."""
        given = self._given_lr()
        return self._strategy().default_rates[0] if given is None else given

    def _resolved_epochs(self, n_samples):
        """Epochs of a call on ``n_samples`` rows: ``max_epochs``, or its default."""
        own = self.net_params or {}
        if "max_epochs" in own:
            return int(own["max_epochs"])
        if self.max_epochs is not None:
            return int(self.max_epochs)
        batch = own.get("batch_size", self.batch_size)
        batch = n_samples if batch in (None, -1) else min(int(batch), max(n_samples, 1))
        n_batches = max(1, math.ceil(n_samples / max(batch, 1)))
        return max(MIN_EPOCHS, math.ceil(MIN_STEPS / n_batches))

    # ----------------------------------------------------------------- input
    def _check_y(self, X, y):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        check_consistent_length(X, y)

    # ------------------------------------------------------------------- fit
    def fit(self, X, y, sample_weight=None):
        """Adapt the pretrained network to ``(X, y)``, starting from its weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n, C, H, W)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sample in the loss (multiplied by ``class_weight``
            for the classifier): every mini-batch's loss, the validation loss
            and the linear probe's are weighted means over the rows.

        Returns
        -------
        self
        """
        return self._run("fit", X, y, sample_weight=sample_weight)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Continue training from the current weights (first call: as ``fit``).

        Each call trains ``max_epochs`` epochs on ``(X, y)`` (``None``: the
        default for this call's number of rows) with the optimizer state, the
        L2-SP anchor and the unfreezing schedule of the previous calls
        (``"last"`` and ``"lp_ft"`` probe only on the first call). A call
        that fails, in validation or in training, leaves the model exactly
        as it was.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n, C, H, W)
        y : array-like
        classes : array-like or None, default=None
            Classifier only: every label the model will see, on the first
            call (default: the labels of ``y``); later calls must not bring
            new labels.
        sample_weight : array-like of shape (n_samples,), default=None
            As in :meth:`fit`.

        Returns
        -------
        self
        """
        return self._run("partial_fit", X, y, classes=classes, sample_weight=sample_weight)

    # --------------------------------------------------------- template hooks
    def _encode(self, ctx, X, y, classes=None, sample_weight=None):
        data = self._encode_data(ctx, X, y, classes)
        sw = check_sample_weight(sample_weight, len(data["X"]))
        data["weights"] = self._row_weights(sw, data["y_enc"], ctx.name == "partial_fit")
        return data

    def _row_weights(self, sample_weight, y_enc, partial):
        """Each row's weight in the loss (the classifier adds ``class_weight``)."""
        return sample_weight

    def _encode_data(self, ctx, X, y, classes):
        if not ctx.new_model:
            X = self._validate_X(X, reset=False)
            self._check_y(X, y)
            return {"X": X, "y_enc": self._encode_more_targets(y, classes),
                    "max_epochs": self._resolved_epochs(len(X))}
        lr = self._resolved_lr()
        trainable, backbone_scale = self._check_transfer_params(lr)
        if "optimizer__param_groups" in (self.net_params or {}):
            raise ValueError("the optimizer's parameter groups are built from the layer groups; "
                             "set backbone_lr / layer_lr_decay instead of "
                             "optimizer__param_groups")
        X = self._validate_X(X, reset=True)
        self._check_y(X, y)
        y_enc, n_out = self._encode_new_targets(y, classes)
        return {"X": X, "y_enc": y_enc, "n_out": n_out, "trainable": trainable,
                "backbone_scale": backbone_scale, "lr": lr,
                "max_epochs": self._resolved_epochs(len(X))}

    def _build(self, ctx, data):
        device = ctx.device
        module, has_output = resolve_pretrained(self.pretrained)
        module.to(device)
        example = to_tensor(data["X"][:2]).to(device)
        network, head_name = build_network(module, self.head, self.head_name, data["n_out"],
                                           example, has_output)
        strategy = self._strategy()
        strategy.prepare_network(network, head_name)
        groups, bn_layers = layer_groups(network, head_name)
        # read before anything runs in training mode: the pretrained statistics
        fresh = untrained_batch_norm(network, bn_layers) if self.bn == "auto" else None
        plan = TransferPlan(groups, bn_layers, strategy, self.n_layers,
                            self.unfreeze_every, data["trainable"], self.bn,
                            data["backbone_scale"], self.layer_lr_decay, bn_train=fresh)
        penalty = None
        if self.l2sp_alpha or self.l2sp_beta:
            state = dict(network.named_parameters())
            kept = self.head == "keep"
            anchored = [n for g in (groups if kept else groups[:-1]) for n in g]
            penalty = L2SP(self.l2sp_alpha, self.l2sp_beta, {n: state[n] for n in anchored},
                           [] if kept else groups[-1])
        regularizers = [r.build(network, head_name) for r in self._regularizers()]
        kwargs = self._net_kwargs(device)
        # the resolved defaults (net_params, applied last, may still override them)
        kwargs.update(lr=data["lr"], max_epochs=data["max_epochs"])
        kwargs.update(self.net_params or {})
        net = FineTuneNet(network, criterion=self._criterion(), plan=plan, penalty=penalty,
                          regularizers=regularizers, **kwargs)
        net.initialize()
        scales = plan.lr_scales
        data.update(groups=groups, head_name=head_name, bn_modes=plan.bn_modes(),
                    backbone_lr=data["lr"] * scales[-2] if len(scales) > 1 else None)
        return net

    def _train(self, ctx, net, data):
        X, yt, w = data["X"], to_tensor(data["y_enc"]), data["weights"]
        w = None if w is None else torch.as_tensor(w)
        # "last" probes a new head only: a kept pretrained head (head="keep") already
        # answers the target's classes, and refitting it from a few examples would
        # throw that away (on a domain shift at 1 example per class, 0.917 -> 0.872)
        strategy = net.plan._schedule()
        probed = ctx.new_model and strategy.probes_head(self.head)
        if probed:
            self._linear_probe(net.module_, data["head_name"], X, yt, ctx.device, w)
        if ctx.new_model and getattr(net, "regularizers", None):
            self._setup_regularizers(net, data["head_name"], X, yt, ctx.device, probed)
        if not ctx.new_model and strategy.prepare_network(net.module_, self.head_name_):
            net.rebuild_optimizer()  # e.g. fresh LoRA adapters on the merged weights
        inputs = to_tensor(X) if w is None else {"X": to_tensor(X), SAMPLE_WEIGHT: w}
        net.partial_fit(inputs, yt, epochs=data["max_epochs"])

    def _record(self, ctx, net, data, result):
        if ctx.new_model:
            self.net_ = net
            self.layer_groups_ = data["groups"]
            self.head_name_ = data["head_name"]
            self.lr_ = data["lr"]
            self.backbone_lr_ = data["backbone_lr"]
            self.bn_modes_ = data["bn_modes"]
            self.strategy_ = net.plan.strategy
        self.max_epochs_ = data["max_epochs"]
        self.n_trainable_params_ = net.count_trainable(max(len(net.history) - 1, 0))
        net.plan._schedule().finish_call(net.module_)
        self.n_params_ = int(sum(p.numel() for p in net.module_.parameters()))
        return self

    def _regularizers(self):
        """Copies of the regulariser objects (``regularizer``: one, a list, or None)."""
        given = self.regularizer
        if given is None:
            return []
        given = list(given) if isinstance(given, (list, tuple)) else [given]
        for r in given:
            if not isinstance(r, TransferRegularizer):
                raise TypeError(f"regularizer must be a TransferRegularizer (BSS, DELTA) or a "
                                f"list of them, got {r!r}")
        return [clone(r) for r in given]

    def _setup_regularizers(self, net, head_name, X, y, device, probed):
        """Give the regularisers the network as it starts, with a head fitted to the
        target (the linear probe's; run on a copy when the strategy has none)."""
        reference = net.module_
        if not probed:
            reference = copy.deepcopy(reference)
            self._linear_probe(reference, head_name, X, y, device)
        Xt = to_tensor(X)
        for r in net.regularizers:
            r.setup(reference, Xt, y, self._probe_loss, self.batch_size, device)

    def _linear_probe(self, network, head_name, X, y, device, weight=None):
        """Fit the head alone to convergence on the frozen backbone's features."""
        feats = embed(network, X, head_name, "input", self.batch_size, device)
        head = network.get_submodule(head_name)
        params = [p for p in head.parameters()]
        y = y.to(device)
        weight = None if weight is None else weight.to(device)
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=_LP_MAX_ITER, history_size=20,
                                tolerance_grad=1e-6, tolerance_change=1e-9,
                                line_search_fn="strong_wolfe")
        weights = [p for p in params if p.dim() > 1]

        def closure():
            opt.zero_grad()
            loss = self._probe_loss(head(feats), y, weight)
            if self.lp_alpha:
                loss = loss + 0.5 * self.lp_alpha * sum(w.pow(2).sum() for w in weights)
            loss.backward()
            return loss

        opt.step(closure)
        for p in params:
            p.grad = None

    # --------------------------------------------------------------- predict
    def _raw_predict(self, X):
        check_is_fitted(self, "net_")
        X = self._validate_X(X, reset=False)
        with self._torch_context(device=str(self.net_.device)):
            out = self.net_.forward(to_tensor(X), training=False)
        return out.float()


@parameter_constraints(class_weight=CLASS_WEIGHT_CONSTRAINT)
class FineTuner(ClassifierMixin, _BaseFineTuner):
    __doc__ = _doc("""Fine-tune a pretrained network to a new classification task.

    The source network is a hyperparameter and the target data is data:
    ``fit`` copies the pretrained network, replaces its output layer with one
    output per class of ``y``, and trains it following ``strategy``, with
    discriminative learning rates, an optional L2-SP penalty toward the
    pretrained weights and pretrained batch-norm statistics kept by default.
    The defaults (``lr``, ``backbone_lr``, ``max_epochs``, ``bn``) are chosen
    for a few examples per class and resolved at ``fit``; the fitted
    ``lr_``, ``backbone_lr_``, ``max_epochs_`` and ``bn_modes_`` show them.
    ``clone(ft).fit(...)`` always starts from the pretrained weights, so
    ``GridSearchCV`` can search ``strategy``, ``lr`` and the rest.

    Parameters
    ----------""" + _PARAMS_DOC + """
    Attributes
    ----------
    classes_ : ndarray
        The labels, in the order of the output columns.""" + _ATTRS_DOC + """
    See Also
    --------
    FineTunerRegressor : The same for regression.
    PretrainedFeatures : The frozen network as a transformer (linear probe).

    References
    ----------
    Howard & Ruder (2018), Universal language model fine-tuning for text
    classification (gradual unfreezing, discriminative learning rates).
    Li, Grandvalet & Davoine (2018), Explicit inductive bias for transfer
    learning with convolutional networks (L2-SP). Kumar et al. (2022),
    Fine-tuning can distort pretrained features and underperform
    out-of-distribution (LP-FT).

    Examples
    --------
    >>> import torch
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.transfer import FineTuner
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> _ = torch.manual_seed(0)
    >>> source = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
    ...                              torch.nn.Linear(32, 5))
    >>> ft = FineTuner(source, strategy="full", lr=1e-2, max_epochs=30, random_state=0)
    >>> ft.fit(X[:500], y[:500]).score(X[500:], y[500:]) > 0.8
    True
    >>> ft.layer_groups_
    [['0.weight', '0.bias'], ['2.weight', '2.bias']]
    """, "class", _CLASS_WEIGHT_DOC)

    def __init__(
        self,
        pretrained,
        strategy="lp_ft",
        n_layers=1,
        unfreeze_every=1,
        trainable=None,
        head="replace",
        head_name=None,
        backbone_lr=None,
        layer_lr_decay=1.0,
        l2sp_alpha=0.0,
        l2sp_beta=0.0,
        regularizer=None,
        bn="auto",
        lp_alpha=1e-3,
        class_weight=None,
        optimizer=torch.optim.Adam,
        lr=None,
        max_epochs=None,
        batch_size=32,
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
        precision="fp32",
    ):
        super().__init__(
            pretrained, strategy=strategy, n_layers=n_layers, unfreeze_every=unfreeze_every,
            trainable=trainable, head=head, head_name=head_name, backbone_lr=backbone_lr,
            layer_lr_decay=layer_lr_decay, l2sp_alpha=l2sp_alpha, l2sp_beta=l2sp_beta,
            regularizer=regularizer, bn=bn,
            lp_alpha=lp_alpha, optimizer=optimizer, lr=lr, max_epochs=max_epochs,
            batch_size=batch_size, callbacks=callbacks, train_split=train_split,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change, tol=tol, device=device,
            random_state=random_state, verbose=verbose, net_params=net_params,
            precision=precision)
        self.class_weight = class_weight

    def _criterion(self):
        return nn.CrossEntropyLoss

    def _probe_loss(self, out, y, weight=None):
        if weight is None:
            return nn.functional.cross_entropy(out, y)
        return weighted_mean(nn.functional.cross_entropy(out, y, reduction="none"), weight)

    def _row_weights(self, sample_weight, y_enc, partial):
        table = class_weight_table(getattr(self, "class_weight", None), y_enc, self.classes_,
                                   partial=partial)
        return combine_weights(sample_weight, None if table is None else table[y_enc])

    def _encode_new_targets(self, y, classes):
        y = column_or_1d(y, warn=True)
        _check_labels(y)
        if classes is not None:
            self.classes_ = np.unique(np.asarray(classes))
            if not np.isin(y, self.classes_).all():
                raise ValueError(f"y has labels {np.setdiff1d(y, self.classes_).tolist()[:10]} "
                                 f"that are not in classes")
        else:
            self.classes_ = np.unique(y)
        return np.searchsorted(self.classes_, y).astype(np.int64), len(self.classes_)

    def _encode_more_targets(self, y, classes):
        y = column_or_1d(y, warn=True)
        _check_labels(y)
        if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes={list(np.unique(classes))[:10]} differs from the classes "
                             f"of the first call {self.classes_.tolist()[:10]}")
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y has labels {unknown.tolist()[:10]} that were not in classes "
                             f"on the first call: {self.classes_.tolist()[:10]}")
        return np.searchsorted(self.classes_, y).astype(np.int64)

    def predict_proba(self, X):
        """Class probabilities, columns in the order of ``classes_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Samples of the shape the model was fitted on.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            The softmax of the network's outputs, float32.
        """
        return torch.softmax(self._raw_predict(X), dim=-1).numpy()

    def predict(self, X):
        """Predicted labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Samples of the shape the model was fitted on.

        Returns
        -------
        ndarray of shape (n_samples,)
            The label of ``classes_`` with the highest output for every row.
        """
        scores = self._raw_predict(X).numpy()
        return self.classes_[np.argmax(scores, axis=1)]


@parameter_constraints()
class FineTunerRegressor(RegressorMixin, _BaseFineTuner):
    __doc__ = _doc("""Fine-tune a pretrained network to a new regression task.

    :class:`FineTuner` with a mean-squared-error loss: the output layer gets
    one output per target column (``y`` 1-D: one output, and ``predict``
    returns a 1-D array). Everything else (strategies, learning rates,
    L2-SP, batch norm, ``partial_fit``) is the same.

    Parameters
    ----------""" + _PARAMS_DOC + """
    Attributes
    ----------
    n_outputs_ : int
        Number of target columns.""" + _ATTRS_DOC + """
    See Also
    --------
    FineTuner : The classifier, with the references.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from sktransfer.transfer import FineTunerRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(300, 4).astype("float32")
    >>> y = X[:, 0] - 2 * X[:, 1]
    >>> _ = torch.manual_seed(0)
    >>> source = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(),
    ...                              torch.nn.Linear(32, 3))
    >>> reg = FineTunerRegressor(source, strategy="full", lr=1e-2, max_epochs=50,
    ...                          random_state=0).fit(X, y)
    >>> reg.predict(X[:2]).shape
    (2,)
    >>> reg.score(X, y) > 0.9
    True
    """, "target column")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _criterion(self):
        return nn.MSELoss

    def _probe_loss(self, out, y, weight=None):
        if weight is None:
            return nn.functional.mse_loss(out, y)
        return weighted_mean(nn.functional.mse_loss(out, y, reduction="none"), weight)

    def _as_2d(self, y):
        y = check_array(y, ensure_2d=False, dtype=np.float32, input_name="y")
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D or 2-D, got shape {y.shape}")
        return y.reshape(len(y), -1), y.ndim

    def _encode_new_targets(self, y, classes):
        if classes is not None:
            raise ValueError("classes is only for classifiers; FineTunerRegressor takes none")
        y2, ndim = self._as_2d(y)
        self.n_outputs_ = y2.shape[1]
        self._y_ndim = ndim
        return y2, self.n_outputs_

    def _encode_more_targets(self, y, classes):
        if classes is not None:
            raise ValueError("classes is only for classifiers; FineTunerRegressor takes none")
        y2, _ = self._as_2d(y)
        if y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y2.shape[1]} target columns, but the model was fitted "
                             f"on {self.n_outputs_}")
        return y2

    def predict(self, X):
        """Predicted targets: (n_samples,) for a 1-D ``y``, else (n_samples, n_outputs).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Samples of the shape the model was fitted on.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The network's outputs, float64.
        """
        out = self._raw_predict(X).numpy().astype(np.float64)
        return out[:, 0] if self._y_ndim == 1 else out
