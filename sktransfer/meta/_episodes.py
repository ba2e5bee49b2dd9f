"""Episode sampling: N-way K-shot tasks drawn from the classes of a labelled set.

An *episode* (a few-shot task) picks ``n_way`` classes, then ``k_shot``
support and ``n_query`` query examples of each, with no example in both.
Labels inside an episode are re-numbered ``0 .. n_way - 1`` in the (random)
order the classes were drawn, so a model cannot memorise a class's position.
"""

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["Episode", "EpisodeSampler", "sample_episode"]


class Episode:
    """One N-way K-shot task: indices into the data and episode labels.

    :class:`EpisodeSampler` makes episodes; the constructor only stores what
    it is given.

    Parameters
    ----------
    support_index, query_index : ndarray of int
        Rows of ``X`` in the support and the query set (class-major order).
    support_labels, query_labels : ndarray of int
        Episode labels ``0 .. n_way - 1`` of those rows.
    classes : ndarray
        The original labels of the ``n_way`` classes, in episode-label order.

    Attributes
    ----------
    support_index, query_index, support_labels, query_labels, classes
        The parameters, as given.
    """

    __slots__ = ("support_index", "query_index", "support_labels", "query_labels", "classes")

    def __init__(self, support_index, query_index, support_labels, query_labels, classes):
        self.support_index = support_index
        self.query_index = query_index
        self.support_labels = support_labels
        self.query_labels = query_labels
        self.classes = classes

    def __repr__(self):
        return (f"Episode(n_way={len(self.classes)}, support={len(self.support_index)}, "
                f"query={len(self.query_index)})")


def _check_positive_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


class EpisodeSampler:
    """Draw N-way K-shot episodes from labelled data.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    n_way : int
        Classes per episode.
    k_shot : int
        Support examples per class.
    n_query : int
        Query examples per class.
    groups : array-like of shape (n_samples,) or None, default=None
        When given, the classes of an episode all come from one group (for
        example one Omniglot alphabet); the group is drawn with probability
        proportional to its number of eligible classes, so every eligible
        class is equally likely. Groups with fewer than ``n_way`` eligible
        classes are never drawn.
    random_state : int, RandomState or None, default=None

    Raises
    ------
    ValueError
        If fewer than ``n_way`` classes (in any group) have at least
        ``k_shot + n_query`` examples.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.meta import EpisodeSampler
    >>> y = np.repeat(np.arange(10), 20)
    >>> ep = EpisodeSampler(y, n_way=5, k_shot=1, n_query=15, random_state=0).sample()
    >>> len(ep.support_index), len(ep.query_index)
    (5, 75)
    """

    def __init__(self, y, n_way, k_shot, n_query, groups=None, random_state=None):
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D, got shape {y.shape}")
        self.n_way = _check_positive_int(n_way, "n_way", 2)
        self.k_shot = _check_positive_int(k_shot, "k_shot", 1)
        self.n_query = _check_positive_int(n_query, "n_query", 1)
        self.rng = check_random_state(random_state)
        need = self.k_shot + self.n_query
        classes, y_idx, counts = np.unique(y, return_inverse=True, return_counts=True)
        order = np.argsort(y_idx, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._members = [order[s:s + c] for s, c in zip(starts, counts)]
        self.classes = classes
        eligible = np.flatnonzero(counts >= need)
        if groups is None:
            pools = [eligible]
            if len(eligible) < self.n_way:
                raise ValueError(
                    f"n_way={self.n_way} classes with at least k_shot + n_query = {need} "
                    f"examples each are needed, but only {len(eligible)} of the "
                    f"{len(classes)} classes have that many (smallest class: "
                    f"{counts.min()} examples)"
                )
        else:
            groups = np.asarray(groups)
            if groups.shape != y.shape:
                raise ValueError(f"groups has shape {groups.shape} but y has shape {y.shape}")
            first = order[starts]
            class_group = groups[first]
            # every class must lie in a single group
            for c, members in enumerate(self._members):
                if np.any(groups[members] != class_group[c]):
                    raise ValueError(
                        f"class {classes[c]!r} spans several groups; each class must belong "
                        "to exactly one group"
                    )
            pools = []
            for g in np.unique(class_group[eligible]):
                pool = eligible[class_group[eligible] == g]
                if len(pool) >= self.n_way:
                    pools.append(pool)
            if not pools:
                raise ValueError(
                    f"no group has n_way={self.n_way} classes with at least k_shot + n_query "
                    f"= {need} examples each"
                )
        self._pools = pools
        sizes = np.array([len(p) for p in pools], dtype=float)
        self._pool_p = sizes / sizes.sum()

    def sample(self):
        """Draw one :class:`Episode`."""
        rng = self.rng
        pool = self._pools[0] if len(self._pools) == 1 else self._pools[
            rng.choice(len(self._pools), p=self._pool_p)]
        chosen = rng.choice(pool, size=self.n_way, replace=False)
        k, q = self.k_shot, self.n_query
        support, query = [], []
        for c in chosen:
            rows = rng.choice(self._members[c], size=k + q, replace=False)
            support.append(rows[:k])
            query.append(rows[k:])
        labels = np.arange(self.n_way)
        return Episode(
            np.concatenate(support), np.concatenate(query),
            np.repeat(labels, k), np.repeat(labels, q), self.classes[chosen],
        )

    def __iter__(self):
        while True:
            yield self.sample()


def sample_episode(y, n_way, k_shot, n_query, groups=None, random_state=None):
    """Draw one N-way K-shot episode from the classes of ``y``.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
    n_way, k_shot, n_query : int
        Classes, support examples per class, query examples per class.
    groups : array-like or None, default=None
        Draw the classes from within one group (see :class:`EpisodeSampler`).
    random_state : int, RandomState or None, default=None

    Returns
    -------
    Episode

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.meta import sample_episode
    >>> ep = sample_episode(np.repeat([0, 1, 2], 5), n_way=2, k_shot=2, n_query=3,
    ...                     random_state=0)
    >>> ep.support_labels.tolist(), ep.query_labels.tolist()
    ([0, 0, 1, 1], [0, 0, 0, 1, 1, 1])
    """
    return EpisodeSampler(y, n_way, k_shot, n_query, groups=groups,
                          random_state=random_state).sample()
