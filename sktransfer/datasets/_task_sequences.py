"""Task sequences for continual learning, built from any labelled data set.

* :func:`make_permuted_tasks`: each task applies its own fixed random
  permutation to the pixels (features); the labels stay the same (permuted
  MNIST, Goodfellow et al., 2013; Kirkpatrick et al., 2017).
* :func:`make_rotated_tasks`: each task rotates the images by its own angle
  (rotated MNIST, Lopez-Paz and Ranzato, 2017).
* :func:`make_split_tasks`: each task holds a disjoint subset of the classes
  (split MNIST, Zenke et al., 2017).

Each returns ``(X, y, task_ids)`` with the tasks stacked in order, ready for
``ContinualClassifier.fit(X, y, task_ids=task_ids)``. The transformations
depend only on ``random_state`` (and the data's shape), so calling a
generator on a training set and on a test set with the same
``random_state`` gives the same tasks.
"""

from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import validate_params
from sklearn.utils.validation import check_array, column_or_1d

from ._validation import InvalidParameterError, check_param, finite_numbers, positive_int

__all__ = ["make_permuted_tasks", "make_rotated_tasks", "make_split_tasks"]


def _check_Xy(X, y, allow_nd=True):
    X = check_array(X, allow_nd=allow_nd, dtype=np.float32, ensure_min_samples=1)
    if X.ndim > 2 and 0 in X.shape[1:]:
        raise ValueError(f"X holds empty samples: shape {X.shape}, so every task would be "
                         "empty; each sample needs at least one value")
    y = column_or_1d(y)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"y has {y.shape[0]} labels but X has {X.shape[0]} samples")
    return X, y


def _check_n_tasks(n_tasks, caller):
    check_param("n_tasks", n_tasks, [positive_int()], caller)
    return int(n_tasks)


def _check_image_shape(image_shape):
    """``image_shape`` as a tuple of 2 (H, W) or 3 (C, H, W) positive ints."""
    try:
        dims = tuple(image_shape)
    except TypeError:
        dims = None
    if (
        dims is None
        or isinstance(image_shape, str)
        or not all(isinstance(d, Integral) and not isinstance(d, bool) for d in dims)
    ):
        raise InvalidParameterError(
            f"image_shape must be a tuple of ints (H, W) or (C, H, W), got {image_shape!r}"
        )
    if len(dims) not in (2, 3) or min(dims) < 1:
        raise ValueError(
            f"image_shape must be (H, W) or (C, H, W) with every size >= 1, got {image_shape!r}"
        )
    return tuple(int(d) for d in dims)


