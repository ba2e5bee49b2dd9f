"""Validation and encoding of multi-task targets and task ids.

Two formats (DESIGN.md section 4):

* ``"task_ids"``: 1-D ``y`` with one task id per row; each task has its own
  label set.
* ``"multi_target"``: 2-D ``Y`` of shape (n_samples, n_tasks), one column per
  task; a missing label is NaN/None (or ``missing_label``).
"""

import numpy as np
from sklearn.utils import column_or_1d
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import _assert_all_finite, check_consistent_length


def _is_missing(col, missing_label):
    if col.dtype.kind == "f":
        mask = np.isnan(col)
    elif col.dtype == object:
        mask = np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in col],
                        dtype=bool)
    else:
        mask = np.zeros(col.shape, dtype=bool)
    if missing_label is not None and not (
        isinstance(missing_label, float) and np.isnan(missing_label)
    ):
        mask |= col == missing_label
    return mask


def validate_task_ids(task_ids, n_samples):
    """Return task ids as a 1-D array, or raise a ValueError naming the problem."""
    task_ids = column_or_1d(np.asarray(task_ids, dtype=None if not hasattr(task_ids, "dtype")
                                       else task_ids.dtype), warn=True)
    if task_ids.shape[0] != n_samples:
        raise ValueError(
            f"task_ids has {task_ids.shape[0]} entries but X has {n_samples} samples"
        )
    if task_ids.dtype.kind == "f" and not np.all(np.isfinite(task_ids)):
        raise ValueError("task_ids contains NaN or infinity")
    if task_ids.dtype == object and any(t is None for t in task_ids):
        raise ValueError("task_ids contains None")
    return task_ids


def encode_task_ids(task_ids, tasks):
    """Map task ids to 0..T-1 given the fitted ``tasks``; unseen ids raise."""
    idx = np.searchsorted(tasks, task_ids)
    idx = np.clip(idx, 0, len(tasks) - 1)
    unseen = tasks[idx] != task_ids
    if np.any(unseen):
        unseen_ids = sorted(set(task_ids[unseen].tolist()))[:10]
        raise ValueError(
            f"task_ids contains tasks not seen in fit: {unseen_ids}; "
            f"the fitted tasks are {tasks.tolist()[:20]}"
        )
    return idx.astype(np.int64)


def encode_task_format(y, task_ids, n_samples):
    """Encode 1-D ``y`` with per-row task ids.

    Returns ``(y_local, t_enc, tasks, task_classes, classes)`` where
    ``y_local`` are labels indexed within each task's own classes.
    """
    y = column_or_1d(y, warn=True)
    check_consistent_length(np.empty(n_samples), y)
    if y.dtype.kind in "fc":
        _assert_all_finite(y, input_name="y")
    check_classification_targets(y)
    if task_ids is None:
        t = np.zeros(n_samples, dtype=np.int64)
        tasks = np.array([0])
    else:
        task_ids = validate_task_ids(task_ids, n_samples)
        tasks, t = np.unique(task_ids, return_inverse=True)
    classes = np.unique(y)
    y_local = np.empty(n_samples, dtype=np.int64)
    task_classes = []
    for k in range(len(tasks)):
        rows = t == k
        cls, inv = np.unique(y[rows], return_inverse=True)
        y_local[rows] = inv
        task_classes.append(cls)
    return y_local, t.astype(np.int64), tasks, task_classes, classes


def encode_multi_target(Y, missing_label):
    """Encode a 2-D target with one column per task and missing labels.

    Returns ``(Y_local, tasks, task_classes)``; ``Y_local`` is (n, T) int64
    with -1 where the label is missing.
    """
    tasks = np.asarray(Y.columns) if hasattr(Y, "columns") else None
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ValueError(f"Y must be 1-D or 2-D, got shape {Y.shape}")
    n, T = Y.shape
    if T == 0:
        raise ValueError("Y has no columns (no tasks)")
    if tasks is None:
        tasks = np.arange(T)
    if Y.dtype.kind == "c" or (Y.dtype.kind == "f" and np.isinf(Y).any()):
        raise ValueError("Y contains infinity or complex values")
    Y_local = np.full((n, T), -1, dtype=np.int64)
    task_classes = []
    for j in range(T):
        col = Y[:, j]
        name = tasks.tolist()[j]
        missing = _is_missing(col, missing_label)
        labelled = col[~missing]
        if labelled.size == 0:
            raise ValueError(
                f"task {name!r} (column {j} of Y) has no label in any row: every entry is "
                "missing, so there is nothing to learn for it; drop the column"
            )
        if labelled.dtype == object:
            kinds = {type(v) for v in labelled}
            if len(kinds) > 1 and not all(issubclass(k, (int, float, np.number)) for k in kinds):
                raise ValueError(f"task {name!r} mixes label types {sorted(map(str, kinds))}")
        if type_of_target(labelled) in ("continuous", "continuous-multioutput"):
            raise ValueError(
                f"Unknown label type: task {name!r} has continuous labels; "
                "MultiTaskClassifier needs class labels"
            )
        cls, inv = np.unique(labelled, return_inverse=True)
        Y_local[~missing, j] = inv
        task_classes.append(cls)
    return Y_local, tasks, task_classes
