"""Gradient episodic memory, GEM (Lopez-Paz and Ranzato, 2017).

An episodic memory keeps samples of every past task (``memory_size`` split
equally over the tasks learned). At every step the gradient ``g_k`` of the
loss on each past task's memory is computed; if the current gradient ``g``
conflicts with any (``<g, g_k> < 0``), the step uses the closest gradient
that conflicts with none,

``min_g~ 1/2 ||g - g~||^2  s.t.  G g~ >= 0``   (``G`` the rows ``g_k``),

solved through its dual in ``v`` (one variable per past task):

``min_v 1/2 v^T G G^T v + g^T G^T v  s.t.  v >= margin``,  ``g~ = G^T v + g``.

The ``margin`` (the paper's ``memory_strength``) pushes the solution
further into the feasible cone. The dual is solved exactly with
``scipy.optimize.nnls``: with ``u = v - margin`` and the Cholesky factor
``G G^T + eps I = L L^T`` it is ``min_{u >= 0} ||L^T u + L^{-1} c||^2``,
``c = (G G^T + eps I) margin + G g``. With one past task and ``margin =
0`` this is A-GEM's projection. A step costs one backward pass per past
task (over its whole memory).
"""

import numpy as np
import torch
from scipy.linalg import cho_factor, solve_triangular
from scipy.optimize import nnls
from torch.nn import functional as F

from .._weights import weighted_mean
from ._strategies import _NON_NEGATIVE, _POSITIVE_INT, Plugin, Strategy, Task, concat_weights

__all__ = ["GEM", "gem_projection"]


def gem_projection(g, G, margin=0.0, eps=1e-3):
    """GEM's projected gradient: ``g + G^T v`` with ``v`` the solution of the dual QP.

    Parameters
    ----------
    g : ndarray of shape (p,)
        The current gradient.
    G : ndarray of shape (k, p)
        The past tasks' gradients, one per row.
    margin : float, default=0.0
        Lower bound of the dual variables (GEM's ``memory_strength``).
    eps : float, default=1e-3
        Added to the diagonal of ``G G^T`` (GEM's regularisation), so that
        dependent rows still have a solution.

    Returns
    -------
    ndarray of shape (p,)
        The projected gradient ``g~``; with ``margin=0`` and ``eps=0``,
        ``G g~ >= 0`` and ``g~`` is the closest such vector to ``g``.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.continual import gem_projection
    >>> gem_projection(np.array([1.0, -1.0]), np.array([[0.0, 1.0]]), eps=0.0)
    array([1., 0.])
    """
    g = np.asarray(g, dtype=np.float64)
    G = np.atleast_2d(np.asarray(G, dtype=np.float64))
    P = G @ G.T
    P = 0.5 * (P + P.T) + eps * np.eye(P.shape[0])
    c = P @ np.full(P.shape[0], float(margin)) + G @ g
    L, _ = cho_factor(P, lower=True)
    L = np.tril(L)
    u, _ = nnls(L.T, -solve_triangular(L, c, lower=True))
    v = u + margin
    return g + G.T @ v


def _flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


class _GEMPlugin(Plugin):
    def __init__(self, memory_size, margin):
        self.memory_size = memory_size
        self.margin = float(margin)
        self.memories = {}  # task index -> Task (a random subset of the task)
        self.n_projected = 0
        self._task_index = None

    def before_task(self, net, task):
        self._task_index = task.index

    def project_gradients(self, net, params, grads):
        past = [m for k, m in self.memories.items() if k != self._task_index]
        if not past:
            return
        device = net.training_device()
        rows = []
        for mem in past:
            with torch.enable_grad():
                logits = net.module_(mem.X.to(device), mem.t.to(device)).float()
                ce = F.cross_entropy(logits, mem.y.to(device), reduction="none")
                loss = ce.mean() if mem.w is None else weighted_mean(ce, mem.w)
                ref = torch.autograd.grad(loss, params, allow_unused=True)
            rows.append(_flat([torch.zeros_like(p) if r is None else r
                               for p, r in zip(params, ref)]))
        G = torch.stack(rows)
        g = _flat(grads)
        if not bool((G @ g < 0).any()):
            return
        new = gem_projection(g.double().cpu().numpy(), G.double().cpu().numpy(), self.margin)
        new = torch.as_tensor(new, dtype=g.dtype, device=g.device)
        start = 0
        for grad in grads:
            n = grad.numel()
            grad.copy_(new[start:start + n].view_as(grad))
            start += n
        self.n_projected += 1

    def after_task(self, net, task):
        memories = dict(self.memories)
        if task.index in memories:  # a task continued: draw from its old and new samples
            old = memories[task.index]
            w = concat_weights([(len(old), old.w), (len(task), task.w)])
            task = Task(task.index, torch.cat([old.X, task.X]), torch.cat([old.y, task.y]),
                        torch.cat([old.t, task.t]), w)
        per_task = max(1, self.memory_size // (len(memories) + (task.index not in memories)))
        idx = torch.randperm(len(task))[:per_task]
        memories[task.index] = Task(task.index, task.X[idx], task.y[idx], task.t[idx],
                                    None if task.w is None else task.w[idx])
        # the older memories shrink to the new share (their first samples: a random subset)
        self.memories = {k: m if len(m) <= per_task else
                         Task(m.index, m.X[:per_task], m.y[:per_task], m.t[:per_task],
                              None if m.w is None else m.w[:per_task])
                         for k, m in memories.items()}

    def rollback_shared(self):
        # memories are rebuilt, never written to, after every task
        return [tensor for m in self.memories.values() for tensor in m.tensors()]


class GEM(Strategy):
    """GEM: project the gradient so no past task's memory loss increases.

    Keeps an episodic memory per past task (``memory_size`` samples split
    equally over the tasks learned, a random subset of each). When the
    current gradient has a negative dot product with the gradient of any
    past task's memory loss, it is replaced by the closest gradient that has
    none, the solution of GEM's dual quadratic program (see
    :func:`gem_projection`). Unlike :class:`AGEM`, which averages the memory
    into one constraint, every past task is a constraint of its own; a step
    costs one extra backward pass per past task.

    Parameters
    ----------
    memory_size : int, default=1000
        Samples of past tasks kept in total.
    margin : float, default=0.5
        Lower bound of the dual variables (the paper's ``memory_strength``;
        0 gives the plain projection).

    Examples
    --------
    >>> from sktransfer.continual import GEM, ContinualClassifier
    >>> ContinualClassifier(strategy=GEM(memory_size=200, margin=0.0))
    ContinualClassifier(strategy=GEM(margin=0.0, memory_size=200))
    """

    _parameter_constraints: dict = {"memory_size": [_POSITIVE_INT], "margin": [_NON_NEGATIVE]}
    _keeps_memory = True

    def __init__(self, memory_size=1000, margin=0.5):
        self.memory_size = memory_size
        self.margin = margin

    def _build(self, scenario):
        return _GEMPlugin(int(self.memory_size), self.margin)
