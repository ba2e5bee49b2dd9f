"""Task-aware scorers: scikit-learn scorers that pass ``task_ids`` to the model.

scikit-learn's built-in scorers call ``estimator.predict(X)`` with nothing
else, so a model that needs each row's task cannot be scored by
``scoring="f1_macro"``. A :class:`TaskScorer` takes ``task_ids`` as
metadata (requested by default), passes it to ``predict`` /
``predict_proba``, scores each task with the metric of its kind (or one
chosen per task), and averages over tasks or over rows.

What a scorer returns
---------------------
``average="tasks"`` (the default): the unweighted mean, over the tasks that
have rows in the data scored (1-D ``y``) or labelled entries (2-D ``Y``), of
each task's score, each computed with that task's metric on that task's rows
or entries only. When the tasks are scored with different metrics (the
default on a model that mixes classification and regression tasks: accuracy
and R^2) the result is a mean of those different numbers, as the multi-task
estimators' ``score`` is; leave a kind out (``{"regression": None}``) to keep
them apart, or see each task's score with :meth:`TaskScorer.score_tasks`.
``average="samples"``: one metric computed once over all scored rows of a
1-D ``y`` (every scored task must then use the same metric); for a 2-D ``Y``
it is the per-task mean, as ``"tasks"``.
"""

import numpy as np
from sklearn.base import is_classifier
from sklearn.metrics import get_scorer
from sklearn.utils.metadata_routing import MetadataRequest
from sklearn.utils.validation import _num_samples

__all__ = ["TaskScorer", "make_task_scorer", "get_task_scorer"]

_AVERAGES = ("tasks", "samples")
_TASK_TYPES = ("classification", "regression")

#: The metric of a task of each kind when none is chosen for it.
DEFAULT_METRICS = {"classification": "accuracy", "regression": "r2"}

_FIX = ("give a metric per task type, e.g. get_task_scorer({'classification': 'accuracy', "
        "'regression': 'r2'}), or per task ({task: metric}); get_task_scorer() scores "
        "classification tasks by accuracy and regression tasks by R^2")


def _infer_task_type(score_func, response_method):
    """The kind of task a metric is for: from its response method or its module."""
    if response_method == "predict_proba":
        return "classification"
    module = getattr(score_func, "__module__", None) or ""
    if module.startswith("sklearn.metrics._classification"):
        return "classification"
    if module.startswith("sklearn.metrics._regression"):
        return "regression"
    return None


