"""Validation and encoding of multi-task targets and task ids.

Two formats (DESIGN.md section 4):

* ``"task_ids"``: 1-D ``y`` with one task id per row; each task has its own
  label set.
* ``"multi_target"``: 2-D ``Y`` of shape (n_samples, n_tasks), one column per
  task; a missing label is NaN/None (or ``missing_label``).
"""

import warnings

import numpy as np
from sklearn.exceptions import DataConversionWarning
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
    """Return task ids as a 1-D array, or raise a ValueError naming the problem.

    ``task_ids`` holds one task id per row of X; a column vector is raveled
    with a ``DataConversionWarning``, as scikit-learn does for ``y``.
    """
    arr = np.asarray(task_ids, dtype=None if not hasattr(task_ids, "dtype") else task_ids.dtype)
    if arr.ndim == 0:
        raise ValueError(
            f"task_ids must hold one task id per row of X (shape ({n_samples},)), got the "
            f"single value {arr.item()!r}; to give every row the same task, pass "
            f"np.full(len(X), {arr.item()!r})")
    if arr.ndim == 2 and arr.shape[1] == 1:
        warnings.warn(
            "A column-vector task_ids was passed when a 1d array was expected. Please change "
            "the shape of task_ids to (n_samples,), for example using ravel().",
            DataConversionWarning, stacklevel=3)
        arr = arr.ravel()
    if arr.ndim != 1:
        raise ValueError(f"task_ids must hold one task id per row of X (shape ({n_samples},)), "
                         f"got an array of shape {arr.shape}")
    task_ids = arr
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


TASK_TYPES = ("classification", "regression")


def resolve_task_types(task_types, tasks, default):
    """One type per task from ``task_types`` (None, a list aligned with tasks, or a dict)."""
    names = list(np.asarray(tasks).tolist())
    if task_types is None:
        types = [default] * len(names)
    elif isinstance(task_types, dict):
        unknown = [k for k in task_types if k not in names]
        if unknown:
            raise ValueError(f"task_types names unknown tasks {unknown}; the tasks are {names}")
        types = [task_types.get(k, default) for k in names]
    elif isinstance(task_types, str):
        types = [task_types] * len(names)
    else:
        types = list(task_types)
        if len(types) != len(names):
            raise ValueError(f"task_types must give one type per task ({len(names)}), "
                             f"got {len(types)}")
    bad = sorted({str(t) for t in types} - set(TASK_TYPES))
    if bad:
        raise ValueError(f"task_types must be in {TASK_TYPES}, got {bad}")
    return types


def _classification_info(labels, name, fixed=None):
    if fixed is not None:
        classes = fixed["classes"]
        try:
            enc = np.searchsorted(classes, labels)
            enc = np.clip(enc, 0, len(classes) - 1)
            unknown = classes[enc] != labels
        except TypeError as exc:
            raise ValueError(f"task {name!r}: labels of type {np.asarray(labels).dtype} cannot "
                             f"be compared with its classes {classes.tolist()[:10]}") from exc
        if np.any(unknown):
            raise ValueError(
                f"task {name!r} has labels {sorted(set(np.asarray(labels)[unknown].tolist()))[:10]}"
                f" that are not in its classes {classes.tolist()[:20]}"
            )
        return fixed, enc
    if labels.dtype == object:
        kinds = {type(v) for v in labels}
        if len(kinds) > 1 and not all(issubclass(k, (int, float, np.number)) for k in kinds):
            raise ValueError(f"task {name!r} mixes label types {sorted(map(str, kinds))}")
    if type_of_target(labels) in ("continuous", "continuous-multioutput"):
        raise ValueError(
            f"Unknown label type: task {name!r} has continuous labels; a classification task "
            "needs class labels (declare it with task_types={...: 'regression'})"
        )
    cls, inv = np.unique(labels, return_inverse=True)
    return {"type": "classification", "classes": cls, "n_outputs": len(cls)}, inv


