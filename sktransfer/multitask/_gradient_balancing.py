"""Task balancing from accumulated per-coordinate gradient statistics: DB-MTL and ExcessMTL.

Both keep, per task, a running statistic of its gradient of the shared
parameters (DB-MTL an exponential moving average of the gradient of the
log-loss, ExcessMTL an Adagrad-style sum of squared gradients), so their
state has the size of the shared parameters for every task and cannot be
computed from the Gramian alone. Their weighters are
:class:`~._weighting_base.BackwardWeighter` modules built on
:func:`~._gradient_surgery.task_gradient_backward`. The state is created
on the first training step (its size is the number of shared parameters)
and held in buffers, so it is pickled and saved with the network.
"""

from numbers import Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval

from ._gradient_surgery import task_gradient_backward
from ._weighting_base import BackwardWeighter, Weighting

__all__ = ["DBMTLWeighting", "ExcessMTLWeighting"]

_CHUNK = 16384


class _LazyStateWeighter(BackwardWeighter):
    """A backward weighter with (T, P) buffers that take their shape on the first step."""

    _lazy_buffers = ()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self._lazy_buffers:
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.empty_like(state_dict[key]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _ensure(self, name, G):
        buf = getattr(self, name)
        if buf.shape != (self.n_tasks, G.shape[1]):
            setattr(self, name, G.new_zeros((self.n_tasks, G.shape[1])))
        return getattr(self, name)


# ---------------------------------------------------------------------- DB-MTL
class _DBMTLWeighter(_LazyStateWeighter):
    _lazy_buffers = ("grad_buffer",)

    def __init__(self, n_tasks, beta, beta_sigma):
        super().__init__()
        self.name = "db_mtl"
        self.n_tasks = int(n_tasks)
        self.beta = float(beta)
        self.beta_sigma = float(beta_sigma)
        self.eps = 1e-8
        self.register_buffer("grad_buffer", torch.zeros(0, 0))
        self.register_buffer("n_steps", torch.zeros((), dtype=torch.long))

    def forward(self, losses, present):
        w = present.to(losses.dtype)
        return (w * losses).sum(), w

    def combine(self, G, idx):
        buf = self._ensure("grad_buffer", G)
        self.n_steps += 1
        rate = self.beta / float(self.n_steps) ** self.beta_sigma
        full = len(idx) == self.n_tasks
        ix = None if full else torch.as_tensor(idx, device=G.device)
        rows = buf if full else buf[ix]
        # m <- g + rate (m - g) in place, and the squared norms, in column blocks that
        # stay in cache
        sq = G.new_zeros(G.shape[0])
        for start in range(0, G.shape[1], _CHUNK):
            block = rows[:, start:start + _CHUNK].lerp_(G[:, start:start + _CHUNK], 1 - rate)
            sq += torch.linalg.vecdot(block, block)
        if not full:
            buf[ix] = rows
        norms = sq.sqrt()
        alpha = norms.max() / (norms + self.eps)
        return alpha @ rows, alpha.detach().cpu().numpy()

    def backward(self, losses, present, model):
        log_losses = torch.log(losses + self.eps)
        total, weights = task_gradient_backward(self, losses, present, model, self.combine,
                                                task_losses=log_losses)
        return total, weights

    def extra_repr(self):
        return f"beta={self.beta}, beta_sigma={self.beta_sigma}"


class DBMTLWeighting(Weighting):
    """Dual-balancing multi-task learning (DB-MTL; Lin et al., 2023).

    Balances the losses and the gradients at once. Loss scale: every task
    descends its log-loss ``log(L_t + eps)``, which is invariant to the
    loss's scale. Gradient magnitude: the shared parameters' update is
    ``d = sum_t (max_k ||m_k|| / ||m_t||) m_t``, where ``m_t`` is an
    exponential moving average of the gradient of task ``t``'s log-loss,
    ``m_t <- g_t + (beta / s^beta_sigma) (m_t - g_t)`` at step ``s``: every
    task's (averaged) gradient is scaled to the largest norm. This is the
    authors' and LibMTL's update. Task-specific parameters get the gradient
    of the sum of the log-losses. The recorded weights are the scales
    ``max_k ||m_k|| / ||m_t||`` (1 for the task of largest norm).

    Parameters
    ----------
    beta : float in [0, 1), default=0.9
        Rate of the moving average of the gradients (0: the current
        gradient only).
    beta_sigma : float >= 0, default=0.0
        Decay of the rate with the step count ``s`` (0: constant).

    Examples
    --------
    >>> from sktransfer.multitask import DBMTLWeighting
    >>> DBMTLWeighting(beta=0.5).build(2)
    _DBMTLWeighter(beta=0.5, beta_sigma=0.0)
    """

    _parameter_constraints: dict = {
        "beta": [Interval(Real, 0, 1, closed="left")],
        "beta_sigma": [Interval(Real, 0, np.inf, closed="left")],
    }

    def __init__(self, beta=0.9, beta_sigma=0.0):
        self.beta = beta
        self.beta_sigma = beta_sigma

    def build(self, n_tasks, task_types=None):
        return _DBMTLWeighter(n_tasks, self.beta, self.beta_sigma)


# ------------------------------------------------------------------- ExcessMTL
class _ExcessMTLWeighter(_LazyStateWeighter):
    _lazy_buffers = ("sq_grad_sum",)

    def __init__(self, n_tasks, robust_step_size):
        super().__init__()
        self.name = "excess_mtl"
        self.n_tasks = int(n_tasks)
        self.robust_step_size = float(robust_step_size)
        self.register_buffer("sq_grad_sum", torch.zeros(0, 0))
        self.register_buffer("task_weights", torch.ones(n_tasks))
        self.register_buffer("initial_excess", torch.zeros(n_tasks))
        self.register_buffer("seen", torch.zeros(n_tasks, dtype=torch.bool))

    def forward(self, losses, present):
        w = self.task_weights.to(losses.dtype) * present.to(losses.dtype)
        return (w * losses).sum(), w

    def excess_risks(self, G, idx):
        """Accumulate ``g_t^2`` and return ``g_t^T diag(sum g^2)^(-1/2) g_t`` per present task."""
        acc = self._ensure("sq_grad_sum", G)
        full = len(idx) == self.n_tasks
        ix = None if full else torch.as_tensor(idx, device=G.device)
        rows = acc if full else acc[ix]
        # acc += g^2 and sum_p g^2 / sqrt(acc + eps), in column blocks that stay in cache
        out = G.new_zeros(G.shape[0])
        for start in range(0, G.shape[1], _CHUNK):
            g = G[:, start:start + _CHUNK]
            r = rows[:, start:start + _CHUNK].addcmul_(g, g).add(1e-7).rsqrt_()
            out += torch.linalg.vecdot(g * r, g)
        if not full:
            acc[ix] = rows
        return out

    def update(self, excess, idx):
        """The exponentiated-gradient step of the weights from the present tasks' excess risks."""
        excess = excess.to(self.task_weights.dtype)
        ix = torch.as_tensor(idx, device=self.task_weights.device)
        new = ~self.seen[ix]
        init = torch.where(new, excess, self.initial_excess[ix])
        self.initial_excess[ix] = init
        self.seen[ix] = True
        # A task's first excess risk is its baseline (its weight does not move on that step).
        ratio = torch.where(new | (init <= 0), 0.0, excess / torch.where(init > 0, init, 1.0))
        if (~new).any():
            w = self.task_weights.clone()
            w[ix] = w[ix] * torch.exp(self.robust_step_size * ratio)
            self.task_weights = w / w.sum() * self.n_tasks

    def combine(self, G, idx):
        self.update(self.excess_risks(G, idx), idx)
        w = self.task_weights[torch.as_tensor(idx, device=self.task_weights.device)].to(G.dtype)
        return w @ G, w.cpu().numpy()

    def backward(self, losses, present, model):
        return task_gradient_backward(self, losses, present, model, self.combine,
                                      other_loss=lambda w: (w * losses).sum())

    def extra_repr(self):
        return f"robust_step_size={self.robust_step_size}"


class ExcessMTLWeighting(Weighting):
    """Robust multi-task learning with excess risks (ExcessMTL; He et al., 2024).

    Tasks are weighted by how far each is from its own optimum, its excess
    risk, rather than by its loss (which also holds the irreducible label
    noise). The excess risk of task ``t`` is estimated by the second-order
    expansion ``E_t ~ g_t^T H_t^{-1} g_t / 2`` with the diagonal Hessian
    approximation of Adagrad, ``H_t = diag(sqrt(sum_s g_{t,s}^2))`` (the
    squared gradients of the shared parameters accumulated over the steps).
    The weights take an exponentiated-gradient step on the excess risks
    relative to each task's first one,
    ``w_t <- w_t exp(eta E_t / E_t(0))``, and are renormalised to sum to T
    (start: all 1). This is the authors' and LibMTL's update. The network
    descends ``sum_t w_t L_t`` (task-specific parameters included).

    Parameters
    ----------
    robust_step_size : float > 0, default=0.01
        The step ``eta`` of the weights' update (LibMTL's default).

    Examples
    --------
    >>> from sktransfer.multitask import ExcessMTLWeighting
    >>> ExcessMTLWeighting(robust_step_size=0.1).build(2).task_weights
    tensor([1., 1.])
    """

    _parameter_constraints: dict = {
        "robust_step_size": [Interval(Real, 0, np.inf, closed="neither")],
    }

    def __init__(self, robust_step_size=0.01):
        self.robust_step_size = robust_step_size

    def build(self, n_tasks, task_types=None):
        return _ExcessMTLWeighter(n_tasks, self.robust_step_size)
