"""Experience replay with a reservoir memory (Chaudhry et al., 2019).

A :class:`ReservoirBuffer` of ``memory_size`` samples holds a uniform random
sample of every sample seen so far (reservoir sampling, Vitter's algorithm
R), whatever the number of tasks. While a task is learned, every mini-batch
is concatenated with as many samples drawn from the memory, so the loss is
the mean cross-entropy over current and remembered samples together.
"""

import numpy as np
import torch

from .._weights import SAMPLE_WEIGHT
from ._strategies import _POSITIVE_INT, Plugin, Strategy, concat_weights

__all__ = ["ReservoirBuffer", "Replay"]


class ReservoirBuffer:
    """A fixed-size uniform sample of a stream (reservoir sampling).

    Parameters
    ----------
    capacity : int
        Number of samples kept.

    Attributes
    ----------
    n_seen : int
        Samples offered so far.
    size : int
        Samples held (``min(n_seen, capacity)``).
    logits : torch.Tensor of shape (capacity, n_outputs) or None
        The network's outputs stored with the samples (Dark Experience
        Replay), None until samples are added with ``logits``.

    Examples
    --------
    >>> import torch
    >>> from sktransfer.continual import ReservoirBuffer
    >>> buf = ReservoirBuffer(5)
    >>> buf.add(torch.randn(20, 3), torch.arange(20), torch.zeros(20, dtype=torch.long))
    >>> buf.size, buf.n_seen
    (5, 20)
    """

    def __init__(self, capacity):
        self.capacity = int(capacity)
        self.n_seen = 0
        self.size = 0
        self.X = self.y = self.t = None
        #: The samples' weights, None until weighted samples are added.
        self.w = None
        self.logits = None

    def add(self, X, y, t, w=None, logits=None):
        """Offer samples in order; each is kept with probability capacity / n_seen.

        Draws use the global torch generator (seeded by the estimators).

        Parameters
        ----------
        X : torch.Tensor of shape (m, ...)
            The samples' inputs.
        y : torch.Tensor of shape (m,)
            Their labels.
        t : torch.Tensor of shape (m,)
            Their task indices.
        w : torch.Tensor of shape (m,) or None, default=None
            Their weights in the loss; samples added without weights weigh 1.
        logits : torch.Tensor of shape (m, n_outputs) or None, default=None
            Outputs stored with the samples (the network's logits when they
            are added, for DER); a buffer given logits once needs them at
            every call.
        """
        m = X.shape[0]
        if m == 0 or self.capacity == 0:
            return
        if self.X is None:
            self.X = X.new_zeros((self.capacity,) + tuple(X.shape[1:]))
            self.y = y.new_zeros((self.capacity,))
            self.t = t.new_zeros((self.capacity,))
        if logits is not None and self.logits is None:
            if self.size:
                raise ValueError("logits must be given from the first samples added on")
            self.logits = logits.new_zeros((self.capacity,) + tuple(logits.shape[1:]))
        if self.logits is not None and logits is None:
            raise ValueError("this buffer stores logits: pass logits with every sample")
        if w is not None and self.w is None:
            self.w = w.new_ones((self.capacity,))
        if self.w is not None and w is None:
            w = self.w.new_ones((m,))
        free = min(self.capacity - self.size, m)
        if free:
            sl = slice(self.size, self.size + free)
            self.X[sl], self.y[sl], self.t[sl] = X[:free], y[:free], t[:free]
            if w is not None:
                self.w[sl] = w[:free]
            if logits is not None:
                self.logits[sl] = logits[:free]
            self.size += free
        if free < m:
            # sample i (0-based position n in the stream) replaces slot j ~ U{0..n}
            # when j < capacity; later samples win ties, as in the sequential algorithm.
            pos = torch.arange(self.n_seen + free, self.n_seen + m, dtype=torch.float64)
            slots = torch.floor(torch.rand(m - free, dtype=torch.float64) * (pos + 1)).long()
            keep = torch.nonzero(slots < self.capacity).squeeze(1).numpy()
            if keep.size:
                slots_kept = slots.numpy()[keep]
                rev_slots, rev_first = np.unique(slots_kept[::-1], return_index=True)
                src = torch.as_tensor(free + keep[::-1][rev_first])
                dst = torch.as_tensor(rev_slots)
                self.X[dst], self.y[dst], self.t[dst] = X[src], y[src], t[src]
                if w is not None:
                    self.w[dst] = w[src]
                if logits is not None:
                    self.logits[dst] = logits[src]
        self.n_seen += m

    def sample(self, n, return_weight=False, return_logits=False):
        """``n`` samples drawn uniformly with replacement from the samples held.

        Draws use the global torch generator (seeded by the estimators).

        Parameters
        ----------
        n : int
            Number of samples to draw.
        return_weight : bool, default=False
            Also return the samples' weights.
        return_logits : bool, default=False
            Also return the stored logits (last).

        Returns
        -------
        X : torch.Tensor of shape (n, ...)
            The inputs.
        y : torch.Tensor of shape (n,)
            The labels.
        t : torch.Tensor of shape (n,)
            The task indices.
        w : torch.Tensor of shape (n,) or None
            Only with ``return_weight=True``: the weights, None when the
            buffer holds no weights.
        logits : torch.Tensor of shape (n, n_outputs) or None
            Only with ``return_logits=True``: the stored logits.
        """
        idx = torch.randint(self.size, (int(n),))
        out = [self.X[idx], self.y[idx], self.t[idx]]
        if return_weight:
            out.append(None if self.w is None else self.w[idx])
        if return_logits:
            out.append(None if self.logits is None else self.logits[idx])
        return tuple(out)