def _regression_info(values, name, fixed=None, weight=None):
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"regression task {name!r} has non-numeric targets") from exc
    if not np.all(np.isfinite(v)):
        raise ValueError(f"regression task {name!r} has infinite targets")
    if fixed is not None:
        return fixed, (v - fixed["mean"]) / fixed["std"]
    if weight is not None and np.any(weight):
        # the weighted statistics: a row of weight k scales like k copies of it
        mean = float(np.average(v, weights=weight))
        std = float(np.sqrt(np.average((v - mean) ** 2, weights=weight)))
    else:
        mean, std = (float(v.mean()), float(v.std())) if len(v) else (0.0, 1.0)
    std = std if std > 0 else 1.0
    return {"type": "regression", "mean": mean, "std": std, "n_outputs": 1}, (v - mean) / std


def _task_info(values, name, task_type, fixed, weight=None):
    if task_type == "classification":
        return _classification_info(values, name, fixed)
    return _regression_info(values, name, fixed, weight)


def classes_template(classes, tasks, types):
    """Per-task fixed infos from ``classes`` given to a first ``partial_fit``.

    ``classes`` is an array (one task), a list aligned with ``tasks`` or a
    dict from task to labels; a classification task without classes raises.
    """
    names = list(np.asarray(tasks).tolist())
    if classes is None:
        per_task = [None] * len(names)
    elif isinstance(classes, dict):
        per_task = [classes.get(k) for k in names]
    elif len(names) == 1 and np.ndim(classes) == 1 and not (
            len(classes) and np.ndim(classes[0]) == 1):
        per_task = [classes]
    else:
        per_task = list(classes)
        if len(per_task) != len(names):
            raise ValueError(f"classes must give the labels of each of the {len(names)} tasks, "
                             f"got {len(per_task)} entries")
    template = []
    for name, tp, cls in zip(names, types, per_task):
        if tp == "regression":
            template.append(None)
            continue
        if cls is None:
            raise ValueError(
                f"classes must be passed on the first call to partial_fit: the labels of task "
                f"{name!r} are missing (a dict from task to labels, or a list per task)"
            )
        cls = np.unique(np.asarray(cls))
        template.append({"type": "classification", "classes": cls, "n_outputs": len(cls)})
    return template


def encode_task_format(y, task_ids, n_samples, task_types=None, default="classification",
                       tasks=None, template=None, sample_weight=None):
    """Encode 1-D ``y`` with per-row task ids.

    Returns ``(y_enc, t_enc, tasks, infos)``. ``infos[k]`` describes task k
    (its type, and its classes or target scaling). ``y_enc`` holds each
    row's label index within its task's classes (int64) when every task is a
    classification task, else float32 with standardised regression targets.
    ``tasks`` fixes the task set (unseen ids raise) and ``template`` holds
    fixed infos per task (None: derive from the data), for ``partial_fit``.
    A regression task's scaling is the weighted mean and standard deviation
    of its targets under ``sample_weight`` (when given).
    """
    y = column_or_1d(y, warn=True)
    check_consistent_length(np.empty(n_samples), y)
    if y.dtype.kind in "fc":
        _assert_all_finite(y, input_name="y")
    if tasks is not None:
        if task_ids is None:
            if len(tasks) != 1:
                raise ValueError(f"task_ids is required: the model has {len(tasks)} tasks "
                                 f"{np.asarray(tasks).tolist()[:10]}")
            t = np.zeros(n_samples, dtype=np.int64)
        else:
            t = encode_task_ids(validate_task_ids(task_ids, n_samples), np.asarray(tasks))
    elif task_ids is None:
        t = np.zeros(n_samples, dtype=np.int64)
        tasks = np.array([0])
    else:
        task_ids = validate_task_ids(task_ids, n_samples)
        tasks, t = np.unique(task_ids, return_inverse=True)
    tasks = np.asarray(tasks)
    types = ([info["type"] if info else None for info in template] if template is not None
             and all(template) else resolve_task_types(task_types, tasks, default))
    template = template if template is not None else [None] * len(tasks)
    if all(tp == "classification" for tp in types):
        check_classification_targets(y)
    y_enc = np.empty(n_samples, dtype=np.int64 if "regression" not in types else np.float32)
    infos = []
    for k, name in enumerate(tasks.tolist()):
        rows = t == k
        weight = None if sample_weight is None else sample_weight[rows]
        info, enc = _task_info(y[rows], name, types[k], template[k], weight)
        y_enc[rows] = enc
        infos.append(info)
    return y_enc, t.astype(np.int64), tasks, infos