class TaskScorer:
    """Score a multi-task estimator, giving it each row's task.

    Use :func:`make_task_scorer` or :func:`get_task_scorer` to build one.
    Called as ``scorer(estimator, X, y, task_ids=None)``, like a
    scikit-learn scorer; ``task_ids`` is requested by default, so with
    metadata routing enabled ``GridSearchCV`` and ``cross_validate`` route it.
    The estimator may be a multi-task estimator, a
    :class:`~sklearn.pipeline.Pipeline` ending in one, or a fitted search
    whose best estimator is one. For a model with ``task_column``, the rows'
    tasks are read from that column of ``X``.

    A scorer holds one metric for every task (from a scorer name or a metric
    function), or one metric per task type and per task (from
    :func:`get_task_scorer` with a dict). A metric of one kind of task
    (a classification metric such as accuracy, a regression metric such as
    R^2; probabilities are for classification) given for a task of the
    other kind is an error, not a silent number.

    With ``average="tasks"`` the metric is computed on each task's rows (or,
    for a 2-D ``Y``, each task's labelled entries) and averaged, the way
    multi-task papers report; with ``"samples"`` it is computed once over all
    rows of a 1-D ``y``. See the module docstring for exactly what is
    returned.

    Parameters
    ----------
    score_func : callable
        ``score_func(y_true, y_pred, **kwargs)``.
    sign : {1, -1}, default=1
    response_method : {"predict", "predict_proba"}, default="predict"
    average : {"tasks", "samples"}, default="tasks"
    kwargs : dict or None, default=None
        Passed to ``score_func``.
    name : str or None, default=None
        Shown in messages and the repr (default: the function's name).
    task_type : {"classification", "regression"} or None, default=None
        The kind of task the metric is for; ``None`` infers it
        (probabilities, and scikit-learn's classification metrics:
        classification; scikit-learn's regression metrics: regression; any
        other function: any task).
    """

    def __init__(self, score_func, sign=1, response_method="predict", average="tasks",
                 kwargs=None, name=None, task_type=None):
        if not callable(score_func):
            raise TypeError(f"score_func must be a callable score_func(y_true, y_pred), got "
                            f"{type(score_func).__name__} {score_func!r}")
        _check_average(average)
        if response_method not in ("predict", "predict_proba"):
            raise ValueError(
                f"response_method must be 'predict' or 'predict_proba', got {response_method!r}"
            )
        if task_type is not None and task_type not in _TASK_TYPES:
            raise ValueError(f"task_type must be one of {_TASK_TYPES} or None, got {task_type!r}")
        self.score_func = score_func
        self.sign = sign
        self.response_method = response_method
        self.average = average
        self.kwargs = kwargs or {}
        self.name = name or getattr(score_func, "__name__", repr(score_func))
        self.task_type = (task_type if task_type is not None
                          else _infer_task_type(score_func, response_method))
        self._table = None  # one metric for every task

    @classmethod
    def _per_task(cls, table, average):
        """A scorer with a metric per task type and per task (``table``: key -> scorer)."""
        _check_average(average)
        scorer = cls.__new__(cls)
        scorer.score_func = None
        scorer.sign = 1
        scorer.response_method = None
        scorer.average = average
        scorer.kwargs = {}
        scorer.name = None
        scorer.task_type = None
        scorer._table = table
        return scorer

    def __repr__(self):
        if self._table is None:
            return f"TaskScorer({self.name}, average={self.average!r})"
        spec = {key: None if m is None else m.name for key, m in self._table.items()}
        return f"TaskScorer({spec!r}, average={self.average!r})"

    def get_metadata_routing(self):
        """Request ``task_ids`` for scoring (metadata routing)."""
        request = MetadataRequest(owner=self)
        request.score.add_request(param="task_ids", alias=True)
        return request

    # ---------------------------------------------------------------- metric
    def _metric(self, y_true, response, classes):
        kwargs = dict(self.kwargs)
        if self.response_method == "predict_proba":
            if (response.ndim == 2 and response.shape[1] == 2 and classes is not None
                    and len(classes) == 2):
                response = response[:, 1]
            if "labels" not in kwargs and getattr(self.score_func, "__name__", "") == "log_loss":
                kwargs["labels"] = classes
        return self.sign * self.score_func(y_true, response, **kwargs)

    def _metric_of(self, task, task_type):
        """The single-metric scorer of ``task`` (None: the task is not scored)."""
        if self._table is None:
            metric = self
        elif _hashable(task) and task in self._table:
            metric = self._table[task]
        else:
            metric = self._table.get(task_type)
        if metric is not None and metric.task_type not in (None, task_type):
            extra = (" (its class labels would be scored as numbers)"
                     if metric.task_type == "regression" else "")
            raise ValueError(f"the metric {metric.name!r} scores {metric.task_type} tasks, but "
                             f"task {task!r} is a {task_type} task{extra}; {_FIX}")
        return metric

    def _check_keys(self, tasks):
        """Every key of a per-task table is a task type or one of ``tasks``."""
        if self._table is None or tasks is None:
            return
        known = set(np.asarray(tasks).tolist())
        unknown = [key for key in self._table if key not in _TASK_TYPES and key not in known]
        if unknown:
            raise ValueError(f"the scorer names {unknown}, which is neither a task of the "
                             f"estimator nor a task type {_TASK_TYPES}; the tasks are "
                             f"{sorted(known, key=str)[:20]}")

    @staticmethod
    def _check_lengths(X, y_true, task_ids):
        """One entry per sample in X, y and task_ids (not an IndexError in the task loop)."""
        lengths = {}
        try:
            lengths["X"] = _num_samples(X)
        except TypeError:  # X of a kind sklearn cannot count (left to the estimator)
            pass
        if y_true.ndim == 0:
            raise ValueError(f"y must be an array with one entry per row of X, got the "
                             f"scalar {y_true!r}")
        lengths["y"] = y_true.shape[0]
        if task_ids is not None:
            if task_ids.ndim != 1:
                raise ValueError(f"task_ids must be 1-D, one task per row of X, got shape "
                                 f"{task_ids.shape}")
            lengths["task_ids"] = task_ids.shape[0]
        if len(set(lengths.values())) > 1:
            names = "/".join(lengths)
            found = ", ".join(f"{name} has {n}" for name, n in lengths.items())
            raise ValueError(f"The lengths of {names} differ ({found}): they must have one "
                             "entry per sample")

    # --------------------------------------------------------------- scoring
    def __call__(self, estimator, X, y_true, task_ids=None, **kwargs):
        if kwargs:
            raise TypeError(f"{self!r} got unexpected arguments {sorted(kwargs)}")
        return self._score(estimator, X, y_true, task_ids, per_task=False)

    def score_tasks(self, estimator, X, y, task_ids=None):
        """Each task's score, without averaging.

        Parameters
        ----------
        estimator : estimator
            The fitted multi-task estimator (or a pipeline or search ending in
            one), as for calling the scorer.
        X : array-like of shape (n_samples, ...)
            The samples.
        y : array-like of shape (n_samples,) or (n_samples, n_tasks)
            Their targets: 1-D with ``task_ids``, or a 2-D ``Y`` with one
            column per task.
        task_ids : array-like of shape (n_samples,) or None, default=None
            The task of each row (1-D ``y``); ``None`` for a 2-D ``Y``, a
            single task or a model with ``task_column``.

        Returns
        -------
        dict
            Task -> score, for the tasks that have rows (1-D ``y``) or
            labelled entries (2-D ``Y``) and a metric (``None`` leaves a task
            out), in the order of the fitted ``tasks_``. ``average`` is not
            used. Without task ids (a single task, or a model whose rows'
            tasks are unknown to the scorer) the one key is the task, or None.
        """
        return self._score(estimator, X, y, task_ids, per_task=True)

    def _score(self, estimator, X, y, task_ids, per_task):
        y_arr = np.asarray(y)
        tasks = None if task_ids is None else np.asarray(task_ids)
        self._check_lengths(X, y_arr, tasks)
        model = _final_estimator(estimator)
        responses = _Responses(estimator, X, task_ids)
        if getattr(model, "multi_target_", False):
            scores = self._multi_target_scores(model, responses, y)
        else:
            if tasks is None:
                tasks = _task_ids_from_X(estimator, model, X)
            scores = self._task_format_scores(model, responses, y_arr, tasks,
                                              pooled=self.average == "samples" and not per_task)
        if per_task:
            return scores
        if not scores:
            raise ValueError("There is nothing to score: X, y and task_ids are empty, or the "
                             "scorer leaves out (None) every task they hold")
        return float(np.mean(list(scores.values())))

    def _multi_target_scores(self, model, responses, y):
        from ..multitask._targets import _is_missing, target_columns

        columns = target_columns(y)
        classes_per_task = getattr(model, "task_classes_", None)
        n_tasks = getattr(model, "n_tasks_", None) or len(classes_per_task)
        n_rows = len(columns[0]) if columns else 0
        if np.ndim(y) not in (1, 2) or len(columns) != n_tasks:
            raise ValueError(f"y has shape {np.shape(y)} but the estimator was fitted on "
                             f"{n_tasks} tasks: y needs one column per task, shape "
                             f"({n_rows}, {n_tasks})")
        names = _fitted_tasks(model, n_tasks)
        self._check_keys(names)
        types = _task_types(model, n_tasks)
        classes_per_task = classes_per_task or [getattr(model, "classes_", None)] * n_tasks
        scores, labelled = {}, False
        for k, (name, col) in enumerate(zip(names, columns)):
            keep = ~_is_missing(col, getattr(model, "missing_label", None))
            labelled = labelled or bool(keep.any())
            metric = self._metric_of(name, types[k])
            if metric is None or not keep.any():
                continue
            response = responses.get(metric.response_method)
            resp = response[k] if isinstance(response, list) else response[:, k]
            yk, resp = _comparable(col[keep], resp[keep], types[k], classes_per_task[k],
                                   metric.response_method)
            scores[name] = float(metric._metric(yk, resp, classes_per_task[k]))
        if not labelled:
            raise ValueError("y has no labelled entry in any task (every entry is "
                             "missing): there is nothing to score")
        return scores

    def _task_format_scores(self, model, responses, y, task_ids, pooled):
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
        fitted = getattr(model, "tasks_", None)
        fitted = None if fitted is None else np.asarray(fitted)
        classes = getattr(model, "classes_", None)
        if task_ids is None:
            # a single task, or rows whose tasks the scorer cannot see (one group)
            names = fitted.tolist() if fitted is not None else [None]
            types = _task_types(model, len(names))
            if len(set(types)) > 1:
                raise ValueError(f"the scorer cannot tell which rows belong to which task of "
                                 f"{type(model).__name__} (its tasks are of several types, "
                                 f"{sorted(set(types))}): pass task_ids")
            task = names[0] if len(names) == 1 else None
            groups = [(task, types[0], np.ones(len(y), dtype=bool), None)]
            self._check_keys(fitted)
        else:
            self._check_keys(fitted if fitted is not None else np.unique(task_ids))
            all_types = _task_types(model, len(fitted) if fitted is not None else 1)
            task_classes = getattr(model, "task_classes_", None)
            groups = []
            for task in np.unique(task_ids):
                rows = task_ids == task
                if fitted is None:
                    groups.append((task.item(), all_types[0], rows, None))
                    continue
                k = int(np.searchsorted(fitted, task))
                if k >= len(fitted) or fitted[k] != task:
                    raise ValueError(f"task_ids holds task {task!r}, which the estimator was "
                                     f"not fitted on; its tasks are {fitted.tolist()}")
                groups.append((fitted[k].item() if hasattr(fitted[k], "item") else fitted[k],
                               all_types[k], rows,
                               None if task_classes is None else task_classes[k]))
        chosen = []
        for task, task_type, rows, own_classes in groups:
            metric = self._metric_of(task, task_type)
            if metric is not None:
                chosen.append((task, task_type, rows, own_classes, metric))
        if pooled:
            return self._pooled_score(chosen, responses, y, classes)
        scores = {}
        for task, task_type, rows, own_classes, metric in chosen:
            response = responses.get(metric.response_method)
            resp, metric_classes = response[rows], classes
            if metric.response_method == "predict_proba" and own_classes is not None:
                resp = resp[:, np.searchsorted(classes, own_classes)]
                metric_classes = own_classes
            elif own_classes is not None:
                metric_classes = own_classes
            yk, resp = _comparable(y[rows], resp, task_type, metric_classes,
                                   metric.response_method)
            scores[task] = float(metric._metric(yk, resp, metric_classes))
        return scores

    def _pooled_score(self, chosen, responses, y, classes):
        """``average="samples"``: one metric over the rows of every scored task."""
        if not chosen:
            return {}
        metrics = {id(m): m for *_, m in chosen}
        if len(metrics) > 1:
            used = {task: m.name for task, *_, m in chosen}
            raise ValueError(f"average='samples' computes one metric over all rows, but the "
                             f"tasks use different metrics {used}; use average='tasks' (the "
                             f"mean of the tasks' scores), or one metric for every task")
        metric = chosen[0][-1]
        rows = np.logical_or.reduce([c[2] for c in chosen])
        response = responses.get(metric.response_method)
        yk, resp = _comparable(y[rows], response[rows], chosen[0][1], classes,
                               metric.response_method)
        return {None: float(metric._metric(yk, resp, classes))}


