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
"""

import reprlib

import numpy as np

__all__ = ["average_accuracy", "backward_transfer", "forward_transfer", "forgetting"]


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
