"""Gradient surgery per coordinate or per task pair: GradDrop and GradVac.

Both change the per-task gradients of the shared parameters before they
are summed, with state or randomness that the Gramian-only protocol of
:class:`~._weighting_base.GradientWeighter` cannot carry (GradDrop works
coordinate by coordinate; GradVac keeps a running target similarity per
ordered task pair, indexed by task, including batches where a task is
absent). Their weighters are :class:`~._weighting_base.BackwardWeighter`
modules built on :func:`task_gradient_backward`, which computes the
per-task gradients of the shared parameters once (one
``torch.autograd.grad`` call per task, like the gradient-based
weightings) and writes the combined update into ``.grad``.
"""

from numbers import Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval

from ._gradient_step import _set_grad, _write, gramian, per_task_gradients, shared_parameters
from ._weighting_base import BackwardWeighter, Weighting

__all__ = ["GradDropWeighting", "GradVacWeighting", "task_gradient_backward"]


def task_gradient_backward(weighter, losses, present, model, combine, task_losses=None,
                           other_loss=None):
    """One backward pass through the per-task gradients of the shared parameters.

    Parameters
    ----------
    weighter : BackwardWeighter
        Its ``name`` names the weighting in error messages.
    losses : torch.Tensor of shape (n_tasks,)
        The per-task losses, with the graph of the forward pass.
    present : torch.Tensor of shape (n_tasks,), dtype bool
    model : nn.Module
        The architecture's network, with ``shared_parameters()``.
    combine : callable
        ``combine(G, idx) -> (direction, w)``: ``G`` is the (k, P) matrix of
        the per-task gradients of the ``k`` present tasks ``idx``;
        ``direction`` (P,) is written into the shared parameters' ``.grad``
        and ``w`` (k,) are the weights recorded for those tasks.
    task_losses : torch.Tensor of shape (n_tasks,), optional
        What the rows of ``G`` differentiate (default ``losses``; DB-MTL
        passes the log-losses).
    other_loss : callable, optional
        ``other_loss(w_full)`` is the scalar whose gradient the task-specific
        parameters get, given the (T,) weights of the step (after
        ``combine``). Default: the sum of ``task_losses`` over the present
        tasks, differentiated together with the per-task gradients (as in
        :func:`~._gradient_step.per_task_gradients`).

    Returns
    -------
    total : torch.Tensor, scalar
        ``sum_t w_t L_t`` with the recorded weights, detached.
    weights : torch.Tensor of shape (n_tasks,)
    """
    if task_losses is None:
        task_losses = losses
    idx = torch.nonzero(present).flatten().tolist()
    targets = shared_parameters(model, f"weighting={weighter.name!r}")
    shared_ids = {id(p) for p in targets}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in shared_ids]
    weights = losses.new_zeros(losses.shape[0])
    if not targets:
        # Nothing is shared: the tasks do not interact.
        weights = present.to(losses.dtype)
        (weights * task_losses).sum().backward()
        return (weights * losses.detach()).sum(), weights
    keep = other_loss is not None and bool(others)
    if keep:
        G = _task_gradients(task_losses, idx, targets)
    else:
        G, other_grads = per_task_gradients(task_losses, idx, targets, others)
    direction, w = combine(G, idx)
    weights[idx] = torch.as_tensor(w, dtype=losses.dtype, device=losses.device)
    _write(targets, direction.to(G.dtype))
    if keep:
        other_grads = torch.autograd.grad(other_loss(weights), others, allow_unused=True)
    for p, g in zip(others, other_grads):
        if g is not None:
            _set_grad(p, g)
    return (weights * losses.detach()).sum(), weights


def _task_gradients(task_losses, idx, targets):
    """The (k, P) per-task gradients, as per_task_gradients, with the graph kept after the last.

    Used when the task-specific parameters' pass (``other_loss``) follows.
    """
    sizes = [p.numel() for p in targets]
    G = task_losses.new_empty((len(idx), sum(sizes)))
    for k, t in enumerate(idx):
        grads = torch.autograd.grad(task_losses[t], targets, retain_graph=True,
                                    allow_unused=True)
        off = 0
        for g, n in zip(grads, sizes):
            if g is None:
                G[k, off:off + n] = 0
            else:
                G[k, off:off + n] = g.reshape(-1)
            off += n
    return G


