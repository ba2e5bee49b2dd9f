"""Splitters for transfer and few-shot learning.

* :class:`ClassDisjointSplit`: train and test folds that share no class
  (or no group of classes), for selecting few-shot meta-hyperparameters
  with a few-shot scorer.
* :class:`LeaveOneTaskOut`: every task in turn is the test fold.
"""

import numpy as np
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, LeaveOneGroupOut

__all__ = ["ClassDisjointSplit", "LeaveOneTaskOut"]


class ClassDisjointSplit:
    """Shuffle-split the *classes* of ``y`` (or the groups) into train and test folds.

    Every class lies entirely in the train fold or in the test fold, so a
    few-shot scorer (:func:`sktransfer.metrics.make_few_shot_scorer`)
    evaluates on classes never seen in ``fit``. When ``groups`` is given to
    :meth:`split` (e.g. Omniglot alphabets), whole groups are split instead.

    Parameters
    ----------
    n_splits : int, default=5
        Number of re-shuffled splits.
    test_size : float or int, default=0.2
        Share (float) or number (int) of classes (or groups) in the test fold.
    shuffle : bool, default=True
        ``False`` gives disjoint test folds like ``GroupKFold`` over classes
        (``n_splits`` folds; ``test_size`` is then ignored and
        ``random_state`` unused).
    random_state : int, RandomState or None, default=None

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.model_selection import ClassDisjointSplit
    >>> y = np.repeat(np.arange(10), 3)
    >>> train, test = next(ClassDisjointSplit(n_splits=1, test_size=0.3,
    ...                                       random_state=0).split(y, y))
    >>> set(y[train]) & set(y[test])
    set()
    >>> len(set(y[test]))
    3
    """

    def __init__(self, n_splits=5, test_size=0.2, shuffle=True, random_state=None):
        self.n_splits = n_splits
        self.test_size = test_size
        self.shuffle = shuffle
        self.random_state = random_state

    def __repr__(self):
        return (f"ClassDisjointSplit(n_splits={self.n_splits}, test_size={self.test_size}, "
                f"shuffle={self.shuffle}, random_state={self.random_state})")

    def _splitter(self):
        if self.shuffle:
            return GroupShuffleSplit(n_splits=self.n_splits, test_size=self.test_size,
                                     random_state=self.random_state)
        return GroupKFold(n_splits=self.n_splits)

    def split(self, X, y=None, groups=None):
        """Yield ``(train_index, test_index)`` with no class (or group) in both.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            The samples; not read: the folds depend on ``y`` or ``groups``
            alone.
        y : array-like of shape (n_samples,)
            Class labels; required unless ``groups`` is given.
        groups : array-like of shape (n_samples,), default=None
            Split whole groups instead of classes.

        Yields
        ------
        train_index : ndarray
            The rows of the train fold.
        test_index : ndarray
            The rows of the test fold.
        """
        units = groups if groups is not None else y
        if units is None:
            raise ValueError("ClassDisjointSplit needs y (the classes) or groups to split")
        units = np.asarray(units)
        n_units = len(np.unique(units))
        if n_units < 2:
            raise ValueError(f"ClassDisjointSplit needs at least 2 classes (or groups), "
                             f"got {n_units}")
        yield from self._splitter().split(np.zeros(len(units)), None, units)

    def get_n_splits(self, X=None, y=None, groups=None):
        """The number of splits, ``n_splits``.

        Parameters
        ----------
        X, y, groups : object, default=None
            Ignored; present for the splitter API.

        Returns
        -------
        int
            ``n_splits``.
        """
        return self.n_splits


class LeaveOneTaskOut(LeaveOneGroupOut):
    """Leave each task out in turn: ``split(X, y, groups=task_ids)``.

    :class:`sklearn.model_selection.LeaveOneGroupOut` with the task ids as
    groups; the name says what the folds are in multi-task and transfer
    experiments (train on the other tasks, test on the held-out one).

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.model_selection import LeaveOneTaskOut
    >>> tasks = np.array([0, 0, 1, 1, 2, 2])
    >>> [test.tolist() for _, test in LeaveOneTaskOut().split(tasks, groups=tasks)]
    [[0, 1], [2, 3], [4, 5]]
    """