class _Responses:
    """``predict`` / ``predict_proba`` of the estimator, each called once, when needed."""

    def __init__(self, estimator, X, task_ids):
        self.estimator, self.X, self.task_ids = estimator, X, task_ids
        self._cache = {}

    def get(self, method):
        if method not in self._cache:
            fn = getattr(self.estimator, method, None)
            if fn is None:
                raise ValueError(f"{type(self.estimator).__name__} has no {method}, which the "
                                 f"metric needs")
            out = fn(self.X, task_ids=self.task_ids) if self.task_ids is not None else fn(self.X)
            if not isinstance(out, list):
                try:
                    n_rows = _num_samples(self.X)
                except TypeError:
                    n_rows = None
                _check_response(out, n_rows, self.estimator, method)
            self._cache[method] = out
        return self._cache[method]


def _check_average(average):
    if not isinstance(average, str) or average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _final_estimator(estimator):
    """The multi-task model inside a Pipeline or a fitted search (or ``estimator``)."""
    for _ in range(10):
        if hasattr(estimator, "steps") and hasattr(estimator, "__getitem__"):
            estimator = estimator[-1]
        elif hasattr(estimator, "best_estimator_"):
            estimator = estimator.best_estimator_
        else:
            break
    return estimator


def _task_ids_from_X(estimator, model, X):
    """The rows' tasks from the ``task_column`` of a model that has one, else None."""
    if getattr(model, "task_column", None) is None or not hasattr(model, "_split_task_column"):
        return None
    try:
        if estimator is not model:
            if not hasattr(estimator, "steps") or estimator[-1] is not model:
                return None
            X = estimator[:-1].transform(X)
        _, task_ids = model._split_task_column(X, None)
    except Exception:  # noqa: BLE001 - predict raises the real error
        return None
    return np.asarray(task_ids)


