"""Continual-learning metrics from the accuracy matrix.

``R`` is the (T, T) accuracy matrix of a task sequence: ``R[i, j]`` is the
accuracy on the test set of task ``j`` after learning tasks ``0 .. i``
(``ContinualClassifier.fit(..., eval_tasks=...)`` records it as
``accuracy_matrix_``). Indices below are 1-based as in the papers: ``R[i, j]``
with ``i, j = 1 .. T``.

Backward and forward transfer and forgetting average over the ``T - 1``
tasks for which they are defined, as in the papers' definitions (the
reference code of GEM divides by ``T``, which shrinks them by
``(T - 1) / T``).

:func:`reference_accuracies` computes the reference accuracies ``b_j`` that
:func:`forward_transfer` compares with.
"""

import inspect
import reprlib

import numpy as np

__all__ = ["average_accuracy", "backward_transfer", "forward_transfer", "forgetting",
           "reference_accuracies"]


def _as_floats(values, name, what):
    """``values`` as a float array; a ragged or non-numeric input names ``name``."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:  # TypeError (complex numbers) stays a TypeError
        error = TypeError if isinstance(exc, TypeError) else ValueError
        raise error(f"{name} must be {what} of numbers, got {reprlib.repr(values)} "
                    f"({exc})") from exc
    if np.isinf(array).any():
        where = [tuple(int(i) for i in idx) for idx in np.argwhere(np.isinf(array))[:3]]
        raise ValueError(f"{name} holds infinite values (at {where}); accuracies must be "
                         "finite numbers (NaN marks an entry that was not measured)")
    return array


def _check_R(R, name="R"):
    R = _as_floats(R, name, "a square (T, T) accuracy matrix")
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] == 0:
        raise ValueError(f"{name} must be a square (T, T) accuracy matrix, got shape {R.shape}")
    return R


def _check_lower(R, what):
    T = R.shape[0]
    lower = R[np.tril_indices(T)]
    if np.isnan(lower).any():
        raise ValueError(f"{what} needs R[i, j] for every j <= i; the accuracy matrix has NaN "
                         "entries on or below the diagonal")


def average_accuracy(R):
    """Average accuracy after the last task (Lopez-Paz and Ranzato, 2017).

    .. math:: \\mathrm{ACC} = \\frac{1}{T} \\sum_{j=1}^{T} R_{T, j}

    Parameters
    ----------
    R : array-like of shape (T, T)
        Accuracy matrix, ``R[i, j]`` the accuracy on task ``j`` after task ``i``.

    Returns
    -------
    float

    Examples
    --------
    >>> from sktransfer.metrics import average_accuracy
    >>> average_accuracy([[0.9, 0.1], [0.6, 0.8]])
    0.7
    """
    R = _check_R(R)
    last = R[-1]
    if np.isnan(last).any():
        raise ValueError("average_accuracy needs the whole last row of R (no NaN)")
    return float(np.round(last.mean(), 12))


def backward_transfer(R):
    """Backward transfer (Lopez-Paz and Ranzato, 2017): change on old tasks.

    .. math:: \\mathrm{BWT} = \\frac{1}{T-1} \\sum_{j=1}^{T-1} (R_{T, j} - R_{j, j})

    Negative values are forgetting. Defined for ``T >= 2``.

    Parameters
    ----------
    R : array-like of shape (T, T)

    Returns
    -------
    float

    Examples
    --------
    >>> from sktransfer.metrics import backward_transfer
    >>> backward_transfer([[0.9, 0.1], [0.6, 0.8]])
    -0.3
    """
    R = _check_R(R)
    T = R.shape[0]
    if T < 2:
        raise ValueError("backward_transfer needs at least 2 tasks")
    _check_lower(R, "backward_transfer")
    return float(np.round(np.mean(R[-1, :-1] - np.diag(R)[:-1]), 12))


def forward_transfer(R, reference, *, after_learning=False):
    """Forward transfer: how much earlier tasks help with a later one.

    With ``after_learning=False`` (Lopez-Paz and Ranzato, 2017), the accuracy
    on each task *before* learning it, against a model that knows nothing of
    the sequence (GEM uses the network at its random initialisation):

    .. math:: \\mathrm{FWT} = \\frac{1}{T-1} \\sum_{j=2}^{T} (R_{j-1, j} - b_j)

    With ``after_learning=True``, the accuracy on each task just *after*
    learning it, against a model trained from scratch on that task alone
    (positive when the earlier tasks made the new one easier to learn):

    .. math:: \\mathrm{FWT} = \\frac{1}{T-1} \\sum_{j=2}^{T} (R_{j, j} - b_j)

    The first task has no earlier task and is left out of both. Defined for
    ``T >= 2``.

    Parameters
    ----------
    R : array-like of shape (T, T)
    reference : array-like of shape (T,)
        ``b_j`` for every task (``b_1`` is not used).
    after_learning : bool, default=False
        Which of the two definitions above.

    Returns
    -------
    float

    See Also
    --------
    reference_accuracies : ``b_j`` of either definition, from the estimator:
        ``kind="untrained"`` for ``after_learning=False``, ``kind="independent"``
        for ``after_learning=True``.

    Examples
    --------
    >>> from sktransfer.metrics import forward_transfer
    >>> forward_transfer([[0.9, 0.3], [0.6, 0.8]], reference=[0.1, 0.1])
    0.2
    >>> forward_transfer([[0.9, 0.3], [0.6, 0.8]], reference=[0.9, 0.7], after_learning=True)
    0.1
    """
    R = _check_R(R)
    T = R.shape[0]
    if T < 2:
        raise ValueError("forward_transfer needs at least 2 tasks")
    b = _as_floats(reference, "reference", "an array (one accuracy per task)")
    if b.size != T:
        raise ValueError(f"reference must hold one accuracy per task ({T}), got shape {b.shape}")
    b = b.ravel()
    if np.isnan(b[1:]).any():
        missing = (np.flatnonzero(np.isnan(b[1:])) + 1).tolist()
        raise ValueError(f"reference holds NaN for tasks {missing} (0-based); forward_transfer "
                         "needs b_j for every task but the first")
    if after_learning:
        acc = np.diag(R)[1:]
        if np.isnan(acc).any():
            raise ValueError("forward_transfer needs the diagonal R[j, j]; it has NaN entries")
    else:
        acc = np.array([R[j - 1, j] for j in range(1, T)])
        if np.isnan(acc).any():
            raise ValueError("forward_transfer needs R[j - 1, j] (the accuracy on each task "
                             "before learning it), which is NaN here (e.g. the task scenario, "
                             "where a task has no head before it is learned); use "
                             "after_learning=True with a from-scratch reference")
    return float(np.round(np.mean(acc - b[1:]), 12))


def forgetting(R):
    """Average forgetting (Chaudhry et al., 2018).

    The forgetting of task ``j`` after the last task is the drop from its
    best accuracy before the last task,

    .. math:: f_j = \\max_{l \\in \\{1, \\dots, T-1\\}} R_{l, j} - R_{T, j},
              \\qquad
              F = \\frac{1}{T-1} \\sum_{j=1}^{T-1} f_j

    (only ``l >= j``: the task must have been learned). Defined for
    ``T >= 2``.

    Parameters
    ----------
    R : array-like of shape (T, T)

    Returns
    -------
    float

    Examples
    --------
    >>> from sktransfer.metrics import forgetting
    >>> forgetting([[0.9, 0.1, 0.1], [0.7, 0.8, 0.1], [0.5, 0.6, 0.9]])
    0.3
    """
    R = _check_R(R)
    T = R.shape[0]
    if T < 2:
        raise ValueError("forgetting needs at least 2 tasks")
    _check_lower(R, "forgetting")
    f = [R[j:T - 1, j].max() - R[T - 1, j] for j in range(T - 1)]
    return float(np.round(np.mean(f), 12))


_REFERENCE_KINDS = ("untrained", "independent")


def _accepts(method, name):
    try:
        return name in inspect.signature(method).parameters
    except (TypeError, ValueError):  # pragma: no cover - no signature (a C method)
        return False


def reference_accuracies(estimator, X, y, task_ids, eval_tasks, *, kind="untrained"):
    """The reference accuracies ``b_j`` of :func:`forward_transfer`, one per task.

    For each task ``j`` of the sequence, a fresh :func:`sklearn.base.clone`
    of ``estimator`` (unfitted, with the same hyperparameters) is given the
    training rows of task ``j`` alone, and scored on the test set of task
    ``j``: ``b_j = clone.fit(X_j, y_j).score(X_test_j, y_test_j)``. ``kind``
    chooses between the two references of :func:`forward_transfer`:

    ``"untrained"`` (for ``forward_transfer(R, b)``, ``after_learning=False``)
        The accuracy of the network at its random initialisation, the ``b_j``
        of Lopez-Paz and Ranzato (2017, GEM; "the vector of test accuracies
        for each task at random initialization"). The clone is fitted with
        ``max_epochs=0``: it builds its network and the head (and class mask)
        of task ``j`` from task ``j``'s data, but takes no training step.
        Expect about chance level for the classes the model predicts among.
    ``"independent"`` (for ``forward_transfer(R, b, after_learning=True)``)
        The accuracy of the model trained from scratch on task ``j`` alone,
        with the estimator's own ``max_epochs``: the single-task baseline
        that ``R[j, j]`` is compared with.

    The clones keep the estimator's ``random_state``: with an integer seed
    every reference is reproducible (and ``"untrained"`` starts from the same
    kind of initialisation as a ``fit`` of the sequence).

    Parameters
    ----------
    estimator : estimator
        The (fitted or not) estimator whose accuracy matrix ``R`` is
        evaluated, e.g. a :class:`~sktransfer.continual.ContinualClassifier`.
        It is not changed. Any scikit-learn classifier works with
        ``kind="independent"`` (``task_ids`` are passed to ``fit`` and
        ``score`` only when they accept them); ``kind="untrained"`` needs a
        ``max_epochs`` hyperparameter.
    X : array-like of shape (n_samples, ...)
    y : array-like of shape (n_samples,)
        The training sequence, as given to ``ContinualClassifier.fit``.
    task_ids : array-like of shape (n_samples,) or None
        The task of each row; tasks are taken in the order in which they
        first appear (the order of ``fit``). ``None`` makes one task of all
        rows.
    eval_tasks : list of (X_j, y_j)
        One test set per task, in that order (the ``eval_tasks`` of
        ``ContinualClassifier.fit``, which builds ``R`` on the same sets).
    kind : {"untrained", "independent"}, default="untrained"
        Which reference, see above. The default matches the default
        ``after_learning=False`` of :func:`forward_transfer`.

    Returns
    -------
    ndarray of shape (T,)
        ``b_j``, the score (accuracy, for a classifier) of each task's
        reference model on that task's test set; ``b_1`` is computed as well,
        though :func:`forward_transfer` does not use it.

    Notes
    -----
    In the ``"class"`` scenario a model cannot predict classes it has not
    seen, so ``R[j - 1, j]`` is 0 for split tasks of disjoint classes and
    forward transfer before learning measures little there; in the
    ``"task"`` scenario it is not defined (NaN). Use ``kind="independent"``
    with ``after_learning=True`` for those.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.continual import ContinualClassifier
    >>> from sktransfer.datasets import make_split_tasks
    >>> from sktransfer.metrics import forward_transfer, reference_accuracies
    >>> X, y = load_digits(return_X_y=True)
    >>> Xs, ys, t = make_split_tasks(X / 16, y, n_tasks=3)
    >>> test = np.arange(len(ys)) % 4 == 0  # a quarter of each task held out
    >>> eval_tasks = [(Xs[test & (t == k)], ys[test & (t == k)]) for k in range(3)]
    >>> train = Xs[~test], ys[~test], t[~test]
    >>> clf = ContinualClassifier(hidden_layer_sizes=(16,), max_epochs=3, lr=0.01,
    ...                           random_state=0)
    >>> R = clf.fit(*train[:2], task_ids=train[2], eval_tasks=eval_tasks).accuracy_matrix_
    >>> scratch = reference_accuracies(clf, *train, eval_tasks, kind="independent")
    >>> scratch.shape, bool((scratch > 0.5).all())
    ((3,), True)
    >>> fwt = forward_transfer(R, scratch, after_learning=True)
    >>> untrained = reference_accuracies(clf, *train, eval_tasks, kind="untrained")
    >>> fwt_before = forward_transfer(R, untrained)  # GEM's definition
    """
    from sklearn.base import clone
    from sklearn.utils import _safe_indexing

    if kind not in _REFERENCE_KINDS:
        raise ValueError(f"kind must be one of {_REFERENCE_KINDS}, got {kind!r}")
    n = len(y)
    if task_ids is None:
        task_ids = np.zeros(n, dtype=np.int64)
    task_ids = np.asarray(task_ids)
    if task_ids.ndim != 1 or task_ids.shape[0] != n:
        raise ValueError(f"task_ids must hold one task per sample ({n}), got shape "
                         f"{task_ids.shape}")
    _, first = np.unique(task_ids, return_index=True)
    order = task_ids[np.sort(first)]
    eval_tasks = list(eval_tasks)
    if len(eval_tasks) != len(order):
        raise ValueError(f"eval_tasks has {len(eval_tasks)} test sets but there are "
                         f"{len(order)} tasks; pass one (X, y) pair per task, in the order "
                         "the tasks first appear in task_ids")
    for j, pair in enumerate(eval_tasks):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"eval_tasks[{j}] must be an (X, y) pair")
    if kind == "untrained" and "max_epochs" not in clone(estimator).get_params():
        raise ValueError(f'kind="untrained" needs an estimator with a max_epochs parameter '
                         f"(it is fitted with max_epochs=0); {type(estimator).__name__} has "
                         'none: use kind="independent"')
    y = np.asarray(y)
    reference = np.empty(len(order))
    for j, task in enumerate(order):
        model = clone(estimator)
        if kind == "untrained":
            model.set_params(max_epochs=0)
        rows = np.flatnonzero(task_ids == task)
        task_id = task.item() if isinstance(task, np.generic) else task
        if _accepts(model.fit, "task_ids"):
            model.fit(_safe_indexing(X, rows), y[rows], task_ids=task_ids[rows])
        else:
            model.fit(_safe_indexing(X, rows), y[rows])
        Xj, yj = eval_tasks[j]
        if _accepts(model.score, "task_ids"):
            reference[j] = model.score(Xj, yj, task_ids=task_id)
        else:
            reference[j] = model.score(Xj, yj)
    return reference
