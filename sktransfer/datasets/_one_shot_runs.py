"""The standard Omniglot protocol as data tools: rotated classes and Lake's one-shot runs.

* :func:`augment_rotations`: every image rotated by 90, 180 and 270 degrees,
  each rotation a new class (the augmentation of the few-shot papers);
* :func:`make_one_shot_runs`: 20-way one-shot classification runs built the
  way Lake et al. (2015) built theirs, from any ``(X, y, groups)``: each run
  takes 20 characters of one alphabet, one drawing of each as the training
  (support) set and another drawing of each, by another drawer, as the test
  set. Scored by :func:`sktransfer.metrics.score_one_shot_runs`.
"""

import numpy as np
from sklearn.utils import Bunch, check_random_state

__all__ = ["augment_rotations", "make_one_shot_runs"]


def augment_rotations(X, y, groups=None, angles=(90, 180, 270)):
    """Add each image rotated by each of ``angles``, every rotation a new class.

    Parameters
    ----------
    X : array-like of shape (n_samples, ..., H, W)
        Images, square in their last two axes for 90 and 270 degrees.
    y : array-like of shape (n_samples,)
        Class labels.
    groups : array-like of shape (n_samples,) or None, default=None
        Groups (alphabets), carried over to the rotated copies.
    angles : sequence of {90, 180, 270}, default=(90, 180, 270)
        Counter-clockwise rotations.

    Returns
    -------
    X_aug : ndarray of shape (n_samples * (1 + len(angles)), ..., H, W)
        The images, then each rotation of all of them.
    y_aug : ndarray of shape (n_samples * (1 + len(angles)),)
        Integer classes: ``c * (1 + len(angles)) + r`` for the ``c``-th label
        of ``np.unique(y)`` rotated by ``angles[r - 1]`` (``r = 0``: not
        rotated).
    groups_aug : ndarray or None
        ``groups`` repeated for every rotation (None without ``groups``).

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.datasets import augment_rotations
    >>> X = np.arange(8.0).reshape(2, 1, 2, 2)
    >>> X_aug, y_aug, _ = augment_rotations(X, [5, 7])
    >>> X_aug.shape, y_aug.tolist()
    ((8, 1, 2, 2), [0, 4, 1, 5, 2, 6, 3, 7])
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim < 3 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be images (n_samples, ..., H, W) with one label per image; "
                         f"got X of shape {X.shape} and {y.shape[0]} labels")
    angles = list(angles)
    bad = [a for a in angles if a not in (90, 180, 270)]
    if bad:
        raise ValueError(f"angles must be 90, 180 or 270 degrees, got {bad}")
    if any(a % 180 for a in angles) and X.shape[-1] != X.shape[-2]:
        raise ValueError(f"rotations by 90 or 270 degrees need square images, got "
                         f"{X.shape[-2]}x{X.shape[-1]}")
    _, codes = np.unique(y, return_inverse=True)
    n_rot = 1 + len(angles)
    parts = [X] + [np.rot90(X, k=a // 90, axes=(-2, -1)) for a in angles]
    X_aug = np.ascontiguousarray(np.concatenate(parts))
    y_aug = np.concatenate([codes * n_rot + r for r in range(n_rot)])
    groups_aug = None if groups is None else np.tile(np.asarray(groups), n_rot)
    return X_aug, y_aug, groups_aug


def make_one_shot_runs(X, y, groups, drawers=None, n_runs=20, n_way=20, random_state=None):
    """One-shot classification runs in the layout of Lake et al.'s 20 runs.

    Each run takes ``n_way`` characters (classes) of one alphabet (group):
    the training set holds one drawing of each, the test set another drawing
    of each (by another drawer when ``drawers`` is given, as in the original
    runs, where each run's two drawers are fixed). The alphabets take turns
    over the runs (each run draws a random alphabet among those not used
    yet, all of them once before any again).

    Parameters
    ----------
    X : array-like of shape (n_samples, ...)
        Images.
    y : array-like of shape (n_samples,)
        Characters.
    groups : array-like of shape (n_samples,)
        Alphabets; only those with at least ``n_way`` characters are used.
    drawers : array-like of shape (n_samples,) or None, default=None
        Who drew each image (``load_omniglot(...).drawers``); each run then
        takes its training and test drawings from two drawers.
    n_runs : int, default=20
        Number of runs.
    n_way : int, default=20
        Characters per run.
    random_state : int, RandomState or None, default=None
        Fixes the runs.

    Returns
    -------
    list of :class:`~sklearn.utils.Bunch`
        One per run, with ``X_train``, ``y_train`` (``n_way`` images, one per
        character), ``X_test``, ``y_test`` (``n_way`` other images of the
        same characters, in another order) and ``group`` (the alphabet).

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.datasets import make_one_shot_runs
    >>> y = np.repeat(np.arange(6), 3)                 # 6 characters, 3 drawings each
    >>> groups = np.repeat([0, 1], 9)                  # two alphabets of 3 characters
    >>> runs = make_one_shot_runs(np.zeros((18, 1, 4, 4)), y, groups, n_runs=2, n_way=3,
    ...                           random_state=0)
    >>> [(len(r.y_train), len(r.y_test), sorted(r.y_train) == sorted(r.y_test)) for r in runs]
    [(3, 3, True), (3, 3, True)]
    """
    X = np.asarray(X)
    y = np.asarray(y)
    groups = np.asarray(groups)
    if not (X.shape[0] == y.shape[0] == groups.shape[0]):
        raise ValueError(f"X, y and groups must have one entry per sample; got {X.shape[0]}, "
                         f"{y.shape[0]} and {groups.shape[0]}")
    if drawers is not None:
        drawers = np.asarray(drawers)
        if drawers.shape[0] != y.shape[0]:
            raise ValueError(f"drawers has {drawers.shape[0]} entries but X has {X.shape[0]} "
                             "samples")
    if n_way < 2 or n_runs < 1:
        raise ValueError(f"n_way must be >= 2 and n_runs >= 1, got {n_way} and {n_runs}")
    rng = check_random_state(random_state)
    eligible = {}
    for g in np.unique(groups):
        chars = [c for c in np.unique(y[groups == g]) if np.sum(y == c) >= 2]
        if len(chars) >= n_way:
            eligible[g] = chars
    if not eligible:
        raise ValueError(f"no alphabet (group) has {n_way} characters with two drawings "
                         f"each; the largest has "
                         f"{max(len(np.unique(y[groups == g])) for g in np.unique(groups))}")
    order = []
    runs = []
    for _ in range(n_runs):
        if not order:
            order = list(rng.permutation(sorted(eligible, key=str)))
        group = order.pop()
        chars = rng.choice(len(eligible[group]), n_way, replace=False)
        chars = [eligible[group][i] for i in chars]
        train_rows, test_rows = _two_drawings(y, drawers, chars, rng)
        perm = rng.permutation(n_way)
        test_rows = test_rows[perm]
        runs.append(Bunch(X_train=X[train_rows], y_train=y[train_rows], X_test=X[test_rows],
                          y_test=y[test_rows], group=group))
    return runs


def _two_drawings(y, drawers, chars, rng):
    """Row of a training and of a test drawing of every character."""
    if drawers is not None:
        # two drawers who drew every character of the run, when there are
        common = set.intersection(*(set(drawers[y == c].tolist()) for c in chars))
        if len(common) >= 2:
            first, second = rng.choice(sorted(common), 2, replace=False)
            train = [np.flatnonzero((y == c) & (drawers == first))[0] for c in chars]
            test = [np.flatnonzero((y == c) & (drawers == second))[0] for c in chars]
            return np.array(train), np.array(test)
    pairs = [rng.choice(np.flatnonzero(y == c), 2, replace=False) for c in chars]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