def _fitted_tasks(model, n_tasks):
    tasks = getattr(model, "tasks_", None)
    return list(range(n_tasks)) if tasks is None else np.asarray(tasks).tolist()


def _task_types(model, n_tasks):
    """The type of each task: the fitted ``task_types_``, else the estimator's kind."""
    types = getattr(model, "task_types_", None)
    if types is not None:
        return list(types)
    kind = ("classification" if is_classifier(model) or hasattr(model, "classes_")
            else "regression")
    return [kind] * n_tasks


def _comparable(y_true, response, task_type, classes, method):
    """Targets and predictions of one task in dtypes its metric understands."""
    from ..multitask._targets import plain_array

    if task_type == "regression" and method == "predict":
        return (np.asarray(y_true, dtype=np.float64), np.asarray(response, dtype=np.float64))
    y_true = plain_array(y_true)
    dtype = None if classes is None else np.asarray(classes).dtype
    typed = dtype is not None and dtype.kind != "O"
    if y_true.dtype.kind == "O" and typed:
        y_true = y_true.astype(dtype)
    if method == "predict":
        response = plain_array(response)
        if response.dtype.kind == "O" and typed:
            response = response.astype(dtype)
    return y_true, response


def _check_response(response, n_rows, estimator, method):
    """The estimator's predictions must have one row per sample."""
    if n_rows is None:
        return
    try:
        n = _num_samples(response)
    except TypeError:
        return
    if n != n_rows:
        raise ValueError(f"{type(estimator).__name__}.{method} returned {n} rows for "
                         f"{n_rows} samples")


