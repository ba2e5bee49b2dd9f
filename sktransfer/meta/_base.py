"""The shared shape of the few-shot estimators: episodic meta-training and ``adapt``.

Every episodic estimator owns a private skorch net (``net_``) whose
``train_step`` draws a meta-batch of N-way K-shot episodes and hands it to
the algorithm module's ``meta_step`` (MAML, ProtoNet, ...), which computes the
meta-loss and its gradient. One skorch "epoch" is ``episodes_per_epoch``
episodes, in meta-batches of ``batch_size`` tasks, so ``max_epochs``,
callbacks, history and the progress bar mean what they mean elsewhere.

After ``fit`` the estimator predicts among the classes seen in ``fit``: it
adapts to a support set drawn from the training data (see
:meth:`FewShotClassifierMixin._predict_support`). ``adapt(X_support,
y_support)`` returns a copy adapted to new classes and leaves the meta-model
as it was.
"""

import copy
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d
from skorch import NeuralNet
from skorch.callbacks import PassthroughScoring
from skorch.utils import TeeGenerator

from ..base import INFERENCE_CHUNK, infer_in_chunks, to_tensor
from ._augmentation import augment_rows, resolve_augmentation
from ._episodes import EpisodeSampler

__all__ = ["META_PARAMETER_CONSTRAINTS", "EpisodicNet", "FewShotClassifierMixin", "TaskSource",
           "embed_in_chunks"]

#: At most this many rows per class, and about this many rows in all, form the
#: support set that ``predict`` adapts to after ``fit`` (see ``_predict_support``).
PREDICT_SUPPORT_PER_CLASS = 20
PREDICT_SUPPORT_TOTAL = 1000
#: Rows per forward pass when predicting.
PREDICT_CHUNK = INFERENCE_CHUNK
#: Classes an epoch draws under ``episodes_per_epoch=None``: 100 five-way or
#: 25 twenty-way episodes.
EPOCH_CLASSES = 500


_POSITIVE_INT = Interval(Integral, 1, None, closed="left")
_NON_NEGATIVE_INT = Interval(Integral, 0, None, closed="left")
_FINITE_POSITIVE = Interval(Real, 0, np.inf, closed="neither")

#: Constraints of the meta-learning family's parameters; each estimator takes
#: those of its own parameters (see :func:`~sktransfer.base.parameter_constraints`).
META_PARAMETER_CONSTRAINTS = {
    "n_way": [Interval(Integral, 2, None, closed="left"), None],
    "k_shot": [_POSITIVE_INT],
    "n_query": [_POSITIVE_INT, None],
    "episodes_per_epoch": [_POSITIVE_INT],
    "inner_lr": [_FINITE_POSITIVE],
    "inner_steps": [_NON_NEGATIVE_INT],
    "inner_steps_test": [_NON_NEGATIVE_INT, None],
    "first_order": ["boolean"],
    "learn_inner_lr": ["boolean"],
    "adapt_layers": [str, list, tuple],
    "inner_optimizer": [StrOptions({"sgd", "meta_lstm"}), type],
    "task_batching": [StrOptions({"auto", "vmap", "loop"})],
    "compile_step": ["boolean"],
    "fce": ["boolean"],
    "fce_steps": [_POSITIVE_INT],
    "relation": [StrOptions({"auto", "conv", "mlp"})],
    "relation_hidden": [_POSITIVE_INT, None],
    "d_model": [_POSITIVE_INT],
    "n_heads": [_POSITIVE_INT],
    "n_layers": [_POSITIVE_INT],
    "head": [StrOptions({"linear", "cosine"})],
    "adapt_steps": [_NON_NEGATIVE_INT],
    "adapt_lr": [_FINITE_POSITIVE],
}
#: The constraints of the learners whose ``episodes_per_epoch`` may be ``None``
#: (``EPOCH_CLASSES // n_way`` episodes).
META_PARAMETER_CONSTRAINTS_EPOCH_OR_NONE = {**META_PARAMETER_CONSTRAINTS,
                                            "episodes_per_epoch": [_POSITIVE_INT, None]}


def embed_in_chunks(embed, X, chunk=PREDICT_CHUNK):
    """``embed`` of the rows of ``X``, ``chunk`` rows per forward pass, concatenated.

    How the few-shot learners embed a support set to adapt to it and the
    queries they predict: memory stays bounded, and ``X`` of at most
    ``chunk`` rows is one forward pass.
    """
    return torch.cat([embed(X[i:i + chunk]) for i in range(0, X.shape[0], chunk)])


def state_to(state, device):
    """A copy of an adapted state (dict of tensors and plain values) on ``device``.

    Adapted states are kept on the CPU, so that a model adapted on a GPU
    unpickles on a machine without one, and moved to the net's device to predict.
    """
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in state.items()}


