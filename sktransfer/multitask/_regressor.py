"""MultiTaskRegressor: several regression tasks learned by one network."""

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.metaestimators import available_if

from ..base import parameter_constraints
from ._estimator import MultiTaskMixin, shared_parameter_docs

__all__ = ["MultiTaskRegressor"]


def _has_classification_task(estimator):
    """Whether ``predict_proba`` applies: the model has (or is set to get) a class task."""
    types = getattr(estimator, "task_types_", None)
    if types is None:  # not fitted: what task_types asks for
        given = estimator.task_types
        if isinstance(given, dict):
            given = list(given.values())
        elif isinstance(given, str) or given is None:
            given = [given]
        types = list(given)
    return "classification" in types


@shared_parameter_docs
@parameter_constraints()
class MultiTaskRegressor(MultiTaskMixin, RegressorMixin, BaseEstimator):
    """Learn several regression tasks with one network.

    The same two task formats as :class:`MultiTaskClassifier`: a 1-D ``y``
    with ``task_ids`` (one task per row), or a 2-D ``Y`` with one column per
    task and NaN for a missing target. Targets are standardised per task for
    training (mean squared error) and predictions are mapped back. Every
    architecture and weighting of the multi-task family applies;
    ``"uncertainty"`` uses the Gaussian-likelihood form for regression tasks.

    ``task_types`` can make some tasks classification tasks (auxiliary
    tasks of a regression problem, or simply mixed targets): the model is
    then the same as a :class:`MultiTaskClassifier` with the same
    ``task_types``, and :meth:`predict_proba` gives the probabilities of
    those tasks in the classifier's format. A regressor without a
    classification task has no ``predict_proba`` (``hasattr`` is False), as
    scikit-learn's regressors. The two estimators differ in their default
    task type, in ``score`` and in what scikit-learn sees: a regressor, not a
    classifier (an integer ``cv`` does not stratify, and scikit-learn's own
    probability scorers such as ``scoring="neg_log_loss"`` refuse a regressor;
    :func:`sktransfer.metrics.get_task_scorer` does not).

    A column vector ``y`` of shape (n_samples, 1) is one target, raveled with
    a ``DataConversionWarning`` as in scikit-learn's neural and ensemble
    regressors; ``task_ids`` holds one task per row of ``X``.

    Parameters
    ----------
    {task_params}
    task_types : None, list or dict, default=None
        ``"regression"`` (the default for every task) or ``"classification"``
        per task, in the order of ``tasks_`` or as a dict from task to type:
        one model for mixed targets (see :class:`MultiTaskClassifier`); the
        classification tasks have probabilities (:meth:`predict_proba`).
    {network_params}
    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained net, with per-task losses and weights per epoch in
        ``net_.history``.
    tasks_ : ndarray
    n_tasks_ : int
    task_types_ : list of str
    task_classes_ : list of ndarray or None
        The labels of each task (None for a regression task).
    classes_ : ndarray or list of ndarray
        Only with a classification task, as in :class:`MultiTaskClassifier`:
        task format, all labels of the classification tasks (the columns of
        ``predict_proba``); 2-D ``Y``, ``task_classes_``.
    multi_target_ : bool
    n_features_in_ : int
    input_shape_ : tuple

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.multitask import MultiTaskRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.randn(300, 3)
    >>> Y = np.column_stack([X[:, 0] + X[:, 1], X[:, 0] - X[:, 2]])
    >>> Y[rng.rand(*Y.shape) < 0.2] = np.nan          # missing targets
    >>> reg = MultiTaskRegressor(max_epochs=60, lr=1e-2, random_state=0).fit(X, Y)
    >>> reg.predict(X[:2]).shape
    (2, 2)
    >>> reg.score(X, Y) > 0.9
    True
    >>> hasattr(reg, "predict_proba")                 # no classification task
    False
    """

    _default_task_type = "regression"

    __metadata_request__predict_proba = {"task_ids": True}

    def __init__(
        self,
        architecture="hard",
        weighting="equal",
        task_weights=None,
        task_column=None,
        missing_label=None,
        task_types=None,
        module=None,
        hidden_layer_sizes=(100,),
        optimizer=torch.optim.Adam,
        lr=1e-3,
        max_epochs=20,
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
        precision="fp32",
        accelerator=None,
    ):
        self.architecture = architecture
        self.weighting = weighting
        self.task_weights = task_weights
        self.task_column = task_column
        self.missing_label = missing_label
        self.task_types = task_types
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
        self.precision = precision
        self.accelerator = accelerator

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.required = True
        return tags

    def _prediction_dtype(self):
        return np.float64 if all(tp == "regression" for tp in self.task_types_) else object

    def predict(self, X, task_ids=None):
        """Predicted targets: (n_samples,) in the task format, (n_samples, n_tasks) for 2-D Y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            Samples of the shape the model was fitted on (with the task
            column, for a model with ``task_column``).
        task_ids : array-like of shape (n_samples,) or None, default=None
            The task of each row (task format). Needed by a model of several
            tasks unless it has ``task_column``; a model fitted on a 2-D
            ``Y`` takes none.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_tasks)
            Task format: each row's prediction for its own task. 2-D ``Y``:
            one column per task. float64 when every task is a regression
            task; the labels of classification tasks can make it an object
            array.
        """
        pred = self._predict(X, task_ids)
        return pred.astype(np.float64) if pred.dtype.kind == "f" else pred

    @available_if(_has_classification_task)
    def predict_proba(self, X, task_ids=None):
        """Class probabilities of the classification tasks (see ``task_types``).

        Only when a task is a classification task; the format is
        :meth:`MultiTaskClassifier.predict_proba`'s.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            Samples of the shape the model was fitted on (with the task
            column, for a model with ``task_column``).
        task_ids : array-like of shape (n_samples,) or None, default=None
            The task of each row (task format). Needed by a model of several
            tasks unless it has ``task_column``; a model fitted on a 2-D
            ``Y`` takes none.

        Returns
        -------
        ndarray of shape (n_samples, n_classes) or list of ndarray
            Task format: probabilities over ``classes_`` (zero for labels the
            row's task does not have; NaN for rows of a regression task).
            2-D ``Y``: one (n_samples, n_classes_t) array per task, None for a
            regression task.
        """
        return self._predict_proba(X, task_ids)

    def score(self, X, y, task_ids=None, sample_weight=None):
        """Mean over tasks of each task's R^2 on its labelled rows.

        A single task gives scikit-learn's usual ``r2_score``. A
        classification task (see ``task_types``) is scored by its accuracy,
        which this mean then includes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            Test samples of the shape the model was fitted on (with the task
            column, for a model with ``task_column``).
        y : array-like of shape (n_samples,) or (n_samples, n_tasks)
            The true targets, in the format the model was fitted on (missing
            targets of a 2-D ``Y`` are skipped).
        task_ids : array-like of shape (n_samples,) or None, default=None
            The task of each row (task format). Needed by a model of several
            tasks unless it has ``task_column``; a model fitted on a 2-D
            ``Y`` takes none.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Weight of each row in every task's score.

        Returns
        -------
        float
            The mean of the tasks' scores.
        """
        return float(np.nanmean(self._task_scores(X, y, task_ids, sample_weight)))