def make_task_scorer(score_func, *, response_method="predict", greater_is_better=True,
                     average="tasks", task_type=None, **kwargs):
    """Build a task-aware scorer from a metric, like :func:`sklearn.metrics.make_scorer`.

    Parameters
    ----------
    score_func : callable
        ``score_func(y_true, y_pred, **kwargs)``.
    response_method : {"predict", "predict_proba"}, default="predict"
    greater_is_better : bool, default=True
        ``False`` negates the score (for losses).
    average : {"tasks", "samples"}, default="tasks"
        Mean of per-task scores, or one score over all rows.
    task_type : {"classification", "regression"} or None, default=None
        The kind of task the metric is for (``None``: inferred, see
        :class:`TaskScorer`); a task of the other kind is an error. To score
        the tasks of a mixed model with this metric for one kind only, give
        it in a dict to :func:`get_task_scorer`.
    **kwargs
        Passed to ``score_func``.

    Returns
    -------
    TaskScorer

    Examples
    --------
    >>> from sklearn.metrics import balanced_accuracy_score
    >>> from sktransfer.metrics import make_task_scorer
    >>> make_task_scorer(balanced_accuracy_score)
    TaskScorer(balanced_accuracy_score, average='tasks')
    """
    return TaskScorer(score_func, sign=1 if greater_is_better else -1,
                      response_method=response_method, average=average, kwargs=kwargs,
                      task_type=task_type)


