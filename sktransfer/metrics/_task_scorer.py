"""Task-aware scorers: scikit-learn scorers that pass ``task_ids`` to the model.

scikit-learn's built-in scorers call ``estimator.predict(X)`` with nothing
else, so a model that needs each row's task cannot be scored by
``scoring="f1_macro"``. A :class:`TaskScorer` takes ``task_ids`` as
metadata (requested by default), passes it to ``predict`` /
``predict_proba``, and averages the metric over tasks or over rows.
"""

import numpy as np
from sklearn.metrics import get_scorer
from sklearn.utils.metadata_routing import MetadataRequest
from sklearn.utils.validation import _num_samples

__all__ = ["TaskScorer", "make_task_scorer", "get_task_scorer"]

_AVERAGES = ("tasks", "samples")


class TaskScorer:
    """Score a multi-task estimator, giving it each row's task.

    Use :func:`make_task_scorer` or :func:`get_task_scorer` to build one.
    Called as ``scorer(estimator, X, y, task_ids=None)``, like a
    scikit-learn scorer; ``task_ids`` is requested by default, so with
    metadata routing enabled ``GridSearchCV`` and ``cross_validate`` route it.

    With ``average="tasks"`` the metric is computed on each task's rows (or,
    for a 2-D ``Y``, each task's labelled entries) and averaged, the way
    multi-task papers report; with ``"samples"`` it is computed once over all
    rows of a 1-D ``y``.
    """

    def __init__(self, score_func, sign=1, response_method="predict", average="tasks",
                 kwargs=None, name=None):
        if not callable(score_func):
            raise TypeError(f"score_func must be a callable score_func(y_true, y_pred), got "
                            f"{type(score_func).__name__} {score_func!r}")
        if not isinstance(average, str) or average not in _AVERAGES:
            raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
        if response_method not in ("predict", "predict_proba"):
            raise ValueError(
                f"response_method must be 'predict' or 'predict_proba', got {response_method!r}"
            )
        self.score_func = score_func
        self.sign = sign
        self.response_method = response_method
        self.average = average
        self.kwargs = kwargs or {}
        self.name = name or getattr(score_func, "__name__", repr(score_func))

    def __repr__(self):
        return f"TaskScorer({self.name}, average={self.average!r})"

    def get_metadata_routing(self):
        """Request ``task_ids`` for scoring (metadata routing)."""
        request = MetadataRequest(owner=self)
        request.score.add_request(param="task_ids", alias=True)
        return request

    def _metric(self, y_true, response, classes):
        kwargs = dict(self.kwargs)
        if self.response_method == "predict_proba":
            if response.ndim == 2 and response.shape[1] == 2 and len(classes) == 2:
                response = response[:, 1]
            if "labels" not in kwargs and getattr(self.score_func, "__name__", "") == "log_loss":
                kwargs["labels"] = classes
        return self.sign * self.score_func(y_true, response, **kwargs)

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

    def __call__(self, estimator, X, y_true, task_ids=None, **kwargs):
        if kwargs:
            raise TypeError(f"{self!r} got unexpected arguments {sorted(kwargs)}")
        y_true = np.asarray(y_true)
        tasks = None if task_ids is None else np.asarray(task_ids)
        self._check_lengths(X, y_true, tasks)
        method = getattr(estimator, self.response_method)
        response = method(X, task_ids=task_ids) if task_ids is not None else method(X)
        task_ids = tasks
        n_rows = y_true.shape[0]
        if getattr(estimator, "multi_target_", False):
            from ..multitask._targets import _is_missing

            if y_true.ndim == 1:
                y_true = y_true[:, None]
            n_tasks = len(estimator.task_classes_)
            if y_true.ndim != 2 or y_true.shape[1] != n_tasks:
                raise ValueError(f"y has shape {y_true.shape} but the estimator was fitted on "
                                 f"{n_tasks} tasks: y needs one column per task, shape "
                                 f"({n_rows}, {n_tasks})")
            scores = []
            for k, classes in enumerate(estimator.task_classes_):
                keep = ~_is_missing(y_true[:, k], getattr(estimator, "missing_label", None))
                resp = response[k] if isinstance(response, list) else response[:, k]
                yk = y_true[keep, k]
                if yk.dtype == object:
                    yk = yk.astype(np.asarray(classes).dtype)
                if keep.any():
                    scores.append(self._metric(yk, resp[keep], classes))
            if not scores:
                raise ValueError("y has no labelled entry in any task (every entry is "
                                 "missing): there is nothing to score")
            return float(np.mean(scores))
        _check_response(response, n_rows, estimator, self.response_method)
        classes = getattr(estimator, "classes_", None)
        if self.average == "samples" or task_ids is None:
            return float(self._metric(y_true, response, classes))
        scores = []
        for task in np.unique(task_ids):
            rows = task_ids == task
            resp = response[rows]
            task_classes = classes
            if self.response_method == "predict_proba" and hasattr(estimator, "tasks_"):
                fitted_tasks = np.asarray(estimator.tasks_)
                k = int(np.searchsorted(fitted_tasks, task))
                if k >= len(fitted_tasks) or fitted_tasks[k] != task:
                    raise ValueError(f"task_ids holds task {task!r}, which the estimator was "
                                     f"not fitted on; its tasks are {fitted_tasks.tolist()}")
                task_classes = estimator.task_classes_[k]
                resp = resp[:, np.searchsorted(classes, task_classes)]
            scores.append(self._metric(y_true[rows], resp, task_classes))
        if not scores:
            raise ValueError("There is nothing to score: X, y and task_ids are empty")
        return float(np.mean(scores))


def _check_response(response, n_rows, estimator, method):
    """The estimator's predictions must have one row per sample."""
    try:
        n = _num_samples(response)
    except TypeError:
        return
    if n != n_rows:
        raise ValueError(f"{type(estimator).__name__}.{method} returned {n} rows for "
                         f"{n_rows} samples")


def make_task_scorer(score_func, *, response_method="predict", greater_is_better=True,
                     average="tasks", **kwargs):
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
                      response_method=response_method, average=average, kwargs=kwargs)


def get_task_scorer(name, average="tasks"):
    """The task-aware version of a scikit-learn scorer name.

    Parameters
    ----------
    name : str
        Any scorer name that :func:`sklearn.metrics.get_scorer` knows and that
        works from ``predict`` or ``predict_proba`` (``"accuracy"``,
        ``"balanced_accuracy"``, ``"f1_macro"``, ``"neg_log_loss"``, ...).
    average : {"tasks", "samples"}, default="tasks"

    Returns
    -------
    TaskScorer

    Examples
    --------
    >>> from sktransfer.metrics import get_task_scorer
    >>> get_task_scorer("f1_macro")
    TaskScorer(f1_macro, average='tasks')
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a scorer name (str), got {type(name).__name__}")
    scorer = get_scorer(name)
    method = scorer._response_method
    if isinstance(method, (list, tuple)):
        method = "predict_proba" if "predict_proba" in method else method[0]
    if method not in ("predict", "predict_proba"):
        raise ValueError(f"scorer {name!r} needs {method!r}; task scorers support scorers "
                         "based on predict or predict_proba")
    return TaskScorer(scorer._score_func, sign=scorer._sign, response_method=method,
                      average=average, kwargs=dict(scorer._kwargs), name=name)
