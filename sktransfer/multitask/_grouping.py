"""Which tasks to train together: groups of tasks from their affinity.

Given the inter-task affinity ``A`` (``A[i, j]``: how much a step on task
``i`` lowers task ``j``'s loss, see :func:`~._affinity.task_affinity`), a
group ``G`` of tasks trained by one network is worth, to each of its tasks,
the mean affinity onto it from the other tasks of the group (Fifty et al.,
2021), and a partition of the tasks into groups is worth the sum:

    score(G) = sum_{j in G} mean_{i in G, i != j} A[i, j]     (0 for |G| = 1)
    total = sum_{G} score(G)

A task alone scores 0: a group is worth its network when its tasks help
each other on average, and a task that is hurt by every other one is best
left alone. :func:`group_tasks` finds the partition of largest total, with
at most ``n_groups`` groups: exactly (dynamic programming over subsets,
``O(3^T)``) for up to 12 tasks, greedily (agglomerative merges, then single
task moves) beyond. Among partitions of equal total, the one with fewer
groups (fewer networks) wins.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions, validate_params

from ._affinity import task_affinity

__all__ = ["group_tasks", "grouping_score", "check_affinity"]

#: The largest number of tasks ``method="auto"`` searches exactly.
EXACT_MAX_TASKS = 12
_TIE = 1e-12


def check_affinity(affinity):
    """The affinity as a square float matrix; NaN entries (never measured) become 0."""
    A = np.asarray(affinity, dtype=float)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"the affinity must be a square (n_tasks, n_tasks) matrix; got shape "
                         f"{A.shape}")
    if A.shape[0] < 1:
        raise ValueError("the affinity matrix is empty: there is no task to group")
    if np.isinf(A).any():
        raise ValueError("the affinity matrix holds infinite values")
    return np.nan_to_num(A, nan=0.0)


def grouping_score(affinity, groups):
    """The total affinity of a partition of the tasks into ``groups``.

    Parameters
    ----------
    affinity : array-like of shape (n_tasks, n_tasks)
        ``A[i, j]``, the affinity of task ``i`` onto task ``j``.
    groups : list of list of int
        The groups, each a list of task indices.

    Returns
    -------
    float
        ``sum_G sum_{j in G} mean_{i in G, i != j} A[i, j]`` (a group of one
        task scores 0).

    Examples
    --------
    >>> from sktransfer.multitask import grouping_score
    >>> A = [[1.0, 0.5, -1.0], [0.3, 1.0, -1.0], [-1.0, -1.0, 1.0]]
    >>> grouping_score(A, [[0, 1], [2]])
    0.8
    """
    A = check_affinity(affinity)
    return float(sum(_group_score(A, list(g)) for g in groups))


def _group_score(A, members):
    if len(members) < 2:
        return 0.0
    sub = A[np.ix_(members, members)]
    return float((sub.sum(0) - np.diag(sub)).sum() / (len(members) - 1))


def _subset_scores(A):
    """score(G) for every subset G of the tasks, indexed by its bit mask."""
    T = A.shape[0]
    masks = np.arange(1 << T)
    bits = ((masks[:, None] >> np.arange(T)) & 1).astype(float)  # (2^T, T)
    onto = bits @ A - bits * np.diag(A)  # onto[m, j]: sum of A[i, j] over i in m, i != j
    size = bits.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = (bits * onto).sum(1) / (size - 1)
    scores[size < 2] = 0.0
    return scores


def _exact(A, n_groups):
    """The best partition into at most ``n_groups`` groups, by DP over subsets.

    ``best[mask]`` is the best total of the tasks of ``mask`` (and, with a
    budget, ``best[k][mask]`` of ``mask`` in exactly ``k`` groups); the group
    that holds the lowest task of ``mask`` is chosen among the submasks.
    Totals equal up to rounding prefer fewer groups.
    """
    T = A.shape[0]
    full = (1 << T) - 1
    scores = _subset_scores(A).tolist()
    if n_groups is None or n_groups >= T:
        best, count, pick = [0.0] * (full + 1), [0] * (full + 1), [0] * (full + 1)
        for mask in range(1, full + 1):
            low = mask & -mask
            rest = mask ^ low
            sub = rest
            top, fewest, arg = -np.inf, 0, 0
            while True:
                group = sub | low
                other = mask ^ group
                value = scores[group] + best[other]
                n = count[other] + 1
                if value > top + _TIE or (value > top - _TIE and n < fewest):
                    top, fewest, arg = value, n, group
                if sub == 0:
                    break
                sub = (sub - 1) & rest
            best[mask], count[mask], pick[mask] = top, fewest, arg
        picks = [pick] * T
        k = count[full]
    else:
        K = n_groups
        neg = -np.inf
        prev = [neg] * (full + 1)
        prev[0] = 0.0
        picks, totals = [], []
        for _ in range(K):
            cur, pick = [neg] * (full + 1), [0] * (full + 1)
            for mask in range(1, full + 1):
                low = mask & -mask
                rest = mask ^ low
                sub = rest
                top, arg = neg, 0
                while True:
                    group = sub | low
                    value = scores[group] + prev[mask ^ group]
                    if value > top:
                        top, arg = value, group
                    if sub == 0:
                        break
                    sub = (sub - 1) & rest
                cur[mask], pick[mask] = top, arg
            picks.append(pick)
            totals.append(cur[full])
            prev = cur
        top = max(totals)
        k = next(k for k, v in enumerate(totals, start=1) if v >= top - _TIE)  # fewest
        picks = [None] + picks  # picks[k]: the choices of exactly k groups
    groups, mask = [], full
    while mask:
        group = picks[k][mask] if n_groups is not None and n_groups < T else picks[0][mask]
        groups.append([i for i in range(T) if group >> i & 1])
        mask ^= group
        k -= 1
    return groups


def _greedy(A, n_groups):
    """Agglomerative merges of the best gain, then moves of single tasks."""
    T = A.shape[0]
    K = T if n_groups is None else min(n_groups, T)
    groups = [[i] for i in range(T)]
    while len(groups) > 1:
        best, pair = -np.inf, None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                gain = (_group_score(A, groups[a] + groups[b]) - _group_score(A, groups[a])
                        - _group_score(A, groups[b]))
                if gain > best:
                    best, pair = gain, (a, b)
        if best < -_TIE and len(groups) <= K:
            break
        a, b = pair
        groups[a] = sorted(groups[a] + groups[b])
        del groups[b]
    # local search: move one task to another group (or to a group of its own)
    improved = True
    while improved:
        improved = False
        for task in range(T):
            src = next(g for g in groups if task in g)
            rest = [i for i in src if i != task]
            base = _group_score(A, src)
            options = [g for g in groups if g is not src]
            if rest and len(groups) < K:
                options.append([])
            for dst in options:
                gain = (_group_score(A, rest) + _group_score(A, sorted(dst + [task]))
                        - base - _group_score(A, dst))
                if gain > 1e-9:
                    src.remove(task)
                    if dst:
                        dst.append(task)
                        dst.sort()
                    else:
                        groups.append([task])
                    groups[:] = [g for g in groups if g]
                    improved = True
                    break
    return sorted(groups)


@validate_params(
    {
        "X": ["array-like", None],
        "Y": ["array-like", None],
        "random_state": ["random_state"],
        "affinity": ["array-like", None],
        "n_groups": [Interval(Integral, 1, None, closed="left"), None],
        "method": [StrOptions({"auto", "exact", "greedy"})],
        "task_types": [list, tuple, dict, None],
        "estimator": [None, HasMethods(["fit", "get_params"])],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, np.inf, closed="neither"), None],
    },
    prefer_skip_nested_validation=True,
)
def group_tasks(X=None, Y=None, random_state=None, *, affinity=None, n_groups=None,
                method="auto", task_types=None, estimator=None, max_epochs=5, lr=None):
    """Propose groups of tasks to train together, from their inter-task affinity.

    Measures the affinity with :func:`task_affinity` (one short training
    run of a hard-sharing network on every task), unless ``affinity`` is
    given, and returns the partition of the tasks into groups of largest
    total affinity,

        sum_G sum_{j in G} mean_{i in G, i != j} A[i, j]

    (a task alone scores 0), with at most ``n_groups`` groups.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W), default=None
        The inputs; not needed with ``affinity``.
    Y : array-like of shape (n_samples, n_tasks), default=None
        One column per task, NaN for a missing label; not needed with
        ``affinity``.
    random_state : int, RandomState or None, default=None
        Seeds the training run of the affinity.
    affinity : array-like of shape (n_tasks, n_tasks) or None, default=None
        A precomputed affinity (``A[i, j]``: of task ``i`` onto task ``j``),
        e.g. from :func:`task_affinity`; NaN entries count as 0.
    n_groups : int or None, default=None
        The most groups (networks) allowed; ``None``: up to one per task.
    method : {"auto", "exact", "greedy"}, default="auto"
        ``"exact"``: the best partition (dynamic programming over the
        subsets of tasks, ``O(3^T)`` time, ``O(2^T)`` memory; at most 16
        tasks); ``"greedy"``: merge the two groups of largest gain while it
        is positive (or while there are more than ``n_groups``), then move
        single tasks between groups while that helps; ``"auto"``: exact for
        up to 12 tasks, greedy beyond.
    task_types, estimator, max_epochs, lr
        Passed to :func:`task_affinity` when ``affinity`` is None.

    Returns
    -------
    list of list of int
        The groups, each a sorted list of task indices (columns of ``Y``),
        sorted by their first task; every task is in exactly one group.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.multitask import group_tasks
    >>> A = np.array([[1.0, 0.4, -0.3],
    ...               [0.5, 1.0, -0.2],
    ...               [-0.4, -0.1, 1.0]])
    >>> group_tasks(affinity=A)
    [[0, 1], [2]]
    >>> group_tasks(affinity=A, n_groups=1)
    [[0, 1, 2]]
    """
    if affinity is None:
        if X is None or Y is None:
            raise ValueError("group_tasks needs X and Y to measure the task affinity, or a "
                             "precomputed affinity=")
        affinity = task_affinity(X, Y, random_state=random_state, task_types=task_types,
                                 estimator=estimator, max_epochs=max_epochs, lr=lr)
    A = check_affinity(affinity)
    T = A.shape[0]
    if method == "exact" and T > 16:
        raise ValueError(f"method='exact' searches all partitions of at most 16 tasks; there "
                         f"are {T}: use method='greedy'")
    if method == "exact" or (method == "auto" and T <= EXACT_MAX_TASKS):
        groups = _exact(A, n_groups)
    else:
        groups = _greedy(A, n_groups)
    return sorted(sorted(int(i) for i in g) for g in groups)