def _concat(X, y, Xm, ym, tm, wm):
    Xc = {"X": torch.cat([X["X"], Xm.to(X["X"].device)]),
          "task_ids": torch.cat([X["task_ids"], tm.to(X["task_ids"].device)])}
    w = concat_weights([(len(y), X.get(SAMPLE_WEIGHT)), (len(ym), wm)])
    if w is not None:
        Xc[SAMPLE_WEIGHT] = w
    return Xc, torch.cat([y, ym.to(y.device)])


class _ReplayPlugin(Plugin):
    def __init__(self, memory_size, replay_batch_size):
        self.buffer = ReservoirBuffer(memory_size)
        self.replay_batch_size = replay_batch_size

    def augment_batch(self, net, X, y):
        if not self.buffer.size:
            return X, y
        n = self.replay_batch_size or len(y)
        return _concat(X, y, *self.buffer.sample(n, return_weight=True))

    def after_task(self, net, task):
        self.buffer.add(task.X, task.y, task.t, task.w)


class Replay(Strategy):
    """Experience replay from a reservoir memory of ``memory_size`` samples.

    Every mini-batch of the current task is concatenated with
    ``replay_batch_size`` samples drawn from the memory (the same number as
    the batch when ``None``), and the loss is the mean over both. After each
    task its samples are offered to the reservoir, which keeps a uniform
    sample of everything seen. In the task scenario remembered samples keep
    their task and are answered by their own head. With weighted data
    (``sample_weight``, ``class_weight``) remembered samples keep their
    weights.

    Parameters
    ----------
    memory_size : int, default=1000
        Samples kept in memory in total.
    replay_batch_size : int or None, default=None
        Memory samples added to each mini-batch.

    Examples
    --------
    >>> from sktransfer.continual import ContinualClassifier, EWC, Replay
    >>> ContinualClassifier(strategy=[EWC(), Replay(memory_size=500)])
    ContinualClassifier(strategy=[EWC(), Replay(memory_size=500)])
    """

    _parameter_constraints: dict = {
        "memory_size": [_POSITIVE_INT],
        "replay_batch_size": [_POSITIVE_INT, None],
    }
    _keeps_memory = True

    def __init__(self, memory_size=1000, replay_batch_size=None):
        self.memory_size = memory_size
        self.replay_batch_size = replay_batch_size

    def _build(self, scenario):
        batch = None if self.replay_batch_size is None else int(self.replay_batch_size)
        return _ReplayPlugin(int(self.memory_size), batch)
