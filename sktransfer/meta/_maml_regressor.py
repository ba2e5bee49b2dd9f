"""MAMLRegressor: MAML for few-shot regression (e.g. the sinusoid tasks of Finn et al.)."""

import copy

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_consistent_length, column_or_1d

from ..base import NeuralEstimatorMixin, parameter_constraints
from ._base import (
    META_PARAMETER_CONSTRAINTS,
    PREDICT_SUPPORT_TOTAL,
    EpisodicNet,
    TaskSource,
    adapt_in_eval,
    episodic_dry_run,
    fit_episodes,
    predict_adapted,
)
from ._episodes import Episode
from ._maml_params import MAMLParamsMixin

__all__ = ["MAMLRegressor"]


class TaskRowSampler:
    """Episodes of a regression task: ``k_shot`` support and ``n_query`` query rows
    of one task (group), drawn without replacement."""

    relabel = False

    def __init__(self, groups, k_shot, n_query, random_state):
        self.k_shot, self.n_query = k_shot, n_query
        self.rng = random_state
        _, inverse = np.unique(groups, return_inverse=True)
        self._tasks = [np.flatnonzero(inverse == t) for t in range(inverse.max() + 1)]

    def sample(self):
        rows = self._tasks[self.rng.randint(len(self._tasks))]
        chosen = self.rng.choice(rows, self.k_shot + self.n_query, replace=False)
        return Episode(chosen[:self.k_shot], chosen[self.k_shot:], None, None, None)