def predict_adapted(estimator, X):
    """The fitted module's outputs for ``X`` under ``estimator.adapted_state_``.

    Validates ``X``, runs ``module.predict_logits`` in evaluation mode and
    without gradients, ``PREDICT_CHUNK`` rows at a time, and returns a float32
    CPU tensor.
    """
    check_is_fitted(estimator, "net_")
    X = estimator._validate_X(X, reset=False)
    module = estimator.net_.module_
    device = str(estimator.net_.device)
    state = state_to(estimator.adapted_state_, device)
    with estimator._torch_context(device=device):
        return infer_in_chunks(lambda xb: module.predict_logits(state, xb), X, device,
                               modules=[module], chunk=PREDICT_CHUNK)


def adapt_in_eval(net, Xs, ys, *args, **options):
    """``net.module_.adapt_state(Xs, ys, *args, **options)`` in evaluation mode, on the
    net's device; the adapted state is returned on the CPU (see :func:`state_to`)."""
    module = net.module_
    device = str(net.device)
    was_training = module.training
    module.eval()
    try:
        state = module.adapt_state(to_tensor(Xs).to(device), torch.as_tensor(ys).to(device),
                                   *args, **options)
        return state_to(state, "cpu")
    finally:
        module.train(was_training)


def episodic_dry_run(net, X):
    """What the template dry-runs for an episodic module: its embedding, or its learner."""
    module = net.module
    for name in ("embed", "learner"):
        forward = getattr(module, name, None)
        if callable(forward):
            return forward, X[:2]
    return None


def fit_episodes(net, task_source, episodes_per_epoch):
    """Train an :class:`EpisodicNet` on the meta-batches ``task_source`` draws."""
    net.task_source = task_source
    try:
        episodes = np.arange(episodes_per_epoch, dtype=np.float32)
        net.fit(episodes, episodes)
    finally:
        net.task_source = None


class TaskSource:
    """Draws meta-batches of episodes and stacks them as tensors on the device.

    ``augment`` (a strategy of :mod:`._augmentation`, or None) changes the
    images of the episodes drawn for training (``sample(n, training=True)``),
    not those of validation episodes.
    """

    def __init__(self, X, y, sampler, device, y_dtype=torch.long, augment=None):
        self.X = torch.tensor(X).to(device)
        self.y = torch.as_tensor(y, dtype=y_dtype).to(device)
        self.sampler = sampler
        self.device = device
        self.augment = augment

    def sample(self, n_tasks, training=True):
        episodes = [self.sampler.sample() for _ in range(n_tasks)]
        s = torch.as_tensor(np.stack([e.support_index for e in episodes]), device=self.device)
        q = torch.as_tensor(np.stack([e.query_index for e in episodes]), device=self.device)
        if getattr(self.sampler, "relabel", True):
            ys = torch.as_tensor(np.stack([e.support_labels for e in episodes]),
                                 device=self.device)
            yq = torch.as_tensor(np.stack([e.query_labels for e in episodes]),
                                 device=self.device)
        else:
            ys, yq = self.y[s], self.y[q]
        Xs, Xq = self.X[s], self.X[q]
        if training and self.augment is not None:
            Xs, Xq = augment_rows(self.augment, Xs), augment_rows(self.augment, Xq)
        return Xs, ys, Xq, yq


class EpisodicNet(NeuralNet):
    """A skorch net whose every batch is a meta-batch of episodes.

    The module must have ``meta_step(tasks, backward=True)`` returning the
    mean query loss (a tensor) and the mean query accuracy (a float, or
    ``None``); with ``backward=True`` it also leaves the meta-gradient in
    ``.grad``. ``task_source`` is set by the estimator for the fit only.
    """

    task_source = None

    def train_step(self, batch, **fit_params):
        self._set_training(True)
        self.optimizer_.zero_grad()
        tasks = self.task_source.sample(len(batch[0]))
        loss, acc = self.module_.meta_step(tasks, backward=True)
        self.notify("on_grad_computed",
                    named_parameters=TeeGenerator(self.get_all_learnable_params()),
                    batch=batch)
        self.optimizer_.step()
        if acc is not None:
            self.history.record_batch("train_acc", float(acc))
        return {"loss": loss.detach(), "y_pred": None}

    def validation_step(self, batch, **fit_params):
        self._set_training(False)
        tasks = self.task_source.sample(len(batch[0]), training=False)
        with torch.enable_grad():
            loss, acc = self.module_.meta_step(tasks, backward=False)
        if acc is not None:
            self.history.record_batch("valid_acc", float(acc))
        return {"loss": loss.detach(), "y_pred": None}


