"""GDumb: a greedy class-balanced memory and a network retrained on it (Prabhu et al., 2020).

GDumb never trains on the stream itself. Its memory of ``memory_size``
samples is filled greedily: a sample is stored while the memory has room;
once it is full, a sample of class ``y`` is stored only if ``y`` holds fewer
than ``memory_size / n_classes_seen`` slots, replacing a random sample of
the class holding the most. When a task arrives its samples are offered to
the memory in order, the network is re-initialised (every layer's
``reset_parameters``, drawn from the estimator's seeded generator) and
trained from scratch on the memory alone, for the estimator's
``max_epochs``. So the network that predicts after task ``k`` is the one
trained on the memory at the end of task ``k``.

Cost: every task trains a fresh network for ``max_epochs`` epochs on at most
``memory_size`` samples, whatever the size of the task: ``n_tasks *
max_epochs * memory_size`` sample passes in all, and what the network
learned before is thrown away at each task.
"""

import numpy as np
import torch

from ._strategies import _POSITIVE_INT, Plugin, Strategy, Task, concat_weights

__all__ = ["GDumb", "greedy_balanced_update"]


def greedy_balanced_update(memory_labels, new_labels, capacity, rng):
    """GDumb's greedy class-balanced sampler over a stream of labels.

    Parameters
    ----------
    memory_labels : ndarray of shape (m,)
        The labels held in memory now (``m <= capacity``).
    new_labels : ndarray of shape (n,)
        The labels of the incoming samples, in stream order.
    capacity : int
        The memory's size.
    rng : numpy.random.Generator
        Draws the sample evicted from the largest class.

    Returns
    -------
    ndarray of shape (m',)
        The memory's slots afterwards: ``i < m`` for the memory's sample
        ``i``, ``m + j`` for the incoming sample ``j``.
    """
    m = len(memory_labels)
    slots = list(range(m))
    labels = list(np.asarray(memory_labels).tolist())
    by_class = {}
    for pos, c in enumerate(labels):
        by_class.setdefault(c, []).append(pos)
    for j, c in enumerate(np.asarray(new_labels).tolist()):
        by_class.setdefault(c, [])
        if len(slots) < capacity:
            by_class[c].append(len(slots))
            slots.append(m + j)
            labels.append(c)
            continue
        if len(by_class[c]) >= capacity / len(by_class):
            continue
        largest = max(by_class, key=lambda k: len(by_class[k]))
        members = by_class[largest]
        pos = members.pop(int(rng.integers(len(members))))
        slots[pos] = m + j
        labels[pos] = c
        by_class[c].append(pos)
    return np.asarray(slots, dtype=np.int64)


def reinitialize(module):
    """Re-draw the parameters of every layer of ``module`` that has ``reset_parameters``."""
    for sub in module.modules():
        if sub is not module and hasattr(sub, "reset_parameters"):
            sub.reset_parameters()


class _GDumbPlugin(Plugin):
    def __init__(self, memory_size):
        self.memory_size = memory_size
        self.memory = None  # a Task holding the memory's samples
        self.n_retrained = 0

    def training_data(self, task):
        old = self.memory
        old_y = np.empty(0, dtype=np.int64) if old is None else old.y.numpy()
        rng = np.random.default_rng(int(torch.randint(1 << 31, ())))
        slots = torch.as_tensor(greedy_balanced_update(old_y, task.y.numpy(),
                                                       self.memory_size, rng))
        if old is None:
            X, y, t, w = task.X[slots], task.y[slots], task.t[slots], \
                None if task.w is None else task.w[slots]
        else:
            X = torch.cat([old.X, task.X])[slots]
            y = torch.cat([old.y, task.y])[slots]
            t = torch.cat([old.t, task.t])[slots]
            w = concat_weights([(len(old), old.w), (len(task), task.w)])
            w = None if w is None else w[slots]
        self.memory = Task(task.index, X, y, t, w)
        return self.memory

    def before_task(self, net, task):
        reinitialize(net.module_)
        self.n_retrained += 1

    def rollback_shared(self):
        # the memory is rebuilt, never written to, at every task
        return [] if self.memory is None else self.memory.tensors()


class GDumb(Strategy):
    """GDumb: retrain from scratch, at every task, on a class-balanced memory.

    The memory of ``memory_size`` samples is filled greedily so that every
    class seen holds about the same number of samples; at each task the
    network is re-initialised and trained on the memory only (for the
    estimator's ``max_epochs``), never on the stream itself. A simple
    baseline that many continual methods fail to beat (Prabhu et al.,
    2020), at the cost of a full training run per task
    (``max_epochs * memory_size`` sample passes).

    Parameters
    ----------
    memory_size : int, default=1000
        Samples kept in memory in total.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.continual import ContinualClassifier, GDumb
    >>> from sktransfer.datasets import make_split_tasks
    >>> X, y = load_digits(return_X_y=True)
    >>> Xs, ys, t = make_split_tasks(X / 16, y, n_tasks=5)
    >>> clf = ContinualClassifier(strategy=GDumb(memory_size=300), max_epochs=10, lr=0.01,
    ...                           random_state=0).fit(Xs, ys, task_ids=t)
    >>> import numpy as np
    >>> np.bincount(clf.net_.plugins[0].memory.y.numpy())
    array([30, 30, 30, 30, 30, 30, 30, 30, 30, 30])
    """

    _parameter_constraints: dict = {"memory_size": [_POSITIVE_INT]}
    _keeps_memory = True

    def __init__(self, memory_size=1000):
        self.memory_size = memory_size

    def _build(self, scenario):
        return _GDumbPlugin(int(self.memory_size))