def _from_sklearn_scorer(scorer, name, average):
    method = scorer._response_method
    if isinstance(method, (list, tuple)):
        method = "predict_proba" if "predict_proba" in method else method[0]
    if method not in ("predict", "predict_proba"):
        raise ValueError(f"scorer {name!r} needs {method!r}; task scorers support scorers "
                         "based on predict or predict_proba")
    return TaskScorer(scorer._score_func, sign=scorer._sign, response_method=method,
                      average=average, kwargs=dict(scorer._kwargs), name=name)


def _metric(value, key, average):
    """One entry of a per-task table: a scorer name, a scorer, or None."""
    from sklearn.metrics._scorer import _BaseScorer

    if value is None:
        return None
    if isinstance(value, str):
        return _from_sklearn_scorer(get_scorer(value), value, average)
    if isinstance(value, TaskScorer):
        if value._table is not None:
            raise TypeError(f"the metric of {key!r} must be a single metric, got {value!r}")
        return value
    if isinstance(value, _BaseScorer):
        return _from_sklearn_scorer(value, repr(value), average)
    raise TypeError(f"the metric of {key!r} must be a scorer name (str), a TaskScorer (from "
                    f"make_task_scorer), a scikit-learn scorer (from make_scorer) or None, "
                    f"got {type(value).__name__} {value!r}")


def get_task_scorer(name=None, average="tasks"):
    """The task-aware version of scikit-learn scorer names.

    Parameters
    ----------
    name : str, dict or None, default=None
        ``None``: the metric of each task's kind, accuracy for a
        classification task and R^2 for a regression task (the same as
        ``{"classification": "accuracy", "regression": "r2"}``).

        A str: one scorer name that :func:`sklearn.metrics.get_scorer` knows
        and that works from ``predict`` or ``predict_proba`` (``"accuracy"``,
        ``"balanced_accuracy"``, ``"f1_macro"``, ``"neg_log_loss"``, ``"r2"``,
        ...), for every task. A classification metric on a regression task,
        or a regression metric on a classification task, raises a
        ``ValueError``: a model with tasks of both kinds needs a dict.

        A dict: a metric per task type (keys ``"classification"``,
        ``"regression"``) and/or per task (keys from ``tasks_``: task ids,
        or column names of a 2-D ``Y``), a task's own key winning over its
        type's. A value is a scorer name, a :class:`TaskScorer` of one metric
        (from :func:`make_task_scorer`), a scikit-learn scorer (from
        :func:`~sklearn.metrics.make_scorer`), or ``None``, which leaves those
        tasks out of the score. A type without a key gets its default metric
        (above). A key that is neither a type nor a task of the model raises
        at scoring.
    average : {"tasks", "samples"}, default="tasks"
        ``"tasks"``: the mean over the scored tasks of each task's score
        (with several metrics, the mean of those different numbers; see
        :class:`TaskScorer` and :meth:`TaskScorer.score_tasks`).
        ``"samples"``: one metric over all rows of a 1-D ``y``.

    Returns
    -------
    TaskScorer

    Examples
    --------
    >>> from sktransfer.metrics import get_task_scorer
    >>> get_task_scorer("f1_macro")
    TaskScorer(f1_macro, average='tasks')
    >>> get_task_scorer()
    TaskScorer({'classification': 'accuracy', 'regression': 'r2'}, average='tasks')
    >>> get_task_scorer({"classification": "f1_macro", "regression": None})
    TaskScorer({'classification': 'f1_macro', 'regression': None}, average='tasks')
    """
    _check_average(average)
    if name is None:
        name = {}
    if isinstance(name, str):
        return _from_sklearn_scorer(get_scorer(name), name, average)
    if not isinstance(name, dict):
        raise TypeError(f"name must be a scorer name (str), a dict from task type or task to "
                        f"metric, or None, got {type(name).__name__}")
    if any(key is None for key in name):
        raise ValueError("the keys of name are task types ('classification', 'regression') "
                         "or tasks, not None")
    table = {kind: _metric(name.get(kind, DEFAULT_METRICS[kind]), kind, average)
             for kind in _TASK_TYPES}
    table.update((key, _metric(value, key, average)) for key, value in name.items()
                 if key not in _TASK_TYPES)
    return TaskScorer._per_task(table, average)