# ------------------------------------------------------------------- GradDrop
def graddrop_direction(G, U, leak=0.0):
    """GradDrop's combination of the per-task gradients ``G`` (k, P) with uniform draws ``U`` (P,).

    ``P = (1 + sum_t g_t / sum_t |g_t|) / 2`` per coordinate; a coordinate
    keeps the positive parts of the gradients where ``P > U`` and the
    negative parts where ``P < U``; a task's dropped parts still pass with
    factor ``leak``.
    """
    # Per coordinate, the kept positive parts sum to (A + S) / 2 and the negative ones to
    # (S - A) / 2, with S = sum_t g_t and A = sum_t |g_t|; P > U is S > (2U - 1) A. Row by
    # row (a strided reduction over the tasks is slow) and in column blocks that stay in
    # cache.
    out = G.new_empty(G.shape[1])
    for start in range(0, G.shape[1], _CHUNK):
        block = G[:, start:start + _CHUNK]
        S = block[0].clone()
        A = block[0].abs()
        for row in block[1:]:
            S += row
            A += row.abs()
        dropped_positive = S <= (2 * U[start:start + _CHUNK] - 1).mul_(A)
        kept = out[start:start + _CHUNK]
        torch.add(A, S, out=kept)
        kept.mul_(0.5).sub_(A.mul_(dropped_positive))
        if leak:
            kept.mul_(1 - leak).add_(S, alpha=leak)
    return out


_CHUNK = 16384


class _GradDropWeighter(BackwardWeighter):
    def __init__(self, leak):
        super().__init__()
        self.name = "graddrop"
        self.leak = float(leak)

    def forward(self, losses, present):
        w = present.to(losses.dtype)
        return (w * losses).sum(), w

    def combine(self, G, idx):
        # The draws come from the seeded torch generator, like RLW's and PCGrad's.
        U = torch.rand(G.shape[1], dtype=G.dtype).to(G.device)
        return graddrop_direction(G, U, self.leak), np.ones(len(idx))

    def backward(self, losses, present, model):
        return task_gradient_backward(self, losses, present, model, self.combine)

    def extra_repr(self):
        return f"leak={self.leak}"


class GradDropWeighting(Weighting):
    """Gradient sign dropout (GradDrop; Chen et al., 2020).

    At every coordinate of the shared parameters, the per-task gradients
    ``g_t`` are reduced to one sign: with the positive sign purity
    ``P = (1 + sum_t g_t / sum_t |g_t|) / 2`` and a uniform draw ``U``, the
    coordinate keeps the positive parts of the task gradients if ``P > U``
    and the negative parts otherwise; the update is the sum of what is
    kept, ``d = sum_t (leak + (1 - leak) m_t) g_t``. Coordinates on which
    the tasks agree are kept as the plain sum; conflicting ones keep the
    side of the majority with the higher probability. The draws come from
    the seeded torch random generator, so a fit is reproducible with
    ``random_state``. Task-specific parameters get their ordinary gradient;
    the recorded weight of every present task is 1.

    The paper places GradDrop at a layer of activations (the sign corrected
    by the sign of the input and summed over the batch); here it acts on
    the per-task gradients of the shared parameters, where the sum over the
    batch is already part of each coordinate (the Jacobian form of
    torchjd's ``GradDrop`` aggregator, which it reproduces).

    Parameters
    ----------
    leak : float in [0, 1], default=0.0
        Fraction of a dropped gradient part that passes anyway (0: the
        paper; 1: the plain sum).

    Examples
    --------
    >>> import torch
    >>> from sktransfer.multitask._gradient_surgery import graddrop_direction
    >>> G = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # aligned: nothing is dropped
    >>> graddrop_direction(G, torch.rand(2))
    tensor([4., 6.])
    >>> from sktransfer.multitask import GradDropWeighting
    >>> GradDropWeighting(leak=0.1).build(2)
    _GradDropWeighter(leak=0.1)
    """

    _parameter_constraints: dict = {"leak": [Interval(Real, 0, 1, closed="both")]}

    def __init__(self, leak=0.0):
        self.leak = leak

    def build(self, n_tasks, task_types=None):
        return _GradDropWeighter(self.leak)


