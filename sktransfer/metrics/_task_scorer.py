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
        if average not in _AVERAGES:
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

    def __call__(self, estimator, X, y_true, task_ids=None, **kwargs):
        if kwargs:
            raise TypeError(f"{self!r} got unexpected arguments {sorted(kwargs)}")
        method = getattr(estimator, self.response_method)
        response = method(X, task_ids=task_ids) if task_ids is not None else method(X)
        y_true = np.asarray(y_true)
        if getattr(estimator, "multi_target_", False):
            from ..multitask._targets import _is_missing

            if y_true.ndim == 1:
                y_true = y_true[:, None]
            scores = []
            for k, classes in enumerate(estimator.task_classes_):
                keep = ~_is_missing(y_true[:, k], getattr(estimator, "missing_label", None))
                resp = response[k] if isinstance(response, list) else response[:, k]
                yk = y_true[keep, k]
                if yk.dtype == object:
                    yk = yk.astype(np.asarray(classes).dtype)
                if keep.any():
                    scores.append(self._metric(yk, resp[keep], classes))
            return float(np.mean(scores))
        classes = getattr(estimator, "classes_", None)
        if self.average == "samples" or task_ids is None:
            return float(self._metric(y_true, response, classes))
        task_ids = np.asarray(task_ids)
        scores = []
        for task in np.unique(task_ids):
            rows = task_ids == task
            resp = response[rows]
            task_classes = classes
            if self.response_method == "predict_proba" and hasattr(estimator, "tasks_"):
                k = int(np.searchsorted(estimator.tasks_, task))
                task_classes = estimator.task_classes_[k]
                resp = resp[:, np.searchsorted(classes, task_classes)]
            scores.append(self._metric(y_true[rows], resp, task_classes))
        return float(np.mean(scores))


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