@parameter_constraints(**META_PARAMETER_CONSTRAINTS)
class MAMLRegressor(MAMLParamsMixin, NeuralEstimatorMixin, RegressorMixin, BaseEstimator):
    """Model-agnostic meta-learning for few-shot regression.

    ``fit(X, y, groups=task_ids)`` meta-trains on tasks given by ``groups``
    (all rows of one task share a group; ``None``: all rows are one task):
    every episode draws one task, ``k_shot`` support rows and ``n_query``
    query rows, and the meta-objective is the query MSE after
    ``inner_steps`` gradient steps on the support MSE. Targets are
    standardised with the mean and standard deviation of ``y`` in ``fit``.
    :meth:`adapt` returns a copy adapted to a new task's support rows.
    ``predict`` after ``fit`` adapts to up to 1000 random training rows taken
    as one task (for one-task data, an ordinary regressor).

    When the smallest task has fewer than ``k_shot + n_query`` rows, both
    are scaled down to fit it (``k_shot_`` and ``n_query_`` hold the values
    used; at least 2 rows per task are needed).

    Parameters
    ----------
    k_shot : int, default=10
        Support rows per episode (K).
    n_query : int, default=10
        Query rows per episode.
    episodes_per_epoch : int, default=1000
    inner_lr : float, default=0.01
    inner_steps : int, default=1
    inner_steps_test : int or None, default=None
        ``None`` uses ``inner_steps``.
    first_order : bool, default=False
    learn_inner_lr : bool, default=False
        Meta-SGD.
    adapt_layers : "all", "head" or list of str, default="all"
    inner_optimizer : {"sgd", "meta_lstm"} or InnerUpdate subclass, default="sgd"
    task_batching : {"auto", "vmap", "loop"}, default="auto"
        See :class:`MAMLClassifier` (also for ``inner_optimizer``).
    compile_step : bool, default=False
        Compile the first-order step (see :class:`MAMLClassifier`).
    module : None, nn.Module class, factory or instance, default=None
        The trunk; a linear output layer is added. ``None``: an MLP with
        ``hidden_layer_sizes`` (the paper's two hidden layers of 40 ReLUs).
    hidden_layer_sizes : tuple of int, default=(40, 40)
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=1e-3
    max_epochs : int, default=10
    batch_size : int, default=25
        Tasks per meta-iteration.
    callbacks, train_split, device, random_state, verbose, net_params
        See :class:`~sktransfer.base.NeuralEstimatorMixin`.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        ``net_.history`` has ``train_loss``, the query MSE (standardised).
    k_shot_, n_query_ : int
    task_batching_, task_batching_reason_ : str
    adapted_state_ : dict of str to Tensor
    y_mean_, y_scale_ : float
    n_features_in_ : int
    input_shape_ : tuple

    Examples
    --------
    >>> from sktransfer.datasets import make_sinusoid_tasks
    >>> from sktransfer.meta import MAMLRegressor
    >>> X, y, tasks = make_sinusoid_tasks(n_tasks=200, random_state=0)
    >>> maml = MAMLRegressor(max_epochs=2, episodes_per_epoch=200, random_state=0)
    >>> maml = maml.fit(X, y, groups=tasks)
    >>> Xn, yn, _ = make_sinusoid_tasks(n_tasks=1, n_samples_per_task=60, random_state=1)
    >>> maml.adapt(Xn[:10], yn[:10]).predict(Xn[10:]).shape
    (50,)
    """

    __metadata_request__fit = {"groups": True}

    def __init__(
        self,
        k_shot=10,
        n_query=10,
        episodes_per_epoch=1000,
        inner_lr=0.01,
        inner_steps=1,
        inner_steps_test=None,
        first_order=False,
        learn_inner_lr=False,
        adapt_layers="all",
        inner_optimizer="sgd",
        task_batching="auto",
        compile_step=False,
        module=None,
        hidden_layer_sizes=(40, 40),
        optimizer=torch.optim.Adam,
        lr=1e-3,
        max_epochs=10,
        batch_size=25,
        callbacks=None,
        train_split=None,
        device="cpu",
        random_state=None,
        verbose=0,
        net_params=None,
    ):
        self.k_shot = k_shot
        self.n_query = n_query
        self.episodes_per_epoch = episodes_per_epoch
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.inner_steps_test = inner_steps_test
        self.first_order = first_order
        self.learn_inner_lr = learn_inner_lr
        self.adapt_layers = adapt_layers
        self.inner_optimizer = inner_optimizer
        self.task_batching = task_batching
        self.compile_step = compile_step
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

    def _validate_y(self, y, n):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None")
        y = column_or_1d(y, warn=True)
        check_consistent_length(np.empty(n), y)
        try:
            y = np.asarray(y, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"y must be numeric for regression: {exc}") from exc
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or infinity")
        return y

    def fit(self, X, y, groups=None):
        """Meta-train on the tasks given by ``groups``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        groups : array-like of shape (n_samples,), default=None
            The task of each row; ``None`` makes all rows one task.

        Returns
        -------
        self
        """
        return self._run("fit", X, y, groups=groups)

    def adapt(self, X_support, y_support):
        """Adapt to a new task's support rows; returns a new fitted estimator.

        Parameters
        ----------
        X_support : array-like of shape (n_support, n_features)
        y_support : array-like of shape (n_support,)

        Returns
        -------
        MAMLRegressor
            A copy whose ``predict`` answers for the new task; ``self`` is
            left unchanged.
        """
        return self._run("adapt", X_support, y_support)

    # --------------------------------------------------------- template hooks
    def _encode(self, ctx, X, y, groups=None):
        if ctx.name == "adapt":
            Xs = self._validate_X(X, reset=False)
            ys = self._validate_y(y, Xs.shape[0])
            return {"X": Xs, "y_std": ((ys - self.y_mean_) / self.y_scale_).astype(np.float32)}
        k_shot, n_query = int(self.k_shot), int(self.n_query)
        self._check_params()
        X = self._validate_X(X, reset=True)
        y = self._validate_y(y, X.shape[0])
        groups = np.zeros(X.shape[0], dtype=int) if groups is None else column_or_1d(groups)
        check_consistent_length(X, groups)
        smallest = int(np.unique(groups, return_counts=True)[1].min())
        if smallest < 2:
            raise ValueError(f"every task needs at least 2 rows (one support, one query); "
                             f"the smallest task has n_samples = {smallest}")
        if smallest < k_shot + n_query:
            k_shot = max(1, smallest * k_shot // (k_shot + n_query))
            n_query = smallest - k_shot
        y_mean = float(y.mean())
        y_scale = float(y.std()) or 1.0
        y_std = ((y - y_mean) / y_scale).astype(np.float32)
        return {"X": X, "y_std": y_std, "groups": groups, "k_shot": k_shot,
                "n_query": n_query, "y_mean": y_mean, "y_scale": y_scale}

    def _build(self, ctx, data):
        module = self._maml_module(data["X"].shape[1:], ctx.hidden_layer_sizes, 1,
                                   data["k_shot"], data["n_query"], ctx.device, "regression")
        kwargs = self._net_kwargs(ctx.device)
        kwargs.pop("iterator_train__shuffle", None)
        return EpisodicNet(module, criterion=torch.nn.MSELoss, **kwargs)

    def _dry_run_example(self, ctx, net, data):
        return episodic_dry_run(net, data["X"])

    def _train(self, ctx, net, data):
        X, y_std = data["X"], data["y_std"]
        if ctx.name == "adapt":
            return self._adapt_std(net, X, y_std)
        rng = np.random.RandomState(ctx.seed)
        sampler = TaskRowSampler(data["groups"], data["k_shot"], data["n_query"], rng)
        fit_episodes(net, TaskSource(X, y_std, sampler, ctx.device, y_dtype=torch.float32),
                     self.episodes_per_epoch)
        rows = np.sort(rng.choice(X.shape[0], min(X.shape[0], PREDICT_SUPPORT_TOTAL),
                                  replace=False))
        return self._adapt_std(net, X[rows], y_std[rows])

    def _record(self, ctx, net, data, state):
        if ctx.name == "adapt":
            new = copy.copy(self)
            new.adapted_state_ = state
            return new
        self.net_ = net
        self.k_shot_ = data["k_shot"]
        self.n_query_ = data["n_query"]
        self.y_mean_ = data["y_mean"]
        self.y_scale_ = data["y_scale"]
        self.adapted_state_ = state
        self._after_fit(net)
        return self

    def _adapt_std(self, net, Xs, ys_std):
        return adapt_in_eval(net, Xs, ys_std, **self._adapt_options())

    def predict(self, X):
        """Predictions for the task of the last adaptation (the training rows after ``fit``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples of the shape the model was fitted on.

        Returns
        -------
        ndarray of shape (n_samples,)
            The predicted targets, in the units of the ``y`` of ``fit``.
        """
        out = predict_adapted(self, X).reshape(-1)
        return out.numpy() * self.y_scale_ + self.y_mean_