# -------------------------------------------------------------------- GradVac
def gradvac_weights(M, targets, beta, orders, eps=1e-8):
    """GradVac's coefficients on the original gradients, and the updated targets.

    Parameters
    ----------
    M : ndarray of shape (k, k)
        Gramian of the present tasks' gradients.
    targets : ndarray of shape (k, k)
        The target cosine similarities ``phi_hat[i, j]`` of the ordered
        pairs (updated in place and returned).
    beta : float
        EMA rate of the targets.
    orders : list of k lists
        For task ``i``, the order of the other tasks.

    Returns
    -------
    w : ndarray of shape (k,)
        ``d = sum_j w_j g_j``.
    targets : ndarray of shape (k, k)
    """
    k = M.shape[0]
    C = np.eye(k)
    norms = np.sqrt(np.clip(np.diag(M), 0, None))
    for i in range(k):
        cG = C[i] @ M  # dot products of the surgered g_i with every original g_j
        for j in orders[i]:
            norm_i = np.sqrt(max(float(cG @ C[i]), 0.0))
            phi = cG[j] / (norm_i * norms[j] + eps)
            phi_hat = targets[i, j]
            if phi < phi_hat:
                s_phi = np.sqrt(max(1 - phi * phi, 0.0))
                s_hat = np.sqrt(max(1 - phi_hat * phi_hat, 0.0))
                w = norm_i * (phi_hat * s_phi - phi * s_hat) / (norms[j] * s_hat + eps)
                C[i, j] += w
                cG = cG + w * M[j]
            targets[i, j] = (1 - beta) * phi_hat + beta * phi
    return C.sum(0), targets


class _GradVacWeighter(BackwardWeighter):
    def __init__(self, n_tasks, beta):
        super().__init__()
        self.name = "gradvac"
        self.beta = float(beta)
        self.register_buffer("targets", torch.zeros(n_tasks, n_tasks, dtype=torch.float64))

    def forward(self, losses, present):
        w = present.to(losses.dtype)
        return (w * losses).sum(), w

    def combine(self, G, idx):
        M = gramian(G)
        k = len(idx)
        # For each task, a random order of the others, from the seeded torch generator.
        orders = []
        for i in range(k):
            others = [j for j in range(k) if j != i]
            orders.append([others[p] for p in torch.randperm(k - 1).tolist()])
        sub = self.targets[idx][:, idx].cpu().numpy().copy()
        w, sub = gradvac_weights(M, sub, self.beta, orders)
        ix = torch.as_tensor(idx)
        self.targets[ix.unsqueeze(1), ix.unsqueeze(0)] = torch.as_tensor(
            sub, dtype=self.targets.dtype, device=self.targets.device)
        wt = torch.as_tensor(w, dtype=G.dtype, device=G.device)
        return wt @ G, w

    def backward(self, losses, present, model):
        return task_gradient_backward(self, losses, present, model, self.combine)

    def extra_repr(self):
        return f"beta={self.beta}"


class GradVacWeighting(Weighting):
    """Gradient vaccine (GradVac; Wang et al., 2021).

    Every ordered task pair ``(i, j)`` has a target cosine similarity
    ``phi_hat_ij`` (starting at 0), an exponential moving average of the
    similarities observed, ``phi_hat <- (1 - beta) phi_hat + beta phi``. At
    every step, for each task ``i`` and the other tasks ``j`` in a random
    order, if the similarity ``phi_ij`` of the (already adjusted) ``g_i``
    with ``g_j`` is below the target, ``g_i`` is moved toward ``g_j`` until
    it reaches it:
    ``g_i <- g_i + ||g_i|| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2))
    / (||g_j|| sqrt(1 - phi_hat^2)) g_j``. The update is the sum of the
    adjusted gradients; with the targets at 0 this is PCGrad's projection
    (the first step). The similarities are those of the whole shared
    gradient (the paper's and LibMTL's ``whole_model`` granularity) and
    depend on the Gramian only; the orders come from the seeded torch
    random generator. The recorded weights are the coefficients of the
    original task gradients in the update.

    Parameters
    ----------
    beta : float in [0, 1], default=0.5
        EMA rate of the target similarities (LibMTL's default; 0 keeps the
        targets at 0, i.e. PCGrad).

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.multitask._gradient_surgery import gradvac_weights
    >>> M = np.array([[1.0, -0.5], [-0.5, 1.0]])  # conflicting: PCGrad's projection
    >>> w, targets = gradvac_weights(M, np.zeros((2, 2)), 0.5, [[1], [0]])
    >>> w.round(3)
    array([1.5, 1.5])
    >>> from sktransfer.multitask import GradVacWeighting
    >>> GradVacWeighting(beta=0.1).build(2).targets
    tensor([[0., 0.],
            [0., 0.]], dtype=torch.float64)
    """

    _parameter_constraints: dict = {"beta": [Interval(Real, 0, 1, closed="both")]}

    def __init__(self, beta=0.5):
        self.beta = beta

    def build(self, n_tasks, task_types=None):
        return _GradVacWeighter(n_tasks, self.beta)
