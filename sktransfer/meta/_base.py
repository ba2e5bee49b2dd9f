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
import numbers

import numpy as np
import torch
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_consistent_length, check_is_fitted, column_or_1d
from skorch import NeuralNet
from skorch.callbacks import PassthroughScoring
from skorch.utils import TeeGenerator

from ._episodes import EpisodeSampler, _check_positive_int

__all__ = ["EpisodicNet", "FewShotClassifierMixin", "TaskSource"]

#: At most this many rows per class, and about this many rows in all, form the
#: support set that ``predict`` adapts to after ``fit`` (see ``_predict_support``).
PREDICT_SUPPORT_PER_CLASS = 20
PREDICT_SUPPORT_TOTAL = 1000
#: Rows per forward pass when predicting.
PREDICT_CHUNK = 1024


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
    was_training = module.training
    module.eval()
    outs = []
    state = state_to(estimator.adapted_state_, device)
    try:
        with estimator._torch_context(device=device), torch.no_grad():
            for start in range(0, X.shape[0], PREDICT_CHUNK):
                Xi = torch.tensor(X[start:start + PREDICT_CHUNK]).to(device)
                outs.append(module.predict_logits(state, Xi).float().cpu())
    finally:
        module.train(was_training)
    return torch.cat(outs)


class TaskSource:
    """Draws meta-batches of episodes and stacks them as tensors on the device."""

    def __init__(self, X, y, sampler, device, y_dtype=torch.long):
        self.X = torch.tensor(X).to(device)
        self.y = torch.as_tensor(y, dtype=y_dtype).to(device)
        self.sampler = sampler
        self.device = device

    def sample(self, n_tasks):
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
        return self.X[s], ys, self.X[q], yq


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
        tasks = self.task_source.sample(len(batch[0]))
        with torch.enable_grad():
            loss, acc = self.module_.meta_step(tasks, backward=False)
        if acc is not None:
            self.history.record_batch("valid_acc", float(acc))
        return {"loss": loss.detach(), "y_pred": None}


def _check_optional_int(value, name, minimum):
    if value is None:
        return None
    return _check_positive_int(value, name, minimum)


