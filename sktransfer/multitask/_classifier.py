"""MultiTaskClassifier: several classification tasks learned by one network."""

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils.validation import check_is_fitted

from ..base import NeuralEstimatorMixin
from ._architectures import build_architecture
from ._net import MultiTaskLoss, MultiTaskModule, MultiTaskNet
from ._targets import (
    encode_multi_target,
    encode_task_format,
    encode_task_ids,
    validate_task_ids,
)
from ._weighting import get_weighting

__all__ = ["MultiTaskClassifier"]


class MultiTaskClassifier(NeuralEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Learn several classification tasks with one network.

    Tasks are given in one of two ways:

    1. **One table with a task column**: ``fit(X, y, task_ids=t)``, where each
       row belongs to one task (``t[i]``) and each task has its own label set.
       ``predict(X, task_ids=t)`` answers each row for its own task. The task
       ids can also be a column of ``X`` (``task_column=``), which needs no
       metadata routing in pipelines and searches.
    2. **Several targets per row**: ``fit(X, Y)`` with ``Y`` of shape
       (n_samples, n_tasks); a missing label is NaN or None (or
       ``missing_label``) and is skipped by the loss. ``predict(X)`` returns
       (n_samples, n_tasks). This is also multi-label learning.

    With ``y`` 1-D and no task ids the estimator is an ordinary single-task
    classifier.

    With NaN for missing labels, give ``GridSearchCV`` and ``cross_validate``
    an explicit splitter (``cv=KFold(3)``): with an integer ``cv``
    scikit-learn inspects a classifier's target to stratify and rejects NaN.
    ``missing_label=-1`` with integer labels avoids this.

    ``task_ids`` is per-sample metadata requested by default by ``fit``,
    ``predict``, ``predict_proba`` and ``score``: with
    ``sklearn.set_config(enable_metadata_routing=True)`` it flows through
    ``Pipeline``, ``GridSearchCV`` and ``cross_validate``.

    Parameters
    ----------
    architecture : {"hard", "conditioned"} or nn.Module, default="hard"
        ``"hard"``: a shared trunk with one linear head per task.
        ``"conditioned"``: one network whose input is the features
        concatenated with a one-hot task vector. An ``nn.Module`` with
        ``forward(X, task_ids=None)`` (see
        :mod:`sktransfer.multitask._architectures`) is used as given.
    weighting : str or Weighting, default="equal"
        How per-task losses are combined: ``"equal"``, ``"static"`` (with
        ``task_weights``), ``"uncertainty"`` (Kendall et al., 2018), or a
        :class:`~sktransfer.multitask.Weighting` object, whose parameters are
        searchable as ``weighting__<name>``.
    task_weights : array-like, dict or None, default=None
        Static weights, one per task in the order of ``tasks_`` (or a dict
        from task to weight). Used with ``"equal"``/``"static"``.
    task_column : int, str or None, default=None
        Take the task ids from this column of ``X`` (an index, or a name for
        a DataFrame) and drop it from the features.
    missing_label : scalar or None, default=None
        An extra value that marks a missing label in 2-D ``Y`` (NaN and None
        always do).
    module : None, nn.Module class, factory or instance, default=None
        The shared trunk. ``None`` uses an :class:`~sktransfer.modules.MLP`
        with ``hidden_layer_sizes`` for 2-D ``X`` and a
        :class:`~sktransfer.modules.Conv4` for images (n, C, H, W).
    hidden_layer_sizes : tuple of int, default=(100,)
        Widths of the default MLP trunk.
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=1e-3
    max_epochs : int, default=20
    batch_size : int, default=64
    callbacks : list of skorch callbacks or None, default=None
    train_split : None or skorch split, default=None
    device : {"cpu", "cuda", "auto"}, default="cpu"
    random_state : int, RandomState or None, default=None
    verbose : int, default=0
    net_params : dict or None, default=None
        See :class:`~sktransfer.base.NeuralEstimatorMixin` for these.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained net; ``net_.history[:, "train_task_losses"]`` and
        ``net_.history[:, "train_task_weights"]`` hold one list of per-task
        values per epoch.
    tasks_ : ndarray
        The task ids (task format) or column names / indices (2-D ``Y``).
    n_tasks_ : int
    classes_ : ndarray or list of ndarray
        Task format: all labels of all tasks (the columns of
        ``predict_proba``). 2-D ``Y``: one array of labels per task.
    task_classes_ : list of ndarray
        The labels of each task.
    multi_target_ : bool
        Whether the model was fitted on a 2-D ``Y``.
    n_features_in_ : int
    input_shape_ : tuple
        Shape of one sample, ``(n_features,)`` or ``(C, H, W)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.multitask import MultiTaskClassifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(200, 5)
    >>> t = rng.randint(2, size=200)                  # two tasks
    >>> y = np.where(t == 0, X[:, 0] > 0, X[:, 1] > 0).astype(int)
    >>> clf = MultiTaskClassifier(max_epochs=30, random_state=0).fit(X, y, task_ids=t)
    >>> clf.predict(X[:3], task_ids=t[:3]).shape
    (3,)
    >>> clf.score(X, y, task_ids=t) > 0.9
    True
    """

    __metadata_request__fit = {"task_ids": True}
    __metadata_request__predict = {"task_ids": True}
    __metadata_request__predict_proba = {"task_ids": True}
    __metadata_request__score = {"task_ids": True}

    def __init__(
        self,
        architecture="hard",
        weighting="equal",
        task_weights=None,
        task_column=None,
        missing_label=None,
        module=None,
        hidden_layer_sizes=(100,),
        optimizer=torch.optim.Adam,
        lr=1e-3,
        max_epochs=20,
        batch_size=64,
        callbacks=None,
        train_split=None,
        device="cpu",
        random_state=None,
        verbose=0,
        net_params=None,
    ):
        self.architecture = architecture
        self.weighting = weighting
        self.task_weights = task_weights
        self.task_column = task_column
        self.missing_label = missing_label
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.required = True
        return tags

    # ------------------------------------------------------------------ input
    def _split_task_column(self, X, task_ids):
        if self.task_column is None:
            return X, task_ids
        if task_ids is not None:
            raise ValueError("pass task ids either as task_ids= or through task_column=, not both")
        col = self.task_column
        if hasattr(X, "columns"):
            if col not in X.columns:
                raise ValueError(f"task_column={col!r} is not a column of X; "
                                 f"the columns are {list(X.columns)}")
            return X.drop(columns=[col]), np.asarray(X[col])
        Xa = np.asarray(X)
        if Xa.ndim != 2 or not isinstance(col, (int, np.integer)) or not (
            -Xa.shape[1] <= col < Xa.shape[1]
        ):
            raise ValueError(
                f"task_column={col!r} must be a column index of a 2-D X (or a column name of "
                f"a DataFrame); X has shape {Xa.shape}"
            )
        return np.delete(Xa, col, axis=1), Xa[:, col]

    def _task_index(self, X_n, task_ids):
        """Encoded task per row for predict; None in the multi-target format."""
        if self.multi_target_:
            if task_ids is not None:
                raise ValueError("this model was fitted on a 2-D Y (one column per task); "
                                 "predict returns every task and takes no task_ids")
            return None
        if task_ids is None:
            if self.n_tasks_ == 1:
                return np.zeros(X_n, dtype=np.int64)
            raise ValueError(
                f"task_ids is required: this model was fitted on {self.n_tasks_} tasks "
                f"{self.tasks_.tolist()[:10]}; pass task_ids=... (or use task_column)"
            )
        task_ids = validate_task_ids(task_ids, X_n)
        try:
            return encode_task_ids(task_ids, self.tasks_)
        except TypeError as exc:
            raise ValueError(f"task_ids of type {task_ids.dtype} cannot be compared with the "
                             f"fitted tasks {self.tasks_.tolist()[:10]}") from exc

    @staticmethod
    def _inputs(X, t):
        X = torch.as_tensor(X) if X.flags.writeable else torch.tensor(X)
        return {"X": X} if t is None else {"X": X, "task_ids": torch.as_tensor(t)}

    # -------------------------------------------------------------------- fit
    def fit(self, X, y=None, task_ids=None):
        """Fit the network on all tasks.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n, C, H, W)
        y : array-like of shape (n_samples,) or (n_samples, n_tasks)
            1-D labels (with ``task_ids`` for several tasks), or a 2-D
            target with one column per task and missing labels.
        task_ids : array-like of shape (n_samples,), default=None
            The task of each row (1-D ``y`` only).

        Returns
        -------
        self
        """
        with self._atomic_fit():
            self._fit(X, y, task_ids)
        return self

    def _fit(self, X, y, task_ids):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        device, sizes = self._check_common_params()
        X, task_ids = self._split_task_column(X, task_ids)
        X = self._validate_X(X, reset=True)
        n = X.shape[0]
        y_arr = y if hasattr(y, "columns") else np.asarray(y)
        multi_target = getattr(y_arr, "ndim", 1) == 2 and not (
            y_arr.shape[1] == 1 and task_ids is not None)
        if multi_target:
            if task_ids is not None:
                raise ValueError("task_ids cannot be combined with a 2-D Y: each column of Y "
                                 "is already a task")
            if y_arr.shape[0] != n:
                raise ValueError(f"Y has {y_arr.shape[0]} rows but X has {n} samples")
            y_enc, tasks, task_classes = encode_multi_target(y_arr, self.missing_label)
            t_enc, classes = None, list(task_classes)
        else:
            y_enc, t_enc, tasks, task_classes, classes = encode_task_format(y_arr, task_ids, n)
        n_tasks = len(tasks)
        strategy = get_weighting(self.weighting, self.task_weights, list(tasks))
        n_out = max(len(c) for c in task_classes)
        class_mask = np.zeros((n_tasks, n_out), dtype=bool)
        for k, c in enumerate(task_classes):
            class_mask[k, : len(c)] = True

        seed = self._draw_seed()
        with self._torch_context(seed, device):
            example = torch.as_tensor(X[:2])

            def make_trunk(n_in):
                shape = (n_in,) if n_in is not None else X.shape[1:]
                return self._make_trunk(shape, sizes)

            model = build_architecture(self.architecture, make_trunk, example, n_tasks, n_out)
            module = MultiTaskModule(model, strategy.build(n_tasks), class_mask)
            net = MultiTaskNet(
                module,
                criterion=MultiTaskLoss,
                criterion__n_tasks=n_tasks,
                **self._net_kwargs(device),
            )
            net.fit(self._inputs(X, t_enc), torch.as_tensor(y_enc))

        self.net_ = net
        self.multi_target_ = multi_target
        self.tasks_ = np.asarray(tasks)
        self.n_tasks_ = n_tasks
        self.task_classes_ = task_classes
        self.classes_ = classes
        self.input_shape_ = tuple(X.shape[1:])

    # ---------------------------------------------------------------- predict
    def _forward(self, X, task_ids):
        check_is_fitted(self, "net_")
        X, task_ids = self._split_task_column(X, task_ids)
        X = self._validate_X(X, reset=False)
        t = self._task_index(X.shape[0], task_ids)
        with self._torch_context(device=str(self.net_.device)):
            logits = self.net_.forward(self._inputs(X, t), training=False)
        return torch.softmax(logits.float(), dim=-1).numpy(), t

    def predict_proba(self, X, task_ids=None):
        """Class probabilities.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes) or list of ndarray
            Task format: probabilities over ``classes_`` (zero for labels the
            row's task does not have). 2-D ``Y``: one (n_samples,
            n_classes_t) array per task, as :class:`~sklearn.multioutput.MultiOutputClassifier`.
        """
        proba, t = self._forward(X, task_ids)
        if self.multi_target_:
            return [proba[:, k, : len(c)] for k, c in enumerate(self.task_classes_)]
        out = np.zeros((proba.shape[0], len(self.classes_)), dtype=proba.dtype)
        for k, c in enumerate(self.task_classes_):
            rows = t == k
            if rows.any():
                cols = np.searchsorted(self.classes_, c)
                out[np.ix_(rows, cols)] = proba[rows, : len(c)]
        return out

    def predict(self, X, task_ids=None):
        """Predicted labels: (n_samples,) in the task format, (n_samples, n_tasks) for 2-D Y."""
        proba, t = self._forward(X, task_ids)
        if self.multi_target_:
            cols = [c[np.argmax(proba[:, k, : len(c)], axis=1)]
                    for k, c in enumerate(self.task_classes_)]
            if len({c.dtype for c in cols}) > 1:
                return np.array(cols, dtype=object).T
            return np.column_stack(cols)
        pred = np.empty(proba.shape[0], dtype=self.classes_.dtype)
        for k, c in enumerate(self.task_classes_):
            rows = t == k
            if rows.any():
                pred[rows] = c[np.argmax(proba[rows, : len(c)], axis=1)]
        return pred

    def score(self, X, y, task_ids=None, sample_weight=None):
        """Accuracy.

        Task format: the fraction of rows predicted right (each for its own
        task). 2-D ``Y``: the mean over tasks of each task's accuracy on its
        labelled rows (missing labels are skipped).
        """
        pred = self.predict(X, task_ids=task_ids)
        if not self.multi_target_:
            return accuracy_score(y, pred, sample_weight=sample_weight)
        from ._targets import _is_missing

        Y = np.asarray(y)
        if Y.ndim == 1:
            Y = Y[:, None]
        accs = []
        for k in range(self.n_tasks_):
            keep = ~_is_missing(Y[:, k], self.missing_label)
            if keep.any():
                sw = None if sample_weight is None else np.asarray(sample_weight)[keep]
                accs.append(accuracy_score(Y[keep, k].astype(pred.dtype, copy=False)
                                           if Y.dtype == object else Y[keep, k],
                                           pred[keep, k], sample_weight=sw))
        return float(np.mean(accs))
