"""MultiTaskClassifier: several classification tasks learned by one network."""

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import accuracy_score

from .._weights import CLASS_WEIGHT_CONSTRAINT
from ..base import parameter_constraints
from ._estimator import MultiTaskMixin, shared_parameter_docs

__all__ = ["MultiTaskClassifier"]


@shared_parameter_docs
@parameter_constraints(class_weight=[*CLASS_WEIGHT_CONSTRAINT, list, tuple])
class MultiTaskClassifier(MultiTaskMixin, ClassifierMixin, BaseEstimator):
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
    classifier; a column vector ``y`` of shape (n_samples, 1) is raveled with
    a ``DataConversionWarning``, as scikit-learn's classifiers do. A
    DataFrame ``Y`` names the tasks by its columns, each keeping its dtype
    (numeric and string tasks can share a frame).

    ``task_ids`` holds one task per row of ``X`` (a single value is an
    error: pass ``np.full(len(X), task)``). A model of several tasks needs
    them at ``predict``, ``predict_proba`` and ``score`` too; its error
    without them says how searches get them (metadata routing,
    ``task_column=``, :func:`sktransfer.metrics.get_task_scorer`).

    With NaN for missing labels, give ``GridSearchCV`` and ``cross_validate``
    an explicit splitter (``cv=KFold(3)``): with an integer ``cv``
    scikit-learn inspects a classifier's target to stratify and rejects NaN.
    ``missing_label=-1`` with integer labels avoids this.

    ``task_ids`` is per-sample metadata requested by default by ``fit``,
    ``partial_fit``, ``predict``, ``predict_proba`` and ``score``: with
    ``sklearn.set_config(enable_metadata_routing=True)`` it flows through
    ``Pipeline``, ``GridSearchCV`` and ``cross_validate``.

    Parameters
    ----------
    {task_params}
    task_types : None, list or dict, default=None
        ``"classification"`` (the default for every task) or ``"regression"``
        per task, in the order of ``tasks_`` or as a dict from task to type:
        one model for mixed targets. A regression task is predicted as a
        float (trained with mean squared error on the standardised target),
        has no ``predict_proba`` entry, and is scored by R^2.
        :class:`MultiTaskRegressor` with the same ``task_types`` is the same
        model (with the regressor's ``score`` and scikit-learn role).
    class_weight : None, "balanced", dict or list, default=None
        Weights of the classes in the loss, multiplied with ``sample_weight``
        of ``fit``: ``"balanced"`` weighs each class of each classification
        task by ``n_rows / (n_classes * count)`` over that task's labelled
        rows (as scikit-learn's ``compute_class_weight``); a dict from label
        to weight (labels not in it weigh 1) for a model with one
        classification task; for several tasks, a dict from task to
        ``"balanced"`` or to such a dict (tasks not in it are unweighted), or
        a list aligned with ``tasks_``. ``partial_fit`` takes dicts only
        (``"balanced"`` needs the whole target). Regression tasks have no
        class weights.
    {network_params}
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
    task_classes_ : list of ndarray or None
        The labels of each task (None for a regression task).
    task_types_ : list of str
        ``"classification"`` or ``"regression"`` per task.
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

    __metadata_request__predict_proba = {"task_ids": True}

    def __init__(
        self,
        architecture="hard",
        weighting="equal",
        task_weights=None,
        task_column=None,
        missing_label=None,
        task_types=None,
        class_weight=None,
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
        self.class_weight = class_weight
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

    _classes_always = True

    def _prediction_dtype(self):
        if any(tp == "regression" for tp in self.task_types_):
            return object if self.classes_.dtype.kind not in "biuf" else np.float64
        return self.classes_.dtype

    def predict_proba(self, X, task_ids=None):
        """Class probabilities.

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
            2-D ``Y``: one (n_samples, n_classes_t) array per task (None for a
            regression task), as :class:`~sklearn.multioutput.MultiOutputClassifier`.
        """
        return self._predict_proba(X, task_ids)

    def predict(self, X, task_ids=None):
        """Predicted labels: (n_samples,) in the task format, (n_samples, n_tasks) for 2-D Y.

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
            Task format: each row's label for its own task (a float for a
            row of a regression task). 2-D ``Y``: one column per task.
        """
        return self._predict(X, task_ids)

    def score(self, X, y, task_ids=None, sample_weight=None):
        """Accuracy.

        Task format: the fraction of rows predicted right (each for its own
        task). 2-D ``Y``, or any regression task: the mean over tasks of each
        task's accuracy (R^2 for a regression task) on its labelled rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            Test samples of the shape the model was fitted on (with the task
            column, for a model with ``task_column``).
        y : array-like of shape (n_samples,) or (n_samples, n_tasks)
            The true labels, in the format the model was fitted on (missing
            labels of a 2-D ``Y`` are skipped).
        task_ids : array-like of shape (n_samples,) or None, default=None
            The task of each row (task format). Needed by a model of several
            tasks unless it has ``task_column``; a model fitted on a 2-D
            ``Y`` takes none.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Weight of each row in the accuracy (and in every task's score).

        Returns
        -------
        float
            The accuracy, or the mean of the tasks' scores.
        """
        if not self.multi_target_ and "regression" not in self.task_types_:
            pred = self.predict(X, task_ids=task_ids)
            return accuracy_score(y, pred, sample_weight=sample_weight)
        return float(np.nanmean(self._task_scores(X, y, task_ids, sample_weight)))
