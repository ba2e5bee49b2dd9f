"""TaskGroupedClassifier: one multi-task network per group of tasks."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.metrics import accuracy_score
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_is_fitted

from ..base import derive_seed
from ._affinity import _affinity_estimator, fitted_affinity
from ._grouping import group_tasks
from ._targets import _is_missing, target_columns, validate_task_ids

__all__ = ["TaskGroupedClassifier"]


class TaskGroupedClassifier(ClassifierMixin, BaseEstimator):
    """Train groups of tasks together, each group in its own multi-task network.

    Tasks that help each other gain from sharing a network; a task that
    hurts the others (negative transfer) is better trained apart. ``fit``
    measures the inter-task affinity in one short training run of a
    hard-sharing network on every task (:func:`task_affinity`, TAG: Fifty
    et al., 2021), splits the tasks into the groups of largest total
    affinity (:func:`group_tasks`), and trains one clone of ``estimator``
    per group; each task is predicted by its group's network. Give
    ``groups`` to skip the affinity and train those groups.

    The data formats are those of
    :class:`~sktransfer.multitask.MultiTaskClassifier`: ``fit(X, y,
    task_ids=t)`` with one task per row, or ``fit(X, Y)`` with one column
    per task (NaN for a missing label); ``predict`` answers in the same
    format. With a 1-D ``y`` and no task ids there is one task and one
    network, as ``estimator`` alone.

    Parameters
    ----------
    estimator : MultiTaskClassifier or None, default=None
        The network of each group, cloned (and of the affinity run, with
        ``architecture="hard"`` and ``affinity_epochs`` epochs). ``None``:
        ``MultiTaskClassifier()``.
    groups : list of lists or None, default=None
        The groups of tasks, each a list of tasks (task ids, or the columns
        of ``Y``: names of a DataFrame, else indices), covering every task
        exactly once. ``None``: found from the affinity.
    n_groups : int or None, default=None
        The most groups (networks) :func:`group_tasks` may propose; ``None``:
        up to one per task.
    affinity_epochs : int, default=5
        Epochs of the training run that measures the affinity.
    affinity_every : int, default=1
        Measure the affinity at every ``affinity_every``-th step of that run
        (each measurement costs about ``n_tasks`` training steps).
    lookahead_lr : float or None, default=None
        Step size of the lookahead of the affinity; ``None``: the
        estimator's ``lr``.
    method : {"auto", "exact", "greedy"}, default="auto"
        The search of :func:`group_tasks`.
    scale_epochs : bool, default=True
        Train each group's network for ``max_epochs * n_samples /
        n_group_samples`` epochs (rounded; ``n_group_samples`` are the rows
        with a label of the group), the number of optimizer steps of one
        network on all the rows: a group of few tasks, trained on few rows,
        is otherwise trained for fewer steps than the network of every task.
        ``False``: the estimator's ``max_epochs`` for every group.
    random_state : int, RandomState or None, default=None
        Seeds the affinity run and (through independent streams) every
        group's network; ``None`` leaves the estimator's own
        ``random_state``.

    Attributes
    ----------
    groups_ : list of list
        The groups of tasks (as the entries of ``tasks_``), one per network.
    estimators_ : list of MultiTaskClassifier
        The fitted network of each group.
    affinity_ : ndarray of shape (n_tasks, n_tasks) or None
        The measured affinity (``A[i, j]``: of task ``i`` onto task ``j``);
        None when ``groups`` was given or there is one task.
    tasks_ : ndarray
        The task ids (task format) or column names / indices (2-D ``Y``).
    n_tasks_ : int
    classes_ : ndarray or list of ndarray
        Task format: all labels of all tasks; 2-D ``Y``: the labels of each
        task.
    multi_target_ : bool
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.multitask import MultiTaskClassifier, TaskGroupedClassifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(300, 5)
    >>> Y = np.column_stack([X[:, 0] > 0, X[:, 0] + 0.2 * X[:, 1] > 0,
    ...                      rng.randint(2, size=300)]).astype(float)
    >>> clf = TaskGroupedClassifier(MultiTaskClassifier(max_epochs=10),
    ...                             random_state=0).fit(X, Y)
    >>> clf.groups_
    [[0, 1], [2]]
    >>> clf.predict(X[:2]).shape
    (2, 3)
    """

    _parameter_constraints = {
        "estimator": [None, HasMethods(["fit", "predict", "get_params"])],
        "groups": [list, tuple, None],
        "n_groups": [Interval(Integral, 1, None, closed="left"), None],
        "affinity_epochs": [Interval(Integral, 1, None, closed="left")],
        "affinity_every": [Interval(Integral, 1, None, closed="left")],
        "lookahead_lr": [Interval(Real, 0, np.inf, closed="neither"), None],
        "method": [StrOptions({"auto", "exact", "greedy"})],
        "scale_epochs": ["boolean"],
        "random_state": ["random_state"],
    }

    __metadata_request__fit = {"task_ids": True}
    __metadata_request__predict = {"task_ids": True}
    __metadata_request__predict_proba = {"task_ids": True}
    __metadata_request__score = {"task_ids": True}

    def __init__(self, estimator=None, groups=None, n_groups=None, affinity_epochs=5,
                 affinity_every=1, lookahead_lr=None, method="auto", scale_epochs=True,
                 random_state=None):
        self.estimator = estimator
        self.groups = groups
        self.n_groups = n_groups
        self.affinity_epochs = affinity_epochs
        self.affinity_every = affinity_every
        self.lookahead_lr = lookahead_lr
        self.method = method
        self.scale_epochs = scale_epochs
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.required = True
        tags.non_deterministic = False
        return tags

    # -------------------------------------------------------------------- fit
    def _template(self):
        if self.estimator is None:
            from ._classifier import MultiTaskClassifier

            return MultiTaskClassifier()
        return self.estimator

    def fit(self, X, y=None, task_ids=None, sample_weight=None):
        """Measure the affinity, group the tasks and train one network per group.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n, C, H, W)
        y : array-like of shape (n_samples,) or (n_samples, n_tasks)
            1-D labels (with ``task_ids`` for several tasks), or one column
            per task with NaN for a missing label.
        task_ids : array-like of shape (n_samples,), default=None
            The task of each row (1-D ``y`` only).
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row in the loss, passed to each group's network
            (and to the affinity run).

        Returns
        -------
        self
        """
        self._validate_params()
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             f"is None")
        template = self._template()
        if template.get_params().get("task_column") is not None:
            raise ValueError(
                f"{type(self).__name__} splits the rows by task itself: give the task ids as "
                f"fit(X, y, task_ids=...), not through the estimator's task_column="
                f"{template.get_params()['task_column']!r}")
        n = _n_rows(X)
        y_arr = y if hasattr(y, "columns") else np.asarray(y)
        multi_target = getattr(y_arr, "ndim", 1) == 2 and y_arr.shape[1] > 1
        if multi_target:
            if task_ids is not None:
                raise ValueError("task_ids cannot be combined with a 2-D Y: each column of Y "
                                 "is already a task")
            if y_arr.shape[0] != n:
                raise ValueError(f"Y has {y_arr.shape[0]} rows but X has {n} samples")
            tasks = (np.asarray(y_arr.columns) if hasattr(y_arr, "columns")
                     else np.arange(y_arr.shape[1]))
            fmt = "wide"
        elif task_ids is not None:
            task_ids = validate_task_ids(task_ids, n)
            tasks = np.unique(task_ids)
            fmt = "long"
        else:
            tasks = np.array([0])
            fmt = "single"
        seed = None
        if self.random_state is not None:
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        positions = self._resolve_groups(tasks)
        affinity = None
        if positions is None:
            if len(tasks) == 1:
                positions = [[0]]
            else:
                affinity = self._measure_affinity(template, X, y, task_ids, sample_weight,
                                                  seed)
                positions = group_tasks(affinity=affinity, n_groups=self.n_groups,
                                        method=self.method)
        estimators = []
        for k, group in enumerate(positions):
            est = clone(template)
            if seed is not None:
                est.set_params(random_state=derive_seed(seed, k + 1))
            est = self._fit_group(est, fmt, X, y_arr, task_ids, tasks, group, sample_weight,
                                  self.scale_epochs)
            # the net's cache of which callbacks implement which batch hooks is rebuilt on
            # demand and never pickled: drop it, so that a fitted model and its pickled
            # copy hold the same state
            vars(est.net_).pop("_hook_cache", None)
            estimators.append(est)
        self.estimators_ = estimators
        self.groups_ = [[tasks[i].item() if hasattr(tasks[i], "item") else tasks[i]
                         for i in g] for g in positions]
        self._positions = positions
        self.affinity_ = affinity
        self.tasks_ = tasks
        self.n_tasks_ = len(tasks)
        self.multi_target_ = fmt == "wide"
        self._format = fmt
        first = estimators[0]
        self.n_features_in_ = first.n_features_in_
        if hasattr(first, "feature_names_in_"):
            self.feature_names_in_ = first.feature_names_in_
        self._set_classes()
        return self

    def _resolve_groups(self, tasks):
        """The given ``groups`` as positions in ``tasks``; None to search them."""
        if self.groups is None:
            return None
        names = tasks.tolist()
        positions, seen = [], set()
        for group in self.groups:
            if isinstance(group, (str, bytes)) or not hasattr(group, "__iter__"):
                raise ValueError(f"groups must be a list of lists of tasks; got the entry "
                                 f"{group!r}")
            members = []
            for task in group:
                if task not in names:
                    raise ValueError(f"groups names the task {task!r}, which is not one of "
                                     f"the tasks {names[:20]}")
                pos = names.index(task)
                if pos in seen:
                    raise ValueError(f"the task {task!r} is in more than one group: each task "
                                     f"belongs to exactly one group")
                seen.add(pos)
                members.append(pos)
            if not members:
                raise ValueError("groups holds an empty group")
            positions.append(sorted(members))
        missing = [names[i] for i in range(len(names)) if i not in seen]
        if missing:
            raise ValueError(f"the tasks {missing[:20]} are in no group: groups must cover "
                             f"every task")
        return positions

    def _measure_affinity(self, template, X, y, task_ids, sample_weight, seed):
        est = _affinity_estimator(template, self.affinity_epochs, seed, self.lookahead_lr,
                                  self.affinity_every)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            est.fit(X, y, task_ids=task_ids, sample_weight=sample_weight)
        return fitted_affinity(est)

    @staticmethod
    def _fit_group(est, fmt, X, y, task_ids, tasks, group, sample_weight, scale_epochs):
        if fmt == "single":
            return est.fit(X, y, sample_weight=sample_weight)
        n = _n_rows(X)
        if fmt == "long":
            rows = np.flatnonzero(np.isin(task_ids, tasks[group]))
            _scale_epochs(est, n, len(rows), scale_epochs)
            sw = None if sample_weight is None else np.asarray(sample_weight)[rows]
            return est.fit(_safe_indexing(X, rows), _safe_indexing(y, rows),
                           task_ids=task_ids[rows], sample_weight=sw)
        Y = _safe_indexing(y, group, axis=1)
        labelled = np.zeros(n, dtype=bool)
        columns = target_columns(Y)
        for col in columns:
            labelled |= ~_is_missing(col, _missing_label(est))
        rows = np.flatnonzero(labelled)
        _scale_epochs(est, n, len(rows), scale_epochs)
        sw = None if sample_weight is None else np.asarray(sample_weight)[rows]
        if len(group) == 1:  # one task: a 1-D y (a column vector would be raveled)
            return est.fit(_safe_indexing(X, rows), columns[0][rows], sample_weight=sw)
        return est.fit(_safe_indexing(X, rows), _safe_indexing(Y, rows), sample_weight=sw)

    def _set_classes(self):
        if self._format == "single":
            self.classes_ = self.estimators_[0].classes_
            return
        per_task = [None] * self.n_tasks_
        for est, group in zip(self.estimators_, self._positions):
            if self._format == "wide" and len(group) == 1:
                per_task[group[0]] = est.classes_
                continue
            for k, pos in enumerate(group):
                per_task[pos] = est.task_classes_[k]
        self.task_classes_ = per_task
        if self._format == "wide":
            self.classes_ = list(per_task)
        else:
            known = [c for c in per_task if c is not None]
            self.classes_ = np.unique(np.concatenate(known)) if known else np.array([])

    # ---------------------------------------------------------------- predict
    def _rows_by_group(self, X, task_ids):
        n = _n_rows(X)
        if task_ids is None:
            if self.n_tasks_ == 1:
                return [np.arange(n)], None
            raise ValueError(f"task_ids is required: this model was fitted on "
                             f"{self.n_tasks_} tasks {self.tasks_.tolist()[:10]} and answers "
                             f"each row for its own task")
        task_ids = validate_task_ids(task_ids, n)
        unknown = ~np.isin(task_ids, self.tasks_)
        if unknown.any():
            raise ValueError(f"task_ids holds tasks the model was not fitted on: "
                             f"{np.unique(task_ids[unknown]).tolist()[:10]}; its tasks are "
                             f"{self.tasks_.tolist()[:10]}")
        return [np.flatnonzero(np.isin(task_ids, self.tasks_[g])) for g in self._positions], \
            task_ids

    def _check_format(self, task_ids):
        check_is_fitted(self, "estimators_")
        if self._format == "wide" and task_ids is not None:
            raise ValueError("this model was fitted on a 2-D Y (one column per task); "
                             "predict returns every task and takes no task_ids")

    def predict(self, X, task_ids=None):
        """Predicted labels, each task by its group's network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        task_ids : array-like of shape (n_samples,) or None, default=None
            The task of each row (task format); none for a 2-D ``Y``.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_tasks)
        """
        self._check_format(task_ids)
        if self._format == "single":
            return self.estimators_[0].predict(X)
        if self._format == "wide":
            columns = [None] * self.n_tasks_
            for est, group in zip(self.estimators_, self._positions):
                pred = est.predict(X)
                pred = pred.reshape(-1, 1) if pred.ndim == 1 else pred
                for k, pos in enumerate(group):
                    columns[pos] = pred[:, k]
            if len({c.dtype for c in columns}) > 1 and any(c.dtype.kind not in "biuf"
                                                            for c in columns):
                return np.array(columns, dtype=object).T
            return np.column_stack(columns)
        groups, task_ids = self._rows_by_group(X, task_ids)
        parts = []
        for est, rows in zip(self.estimators_, groups):
            if len(rows):
                parts.append((rows, est.predict(_safe_indexing(X, rows),
                                                task_ids=task_ids[rows])))
        kinds = {p.dtype.kind for _, p in parts}
        dtype = (np.result_type(*[p.dtype for _, p in parts])
                 if len(kinds) == 1 or kinds <= set("biuf") else object)
        out = np.empty(_n_rows(X), dtype=dtype)
        for rows, pred in parts:
            out[rows] = pred
        return out

    def predict_proba(self, X, task_ids=None):
        """Class probabilities, each task by its group's network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        task_ids : array-like of shape (n_samples,) or None, default=None
            The task of each row (task format); none for a 2-D ``Y``.

        Returns
        -------
        ndarray of shape (n_samples, n_classes) or list of ndarray
            Task format: probabilities over ``classes_`` (zero for labels
            the row's task does not have). 2-D ``Y``: one array per task.
        """
        self._check_format(task_ids)
        if self._format == "single":
            return self.estimators_[0].predict_proba(X)
        if self._format == "wide":
            out = [None] * self.n_tasks_
            for est, group in zip(self.estimators_, self._positions):
                proba = est.predict_proba(X)
                if len(group) == 1:
                    proba = [proba]
                for k, pos in enumerate(group):
                    out[pos] = proba[k]
            return out
        groups, task_ids = self._rows_by_group(X, task_ids)
        out = np.zeros((_n_rows(X), len(self.classes_)))
        for est, rows in zip(self.estimators_, groups):
            if len(rows):
                proba = est.predict_proba(_safe_indexing(X, rows), task_ids=task_ids[rows])
                cols = np.searchsorted(self.classes_, est.classes_)
                out[np.ix_(rows, cols)] = proba
        return out

    def score(self, X, y, task_ids=None, sample_weight=None):
        """Accuracy: of the rows (task format), or the mean over tasks (2-D ``Y``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        y : array-like of shape (n_samples,) or (n_samples, n_tasks)
            The true labels; missing labels of a 2-D ``Y`` are skipped.
        task_ids : array-like of shape (n_samples,) or None, default=None
        sample_weight : array-like of shape (n_samples,) or None, default=None

        Returns
        -------
        float
        """
        pred = self.predict(X, task_ids=task_ids)
        if self._format != "wide":
            return accuracy_score(y, pred, sample_weight=sample_weight)
        missing_label = _missing_label(self.estimators_[0])
        scores = []
        for k, col in enumerate(target_columns(y)):
            keep = ~_is_missing(col, missing_label)
            if keep.any():
                sw = None if sample_weight is None else np.asarray(sample_weight)[keep]
                p = pred[keep, k]
                c = col[keep]
                if c.dtype != object and p.dtype == object:
                    p = p.astype(c.dtype)
                scores.append(accuracy_score(c, p, sample_weight=sw))
        return float(np.mean(scores))


def _scale_epochs(est, n_all, n_group, scale):
    """Give a group trained on ``n_group`` of ``n_all`` rows as many steps as all rows."""
    epochs = est.get_params().get("max_epochs")
    if scale and isinstance(epochs, Integral) and 0 < n_group < n_all:
        est.set_params(max_epochs=max(1, int(round(epochs * n_all / n_group))))


def _n_rows(X):
    return _num_samples(X)


def _missing_label(estimator):
    return estimator.get_params().get("missing_label")