def target_columns(Y):
    """The columns of a 2-D target, each a 1-D array with its own dtype.

    A DataFrame's columns keep their dtypes (``np.asarray`` of a frame that
    mixes a numeric and a string column is one object array, in which
    scikit-learn's metrics cannot recognise the numeric labels); an object
    column of numbers only becomes a numeric array.
    """
    if hasattr(Y, "columns") and hasattr(Y, "iloc"):
        return [plain_array(Y.iloc[:, j].to_numpy()) for j in range(Y.shape[1])]
    Y = np.asarray(Y)
    if Y.ndim == 1:
        return [plain_array(Y)]
    return [plain_array(Y[:, j]) for j in range(Y.shape[1])]


def plain_array(a):
    """``a`` with a numeric dtype where an object array holds only numbers (or bools).

    Strings, and missing entries (None), keep an object array as it is; an
    array that is not of dtype object is returned unchanged.
    """
    a = np.asarray(a)
    if a.dtype != object or a.size == 0:
        return a
    kinds = {type(v) for v in a.ravel()}
    if all(issubclass(k, (bool, np.bool_)) for k in kinds):
        return a.astype(bool)
    if all(issubclass(k, (int, np.integer)) and not issubclass(k, (bool, np.bool_))
           for k in kinds):
        return a.astype(np.int64)
    if all(issubclass(k, (float, np.floating, int, np.integer)) and not issubclass(k, bool)
           for k in kinds):
        return a.astype(np.float64)
    return a


def encode_multi_target(Y, missing_label, task_types=None, default="classification",
                        template=None, allow_empty=False, sample_weight=None):
    """Encode a 2-D target with one column per task and missing labels.

    Returns ``(Y_enc, tasks, infos)``. ``Y_enc`` is (n, T): int64 label
    indices with -1 where missing when every task is a classification task,
    else float32 with NaN where missing. ``template`` holds fixed per-task
    infos and ``allow_empty`` accepts a column without labels (``partial_fit``).
    """
    tasks = np.asarray(Y.columns) if hasattr(Y, "columns") else None
    columns = target_columns(Y)
    Y = np.asarray(Y)
    if Y.ndim != 2:
        raise ValueError(f"Y must be 1-D or 2-D, got shape {Y.shape}")
    n, T = Y.shape
    if T == 0:
        raise ValueError("Y has no columns (no tasks)")
    if tasks is None:
        tasks = np.arange(T)
    if any(c.dtype.kind == "c" or (c.dtype.kind == "f" and np.isinf(c).any()) for c in columns):
        raise ValueError("Y contains infinity or complex values")
    if template is not None and len(template) != T:
        raise ValueError(f"Y has {T} columns but the model has {len(template)} tasks")
    types = ([info["type"] for info in template] if template is not None and all(template)
             else resolve_task_types(task_types, tasks, default))
    template = template if template is not None else [None] * T
    mixed = "regression" in types
    Y_enc = np.full((n, T), np.nan if mixed else -1, dtype=np.float32 if mixed else np.int64)
    infos = []
    for j in range(T):
        col = columns[j]
        name = tasks.tolist()[j]
        missing = _is_missing(col, missing_label)
        labelled = col[~missing]
        if labelled.size == 0 and not allow_empty:
            raise ValueError(
                f"task {name!r} (column {j} of Y) has no label in any row: every entry is "
                "missing, so there is nothing to learn for it; drop the column"
            )
        if labelled.size == 0 and template[j] is None and types[j] == "classification":
            raise ValueError(f"task {name!r} (column {j} of Y) has no label in this call")
        weight = None if sample_weight is None else sample_weight[~missing]
        info, enc = _task_info(labelled, name, types[j], template[j], weight)
        Y_enc[~missing, j] = enc
        infos.append(info)
    return Y_enc, tasks, infos