class FewShotClassifierMixin:
    """Fit/adapt/predict for episodic few-shot classifiers.

    Subclasses provide ``_check_params()``, ``_build_module(sample_shape,
    hidden_layer_sizes, n_way)`` (an ``nn.Module`` with ``meta_step``,
    ``adapt_state(Xs, ys, n_classes)`` and ``predict_logits(state, X)``), and
    may override ``_check_support_classes(n_classes)``.
    """

    __metadata_request__fit = {"groups": True}

    _fixed_way = False  # True: adapt needs exactly n_way_ classes

    # ---------------------------------------------------------------- params
    def _check_episode_params(self):
        n_way = _check_optional_int(self.n_way, "n_way", 2)
        k_shot = _check_positive_int(self.k_shot, "k_shot", 1)
        n_query = _check_optional_int(self.n_query, "n_query", 1)
        _check_positive_int(self.episodes_per_epoch, "episodes_per_epoch", 1)
        return n_way, k_shot, n_query

    def _validate_y(self, y, n):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        y = column_or_1d(y, warn=True)
        check_consistent_length(np.empty(n), y)
        check_classification_targets(y)
        return y

    def _resolve_episodes(self, y_enc, n_way, k_shot, n_query):
        """n_way / n_query when left to None: up to 5 each, what the data allow."""
        counts = np.sort(np.bincount(y_enc))[::-1]
        n_classes = len(counts)
        if n_classes < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 classes; y has {n_classes} class"
            )
        usable = int(np.sum(counts > k_shot))
        if n_way is None:
            if usable < 2:
                raise ValueError(
                    f"at least 2 classes with more than k_shot={k_shot} examples are needed "
                    f"(k_shot support plus at least one query example); y has {usable}"
                )
            n_way = min(5, usable)
        elif n_way > n_classes:
            raise ValueError(f"n_way={n_way} is larger than the number of classes in y "
                             f"({n_classes})")
        if n_query is None:
            n_query = int(max(1, min(5, counts[min(n_way, n_classes) - 1] - k_shot)))
        return n_way, n_query

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
        with self._atomic_fit():
            self._fit(X, y, groups)
        return self

    def _fit(self, X, y, groups):
        device, sizes = self._check_common_params()
        n_way, k_shot, n_query = self._check_episode_params()
        self._check_params()
        X = self._validate_X(X, reset=True)
        y = self._validate_y(y, X.shape[0])
        if groups is not None:
            groups = column_or_1d(groups)
            check_consistent_length(X, groups)
        classes, y_enc = np.unique(y, return_inverse=True)
        n_way, n_query = self._resolve_episodes(y_enc, n_way, k_shot, n_query)
        seed = self._draw_seed()
        rng = np.random.RandomState(seed)
        sampler = EpisodeSampler(y_enc, n_way, k_shot, n_query, groups=groups, random_state=rng)
        with self._torch_context(seed, device):
            module = self._build_module(X.shape[1:], sizes, n_way,
                                        k_shot=k_shot, n_query=n_query, device=device)
            kwargs = self._episodic_callbacks(self._net_kwargs(device))
            kwargs.pop("iterator_train__shuffle", None)
            net = EpisodicNet(module, criterion=torch.nn.CrossEntropyLoss, **kwargs)
            net.task_source = TaskSource(X, y_enc, sampler, device)
            try:
                episodes = np.arange(self.episodes_per_epoch, dtype=np.float32)
                net.fit(episodes, episodes)
            finally:
                net.task_source = None
            rows = self._predict_support(y_enc, len(classes), rng)
            state = self._adapt_module(net, X[rows], y_enc[rows], len(classes))

        self.net_ = net
        self.classes_ = classes
        self.n_way_ = n_way
        self.n_query_ = n_query
        self.input_shape_ = tuple(X.shape[1:])
        self.adapted_state_ = state
        self._after_fit(net)

    def _after_fit(self, net):
        pass

    # ----------------------------------------------------------------- adapt
    def _adapt_module(self, net, Xs, ys_enc, n_classes):
        module = net.module_
        device = str(net.device)
        Xs = torch.tensor(Xs).to(device)
        ys = torch.as_tensor(ys_enc, dtype=torch.long, device=device)
        was_training = module.training
        module.eval()
        try:
            state = module.adapt_state(Xs, ys, n_classes, **self._adapt_options())
            return state_to(state, "cpu")
        finally:
            module.train(was_training)

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
        check_is_fitted(self, "net_")
        Xs = self._validate_X(X_support, reset=False)
        ys = self._validate_y(y_support, Xs.shape[0])
        classes, ys_enc = np.unique(ys, return_inverse=True)
        self._check_support_classes(len(classes))
        seed = self._draw_seed()
        device = str(self.net_.device)
        with self._torch_context(seed, device):
            state = self._adapt_module(self.net_, Xs, ys_enc, len(classes))
        new = copy.copy(self)
        new.classes_ = classes
        new.adapted_state_ = state
        return new

    # --------------------------------------------------------------- predict
    def _logits(self, X):
        return predict_adapted(self, X)

    def predict_proba(self, X):
        """Class probabilities over ``classes_`` (those of ``fit``, or of the support set
        after :meth:`adapt`).

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        return torch.softmax(self._logits(X), dim=1).numpy()

    def predict(self, X):
        """The most probable class of ``classes_`` for every row."""
        index = self._logits(X).argmax(dim=1).numpy()
        return self.classes_[index]


def check_number(value, name, low=None, high=None, low_inclusive=False):
    """A real number within bounds, else a TypeError / ValueError that names it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise ValueError(f"{name} must be {'>=' if low_inclusive else '>'} {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return float(value)