class FewShotClassifierMixin:
    """Fit/adapt/predict for episodic few-shot classifiers.

    Subclasses provide ``_build_module(sample_shape,
    hidden_layer_sizes, n_way)`` (an ``nn.Module`` with ``meta_step``,
    ``adapt_state(Xs, ys, n_classes)`` and ``predict_logits(state, X)``), and
    may override ``_check_support_classes(n_classes)``.
    """

    __metadata_request__fit = {"groups": True}

    _fixed_way = False  # True: adapt needs exactly n_way_ classes
    #: The most classes an episode has under ``n_way=None``.
    _default_way = 5

    # ---------------------------------------------------------------- params
    def _check_params(self):
        """Checks that combine parameters (each one alone is checked by
        ``_parameter_constraints``); none by default."""

    def _check_episode_params(self):
        n_way = None if self.n_way is None else int(self.n_way)
        n_query = None if self.n_query is None else int(self.n_query)
        return n_way, int(self.k_shot), n_query

    def _validate_y(self, y, n):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        y = column_or_1d(y, warn=True)
        check_consistent_length(np.empty(n), y)
        check_classification_targets(y)
        return y

    def _resolve_episodes(self, y_enc, n_way, k_shot, n_query, groups=None):
        """n_way / n_query when left to None: what the data allow, up to
        ``_default_way`` classes (within one group when ``groups`` is given)
        and up to 5 queries."""
        counts = np.bincount(y_enc)
        n_classes = len(counts)
        if n_classes < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 classes; y has {n_classes} class"
            )
        if n_way is None:
            n_way = self._default_n_way(counts, k_shot, y_enc, groups)
        elif n_way > n_classes:
            raise ValueError(f"n_way={n_way} is larger than the number of classes in y "
                             f"({n_classes})")
        if n_query is None:
            ranked = np.sort(counts)[::-1]
            n_query = int(max(1, min(5, ranked[min(n_way, n_classes) - 1] - k_shot)))
        return n_way, n_query

    def _default_n_way(self, counts, k_shot, y_enc, groups):
        """``n_way=None``: up to ``_default_way`` of the classes with more than
        ``k_shot`` examples, all in one group when ``groups`` is given."""
        usable = counts > k_shot
        n_usable = int(usable.sum())
        if n_usable < 2:
            raise ValueError(
                f"at least 2 classes with more than k_shot={k_shot} examples are needed "
                f"(k_shot support plus at least one query example); y has {n_usable}"
            )
        if groups is not None:
            class_group = np.empty(len(counts), dtype=object)
            class_group[y_enc] = groups
            # below 2, the episode sampler names the problem
            n_usable = max(2, int(np.unique(class_group[usable], return_counts=True)[1].max()))
        return min(self._default_way, n_usable)

    def _episodes_per_epoch(self, n_way):
        """``episodes_per_epoch``; ``None`` is ``EPOCH_CLASSES // n_way`` episodes, so
        that an epoch draws about the same number of classes whatever the way."""
        if self.episodes_per_epoch is None:
            return max(1, EPOCH_CLASSES // n_way)
        return int(self.episodes_per_epoch)

    def _predict_support(self, y_enc, n_classes, rng):
        """Rows that ``predict`` adapts to after ``fit``.

        Up to ``min(20, max(1, 1000 // n_classes))`` rows of every class (all
        rows of a smaller class), drawn at random under ``random_state``.
        """
        per_class = min(PREDICT_SUPPORT_PER_CLASS, max(1, PREDICT_SUPPORT_TOTAL // n_classes))
        rows = []
        for c in range(n_classes):
            members = np.flatnonzero(y_enc == c)
            if len(members) > per_class:
                members = np.sort(rng.choice(members, per_class, replace=False))
            rows.append(members)
        return np.concatenate(rows)

    def _episodic_callbacks(self, kwargs):
        callbacks = list(kwargs.get("callbacks") or [])
        callbacks.append(("train_acc", PassthroughScoring(name="train_acc", on_train=True)))
        if self.train_split is not None:
            callbacks.append(("valid_acc", PassthroughScoring(name="valid_acc")))
        kwargs["callbacks"] = callbacks
        return kwargs

    # ------------------------------------------------------------------- fit
    def fit(self, X, y, groups=None):
        """Meta-train on N-way K-shot episodes drawn from the classes of ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        y : array-like of shape (n_samples,)
            Class labels; episodes draw ``n_way`` of these classes.
        groups : array-like of shape (n_samples,), default=None
            Draw every episode's classes from within one group (e.g. one
            alphabet of Omniglot). Each class must lie in a single group.

        Returns
        -------
        self
        """
        return self._run("fit", X, y, groups=groups)

    # --------------------------------------------------------- template hooks
    def _encode(self, ctx, X, y, groups=None):
        if ctx.name == "adapt":
            Xs = self._validate_X(X, reset=False)
            ys = self._validate_y(y, Xs.shape[0])
            classes, ys_enc = np.unique(ys, return_inverse=True)
            self._check_support_classes(len(classes))
            return {"X": Xs, "y_enc": ys_enc, "classes": classes}
        self._check_params()
        n_way, k_shot, n_query = self._check_episode_params()
        X = self._validate_X(X, reset=True)
        y = self._validate_y(y, X.shape[0])
        if groups is not None:
            groups = column_or_1d(groups)
            check_consistent_length(X, groups)
        classes, y_enc = np.unique(y, return_inverse=True)
        n_way, n_query = self._resolve_episodes(y_enc, n_way, k_shot, n_query, groups)
        augment = resolve_augmentation(getattr(self, "augment", None), X.shape[1:])
        return {"X": X, "y_enc": y_enc, "classes": classes, "groups": groups,
                "n_way": n_way, "k_shot": k_shot, "n_query": n_query, "augment": augment,
                "episodes_per_epoch": self._episodes_per_epoch(n_way)}

    def _build(self, ctx, data):
        module = self._build_module(data["X"].shape[1:], ctx.hidden_layer_sizes, data["n_way"],
                                    k_shot=data["k_shot"], n_query=data["n_query"],
                                    device=ctx.device)
        kwargs = self._episodic_callbacks(self._net_kwargs(ctx.device))
        kwargs.pop("iterator_train__shuffle", None)
        return EpisodicNet(module, criterion=torch.nn.CrossEntropyLoss, **kwargs)

    def _dry_run_example(self, ctx, net, data):
        return episodic_dry_run(net, data["X"])

    def _train(self, ctx, net, data):
        X, y_enc, n_classes = data["X"], data["y_enc"], len(data["classes"])
        if ctx.name == "adapt":
            return self._adapt_module(net, X, y_enc, n_classes)
        rng = np.random.RandomState(ctx.seed)
        sampler = EpisodeSampler(y_enc, data["n_way"], data["k_shot"], data["n_query"],
                                 groups=data["groups"], random_state=rng)
        fit_episodes(net, TaskSource(X, y_enc, sampler, ctx.device, augment=data.get("augment")),
                     data["episodes_per_epoch"])
        rows = self._predict_support(y_enc, n_classes, rng)
        return self._adapt_module(net, X[rows], y_enc[rows], n_classes)

    def _record(self, ctx, net, data, state):
        if ctx.name == "adapt":
            new = copy.copy(self)
            new.classes_ = data["classes"]
            new.adapted_state_ = state
            return new
        self.net_ = net
        self.classes_ = data["classes"]
        self.n_way_ = data["n_way"]
        self.n_query_ = data["n_query"]
        self.adapted_state_ = state
        self._after_fit(net)
        return self

    def _after_fit(self, net):
        pass

    # ----------------------------------------------------------------- adapt
    def _adapt_module(self, net, Xs, ys_enc, n_classes):
        ys = torch.as_tensor(ys_enc, dtype=torch.long)
        return adapt_in_eval(net, Xs, ys, n_classes, **self._adapt_options())

    def _adapt_options(self):
        """Keyword arguments for the module's ``adapt_state`` (read at adapt time)."""
        return {}

    def _check_support_classes(self, n_classes):
        if n_classes < 2:
            raise ValueError(f"the support set must have at least 2 classes, got {n_classes}")
        if self._fixed_way and n_classes != self.n_way_:
            raise ValueError(
                f"the support set has {n_classes} classes but {type(self).__name__} was "
                f"meta-trained for n_way={self.n_way_}; give a support set with exactly "
                f"{self.n_way_} classes"
            )

    def adapt(self, X_support, y_support):
        """Adapt to the classes of a support set, without changing the meta-model.

        Parameters
        ----------
        X_support : array-like of shape (n_support, ...)
            The labelled examples of the new task (K per class).
        y_support : array-like of shape (n_support,)
            Their labels, any values; they become ``classes_`` of the result.

        Returns
        -------
        estimator
            A new fitted estimator of the same class whose ``predict`` answers
            among the support set's classes. ``self`` is left unchanged.
        """
        return self._run("adapt", X_support, y_support)

    # --------------------------------------------------------------- predict
    def _logits(self, X):
        return predict_adapted(self, X)

    def predict_proba(self, X):
        """Class probabilities over ``classes_``.

        ``classes_`` are the classes of ``fit``, or those of the support set
        for an estimator returned by :meth:`adapt`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            Samples of the shape the model was fitted on.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            The probability of each class of ``classes_`` (in that order)
            for every row; each row sums to 1.
        """
        return torch.softmax(self._logits(X), dim=1).numpy()

    def predict(self, X):
        """Predicted labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            Samples of the shape the model was fitted on.

        Returns
        -------
        ndarray of shape (n_samples,)
            The most probable label of ``classes_`` for every row.
        """
        index = self._logits(X).argmax(dim=1).numpy()
        return self.classes_[index]