@validate_params(
    {
        "X": ["array-like"],
        "y": ["array-like"],
        "n_tasks": [positive_int()],
        "keep_first": ["boolean"],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_permuted_tasks(X, y, n_tasks=10, *, keep_first=True, random_state=None):
    """Permuted tasks: the same samples with the features shuffled per task.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or (n, C, H, W)
        Samples; images are permuted over all their values and keep their
        shape.
    y : array-like of shape (n_samples,)
        Labels, the same in every task.
    n_tasks : int, default=10
        Number of tasks.
    keep_first : bool, default=True
        The first task uses the identity (the original data), as in most
        papers.
    random_state : int, RandomState or None
        Seeds the permutations (use the same value for training and test
        sets).

    Returns
    -------
    X_tasks : ndarray of shape (n_tasks * n_samples, ...)
    y_tasks : ndarray of shape (n_tasks * n_samples,)
    task_ids : ndarray of shape (n_tasks * n_samples,)
        ``0 .. n_tasks - 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.datasets import make_permuted_tasks
    >>> X, y = np.arange(12.).reshape(3, 4), np.array([0, 1, 0])
    >>> Xt, yt, t = make_permuted_tasks(X, y, n_tasks=2, random_state=0)
    >>> Xt.shape, t.tolist()
    ((6, 4), [0, 0, 0, 1, 1, 1])
    >>> bool(np.array_equal(np.sort(Xt[3]), X[0]))
    True
    """
    X, y = _check_Xy(X, y)
    n_tasks = int(n_tasks)
    rng = check_random_state(random_state)
    shape = X.shape[1:]
    flat = X.reshape(X.shape[0], -1)
    n_features = flat.shape[1]
    parts = []
    for k in range(n_tasks):
        perm = rng.permutation(n_features)
        if k == 0 and keep_first:
            perm = np.arange(n_features)
        parts.append(flat[:, perm].reshape((-1,) + shape))
    return (np.concatenate(parts), np.tile(y, n_tasks),
            np.repeat(np.arange(n_tasks), X.shape[0]))


@validate_params(
    {"X": ["array-like"], "y": ["array-like"], "random_state": ["random_state"]},
    prefer_skip_nested_validation=True,
)
def make_rotated_tasks(X, y, n_tasks=10, *, angles=None, image_shape=None,
                       random_state=None):
    """Rotated tasks: the same images rotated by a different angle per task.

    Parameters
    ----------
    X : array-like of shape (n, H, W), (n, C, H, W) or (n, H * W)
        Images; flat rows need ``image_shape=(H, W)`` unless they are square.
    y : array-like of shape (n_samples,)
    n_tasks : int, default=10
        Number of tasks (ignored when ``angles`` is given).
    angles : array-like of float or None
        Rotation of each task in degrees (finite numbers). ``None`` draws
        ``n_tasks`` angles uniformly in [0, 180), the first being 0.
    image_shape : tuple of int or None
        (H, W), or (C, H, W), of flat rows.
    random_state : int, RandomState or None
        Seeds the angles when ``angles`` is None.

    Returns
    -------
    X_tasks, y_tasks, task_ids
        As :func:`make_permuted_tasks`; ``X_tasks`` keeps the input's shape.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.datasets import make_rotated_tasks
    >>> X, y = np.random.RandomState(0).rand(5, 8, 8), np.arange(5)
    >>> Xt, yt, t = make_rotated_tasks(X, y, angles=[0, 90])
    >>> Xt.shape, bool(np.allclose(Xt[5:], np.rot90(X, 1, axes=(1, 2)), atol=1e-5))
    ((10, 8, 8), True)
    """
    from scipy import ndimage

    X, y = _check_Xy(X, y)
    if angles is None:
        n_tasks = _check_n_tasks(n_tasks, "make_rotated_tasks")
        rng = check_random_state(random_state)
        angles = np.concatenate([[0.0], rng.uniform(0, 180, n_tasks - 1)])
    angles = finite_numbers(angles, "angles").ravel()
    if angles.size == 0:
        raise ValueError("angles must not be empty")
    if image_shape is not None:
        image_shape = _check_image_shape(image_shape)
    shape = X.shape
    if X.ndim == 2:
        if image_shape is None:
            side = int(round(np.sqrt(X.shape[1])))
            if side * side != X.shape[1]:
                raise ValueError(f"rows of {X.shape[1]} features are not square images; "
                                 "pass image_shape=(H, W)")
            image_shape = (side, side)
        if int(np.prod(image_shape)) != X.shape[1]:
            raise ValueError(f"image_shape={image_shape} does not match {X.shape[1]} features")
        images = X.reshape((-1,) + tuple(image_shape))
    elif X.ndim in (3, 4):
        images = X
    else:
        raise ValueError(f"X must be images (n, H, W) or (n, C, H, W), or flat rows; got "
                         f"shape {X.shape}")
    axes = (images.ndim - 2, images.ndim - 1)
    parts = []
    for angle in angles:
        if angle % 360 == 0:
            rotated = images
        elif angle % 90 == 0:
            rotated = np.rot90(images, int(angle // 90) % 4, axes=axes)
        else:
            rotated = ndimage.rotate(images, angle, axes=axes, reshape=False, order=1,
                                     mode="constant", cval=0.0)
        parts.append(np.ascontiguousarray(rotated, dtype=np.float32).reshape(shape))
    n = X.shape[0]
    return (np.concatenate(parts), np.tile(y, len(angles)),
            np.repeat(np.arange(len(angles)), n))


@validate_params(
    {
        "X": ["array-like"],
        "y": ["array-like"],
        "classes": ["array-like", None],
        "relabel": ["boolean"],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_split_tasks(X, y, n_tasks=5, *, classes=None, relabel=False, random_state=None):
    """Split tasks: each task holds a disjoint group of the classes.

    Parameters
    ----------
    X : array-like of shape (n_samples, ...)
    y : array-like of shape (n_samples,)
    n_tasks : int, default=5
        Number of tasks; the classes are divided into groups as equal as
        possible (ignored when ``classes`` is given).
    classes : list of array-like or None
        The classes of each task, e.g. ``[[0, 1], [2, 3], ...]``. ``None``
        splits the sorted classes in order (shuffled first when
        ``random_state`` is given).
    relabel : bool, default=False
        Replace each label by its position within its task (0, 1, ...): the
        domain-incremental form of split MNIST (is it the first or the second
        digit of the task?).
    random_state : int, RandomState or None
        Shuffles the class order when ``classes`` is None; ``None`` keeps the
        sorted order.

    Returns
    -------
    X_tasks, y_tasks, task_ids
        The samples of task 0, then task 1, ... (each sample once).

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.datasets import make_split_tasks
    >>> X, y = np.zeros((6, 2)), np.array([0, 1, 2, 3, 0, 2])
    >>> Xt, yt, t = make_split_tasks(X, y, n_tasks=2)
    >>> yt.tolist(), t.tolist()
    ([0, 1, 0, 2, 3, 2], [0, 0, 0, 1, 1, 1])
    """
    X, y = _check_Xy(X, y)
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise ValueError(f"y holds {int(np.isnan(y).sum())} NaN labels; every sample of a "
                         "split task needs a class (drop the unlabelled rows first)")
    labels = np.unique(y)
    if classes is None:
        n_tasks = _check_n_tasks(n_tasks, "make_split_tasks")
        if n_tasks > len(labels):
            raise ValueError(f"n_tasks={n_tasks} is more than the {len(labels)} classes")
        order = labels if random_state is None else check_random_state(
            random_state).permutation(labels)
        groups = np.array_split(order, n_tasks)
    else:
        groups = [np.atleast_1d(np.asarray(g)) for g in classes]
        flat = np.concatenate(groups) if groups else np.array([])
        if len(groups) == 0 or any(len(g) == 0 for g in groups):
            raise ValueError("classes must be a non-empty list of non-empty class groups")
        if len(np.unique(flat)) != len(flat):
            raise ValueError("the class groups of classes= must be disjoint")
        missing = np.setdiff1d(flat, labels)
        if len(missing):
            raise ValueError(f"classes {missing.tolist()} do not occur in y")
    Xs, ys, ts = [], [], []
    for k, group in enumerate(groups):
        rows = np.isin(y, group)
        Xs.append(X[rows])
        yk = y[rows]
        if relabel:
            group = np.asarray(group)
            sorter = np.argsort(group)
            yk = sorter[np.searchsorted(group, yk, sorter=sorter)]
        ys.append(yk)
        ts.append(np.full(rows.sum(), k))
    return np.concatenate(Xs), np.concatenate(ys), np.concatenate(ts)
