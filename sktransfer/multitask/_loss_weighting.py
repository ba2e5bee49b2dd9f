"""Loss-based task weightings: equal, static, uncertainty, DWA, RLW, FAMO, STCH and GradNorm.

These weight the task losses without the full per-task gradients: with
fixed weights (equal, static), or with weights set from the losses (and, for
GradNorm, from the gradient norms of the last shared layer). Their
weighters are :class:`~._weighting_base.Weighter` modules, called as
``weighter(losses, present) -> (total, weights)``, and use the hooks of that
base class:

* :meth:`~._weighting_base.Weighter.epoch_end`: DWA's loss history, STCH's
  nadir point at the end of its warm-up;
* :meth:`~._weighting_base.Weighter.after_step`: FAMO's update of its
  logits, GradNorm's renormalisation of its weights;
* GradNorm is a :class:`~._weighting_base.BackwardWeighter`: it runs the
  backward pass itself.

State that changes during training (DWA's loss history, FAMO's logits and
their optimizer state) is held in buffers, so it is saved and pickled with
the network. State only changes in training mode with gradients enabled;
the validation loss uses the current weights without updating them.
"""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import nn

from ._gradient_step import batch_task_losses, shared_parameters
from ._weighting_base import BackwardWeighter, Weighter, Weighting

__all__ = [
    "EqualWeighting",
    "StaticWeighting",
    "UncertaintyWeighting",
    "DWAWeighting",
    "RLWWeighting",
    "FAMOWeighting",
    "STCHWeighting",
    "GradNormWeighting",
]


# Finite numbers > 0 and >= 0 (an Interval never holds NaN, and these exclude inf).
_POSITIVE = Interval(Real, 0, np.inf, closed="neither")
_NON_NEGATIVE = Interval(Real, 0, np.inf, closed="left")


def _updating(module):
    return module.training and torch.is_grad_enabled()


# ------------------------------------------------------------ equal, static
class _StaticWeighter(Weighter):
    def __init__(self, weights):
        super().__init__()
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float32))
        self._all_ones = bool((self.weights == 1).all())

    def forward(self, losses, present):
        if self._all_ones:
            # An absent task's mean loss is exactly 0, so the plain sum is the
            # weighted sum; this is the hot path of equal weighting.
            return losses.sum(), present.to(losses.dtype)
        w = self.weights.to(losses.dtype) * present.to(losses.dtype)
        return (w * losses).sum(), w


class EqualWeighting(Weighting):
    """Sum of the per-task losses, each with weight 1.

    Examples
    --------
    >>> from sktransfer.multitask import EqualWeighting
    >>> EqualWeighting().build(3)
    _StaticWeighter()
    """

    def build(self, n_tasks, task_types=None):
        return _StaticWeighter(np.ones(n_tasks))


class StaticWeighting(Weighting):
    """Fixed, user-chosen task weights: ``sum_t w_t L_t``.

    Parameters
    ----------
    weights : array-like of shape (n_tasks,) or dict
        One non-negative weight per task, in the order of ``tasks_`` (or a
        dict from task to weight; missing tasks get weight 1).

    Examples
    --------
    >>> from sktransfer.multitask import StaticWeighting
    >>> StaticWeighting([1.0, 0.5]).build(2).weights
    tensor([1.0000, 0.5000])
    """

    # The values (finite, >= 0, one per task) depend on the tasks and are
    # checked when the weights are resolved against them.
    _parameter_constraints: dict = {"weights": ["array-like", dict, None]}

    def __init__(self, weights=None):
        self.weights = weights

    def build(self, n_tasks, task_types=None):
        return _StaticWeighter(task_weights_array(self.weights, n_tasks))


def task_weights_array(weights, n_tasks, tasks=None):
    """``weights`` (one per task, or a dict from task to weight) as a checked (T,) array."""
    if weights is None:
        raise ValueError("static weighting needs task weights; pass task_weights=[...]")
    if isinstance(weights, dict):
        if tasks is None:
            tasks = range(n_tasks)
        unknown = set(weights) - set(tasks)
        if unknown:
            raise ValueError(f"task_weights names unknown tasks {sorted(unknown, key=str)}; "
                             f"the tasks are {list(tasks)}")
        weights = [weights.get(t, 1.0) for t in tasks]
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_tasks,):
        raise ValueError(f"task_weights must have one weight per task ({n_tasks}), "
                         f"got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"task_weights must be finite and non-negative, got {w.tolist()}")
    return w


# ---------------------------------------------------------------- uncertainty
class _UncertaintyWeighter(Weighter):
    def __init__(self, n_tasks, init_log_var, regression):
        super().__init__()
        self.log_vars = nn.Parameter(torch.full((n_tasks,), float(init_log_var)))
        self.register_buffer("scale", torch.where(
            torch.as_tensor(regression, dtype=torch.bool), 0.5, 1.0))

    def forward(self, losses, present):
        s = self.log_vars.to(losses.dtype)
        mask = present.to(losses.dtype)
        precision = self.scale.to(losses.dtype) * torch.exp(-s)
        total = (mask * (precision * losses + 0.5 * s)).sum()
        return total, (precision * mask).detach()


class UncertaintyWeighting(Weighting):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, 2018).

    Each task has a learned log-variance ``s_t = log sigma_t^2``, optimised
    with the network. A classification task contributes
    ``exp(-s_t) L_t + s_t / 2`` (the paper's softmax-likelihood form, eq. 10),
    a regression task ``exp(-s_t) L_t / 2 + s_t / 2`` (eq. 7, Gaussian
    likelihood). The recorded weight of a task is its factor on ``L_t``.

    Parameters
    ----------
    init_log_var : float, default=0.0
        Initial ``s_t`` for every task (0 means weight 1 for classification).

    Examples
    --------
    >>> from sktransfer.multitask import UncertaintyWeighting
    >>> UncertaintyWeighting().build(2).log_vars.shape
    torch.Size([2])
    """

    _parameter_constraints: dict = {
        "init_log_var": [Interval(Real, -np.inf, np.inf, closed="neither")],
    }

    def __init__(self, init_log_var=0.0):
        self.init_log_var = init_log_var

    def build(self, n_tasks, task_types=None):
        regression = [t == "regression" for t in (task_types or ["classification"] * n_tasks)]
        return _UncertaintyWeighter(n_tasks, self.init_log_var, regression)


# ------------------------------------------------------------------------ DWA
class _DWAWeighter(Weighter):
    def __init__(self, n_tasks, temperature):
        super().__init__()
        self.temperature = float(temperature)
        self.register_buffer("epoch_losses", torch.zeros(2, n_tasks))
        self.register_buffer("n_epochs", torch.zeros((), dtype=torch.long))
        self.register_buffer("weights", torch.ones(n_tasks))

    def epoch_end(self, task_losses):
        new = torch.as_tensor(task_losses, dtype=self.epoch_losses.dtype,
                              device=self.epoch_losses.device)
        self.epoch_losses[0] = self.epoch_losses[1]
        self.epoch_losses[1] = new
        self.n_epochs += 1
        if self.n_epochs >= 2:
            prev, last = self.epoch_losses
            ratio = torch.where((prev > 0) & (last > 0), last / prev.clamp(min=1e-12), 1.0)
            T = ratio.shape[0]
            self.weights = T * torch.softmax(ratio / self.temperature, dim=0)

    def forward(self, losses, present):
        w = self.weights.to(losses.dtype) * present.to(losses.dtype)
        return (w * losses).sum(), w


class DWAWeighting(Weighting):
    """Dynamic weight averaging (Liu, Johns & Davison, 2019).

    A task's weight follows the rate at which its loss went down over the
    last two epochs: with ``r_t = L_t(e - 1) / L_t(e - 2)`` (mean epoch
    losses), ``w_t = T exp(r_t / temperature) / sum_k exp(r_k / temperature)``.
    A task whose loss falls more slowly gets more weight. The first two
    epochs use weight 1. The weights sum to T and change once per epoch.

    Parameters
    ----------
    temperature : float, default=2.0
        Softness of the weights; larger is closer to equal weighting (the
        paper uses 2).

    Examples
    --------
    >>> from sktransfer.multitask import DWAWeighting
    >>> w = DWAWeighting().build(2)
    >>> w.epoch_end([1.0, 1.0]); w.epoch_end([0.5, 1.0])  # task 0 halved its loss
    >>> w.weights.round(decimals=3)                        # task 1 gets more weight
    tensor([0.8760, 1.1240])
    """

    _parameter_constraints: dict = {"temperature": [_POSITIVE]}

    def __init__(self, temperature=2.0):
        self.temperature = temperature

    def build(self, n_tasks, task_types=None):
        return _DWAWeighter(n_tasks, self.temperature)


# ------------------------------------------------------------------------ RLW
class _RLWWeighter(Weighter):
    def forward(self, losses, present):
        mask = present.to(losses.dtype)
        if _updating(self):
            logits = torch.randn(losses.shape[0]).to(losses.device, losses.dtype)
            logits = logits.masked_fill(~present, float("-inf"))
            w = torch.softmax(logits, dim=0)
        else:
            w = mask / mask.sum().clamp(min=1)
        return (w * losses).sum(), w


class RLWWeighting(Weighting):
    """Random loss weighting (Lin et al., 2022).

    At every training step the weights are drawn afresh:
    ``w = softmax(z)``, ``z ~ N(0, I)`` over the tasks present in the batch
    (they sum to 1). The draws come from the seeded torch random generator.
    The validation loss uses the expected weights ``1 / T``.

    Examples
    --------
    >>> import torch
    >>> from sktransfer.multitask import RLWWeighting
    >>> total, w = RLWWeighting().build(3)(torch.ones(3), torch.ones(3, dtype=torch.bool))
    >>> round(float(w.sum()), 6)
    1.0
    """

    def build(self, n_tasks, task_types=None):
        return _RLWWeighter()


# ----------------------------------------------------------------------- FAMO
class _FAMOWeighter(Weighter):
    def __init__(self, n_tasks, lr, gamma, update, min_losses=0.0):
        super().__init__()
        self.lr = float(lr)
        self.gamma = float(gamma)
        self.update = update
        self.eps = 1e-8
        self.register_buffer("logits", torch.zeros(n_tasks))
        self.register_buffer("exp_avg", torch.zeros(n_tasks))
        self.register_buffer("exp_avg_sq", torch.zeros(n_tasks))
        self.register_buffer("n_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("min_losses", torch.full((n_tasks,), float(min_losses)))
        self.register_buffer("prev_losses", torch.zeros(n_tasks))
        self.register_buffer("prev_present", torch.zeros(n_tasks, dtype=torch.bool))

    def _gap(self, losses):
        return losses - self.min_losses.to(losses.dtype) + self.eps

    def forward(self, losses, present):
        if _updating(self) and self.update == "next_batch" and self.prev_present.any():
            self.update_logits(losses.detach(), present)
        z = torch.softmax(self.logits, dim=0).to(losses.dtype)
        gap = torch.where(present, self._gap(losses.detach()), 1.0)
        q = z * present.to(losses.dtype) / gap
        # d/dtheta sum_t z_t log(gap_t) / c = sum_t z_t / (c gap_t) dL_t/dtheta, with
        # c = sum_t z_t / gap_t; the loss is written with these weights so that its
        # value is a weighted task loss (and one task gets weight exactly 1).
        w = q / q.sum()
        if _updating(self):
            self.prev_losses = losses.detach().to(self.prev_losses.dtype)
            self.prev_present = present.clone()
        return (w * losses).sum(), w

    def update_logits(self, new_losses, present):
        """One step of the logits' Adam on FAMO's gradient, from the change of the losses."""
        both = present & self.prev_present
        new_losses = new_losses.to(self.prev_losses.dtype)
        delta = torch.log(self._gap(self.prev_losses)) - torch.log(self._gap(new_losses))
        delta = torch.where(both, delta, 0.0)
        z = torch.softmax(self.logits, dim=0)
        # The softmax Jacobian (symmetric) applied to delta.
        grad = z * (delta - (z * delta).sum())
        grad = grad + self.gamma * self.logits  # torch.optim.Adam's weight_decay
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        self.n_updates += 1
        step = int(self.n_updates)
        self.exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias1 = 1 - beta1 ** step
        bias2 = 1 - beta2 ** step
        denom = (self.exp_avg_sq.sqrt() / (bias2 ** 0.5)).add_(eps)
        self.logits.addcdiv_(self.exp_avg, denom, value=-self.lr / bias1)
        self.prev_present = torch.zeros_like(self.prev_present)

    def after_step(self, net, batch, **fit_params):
        if self.update != "same_batch" or not self.prev_present.any():
            return
        with torch.no_grad():
            losses, counts = batch_task_losses(net, batch, **fit_params)
        self.update_logits(losses, counts > 0)


class FAMOWeighting(Weighting):
    """Fast adaptive multitask optimisation (FAMO; Liu et al., 2023).

    FAMO balances the tasks' rates of improvement of the log-losses at O(1)
    cost per step. The task weights are ``z = softmax(xi)``; the network
    descends ``sum_t z_t log L_t / c`` (``c = sum_t z_t / L_t``), i.e. the
    task losses with weights ``z_t / (c L_t)``, which sum to 1. After each
    optimizer step the losses of the same batch are computed again and the
    logits ``xi`` take a step of their own Adam (learning rate ``lr``,
    weight decay ``gamma``) on the gradient ``J_softmax(xi)^T delta``, with
    ``delta_t = log L_t(before) - log L_t(after)``: tasks that improved less
    gain weight. This is Algorithm 1 of the paper and the authors' code.

    Parameters
    ----------
    lr : float, default=0.025
        Learning rate of the logits' Adam (the paper's ``beta``).
    gamma : float, default=0.01
        Weight decay (regularisation) of the logits.
    update : {"same_batch", "next_batch"}, default="same_batch"
        ``"same_batch"`` (the paper): one extra forward pass, without
        gradients, of the batch after the step. ``"next_batch"``: no extra
        pass; the losses of the next batch, before its step, stand in for
        the losses after the step (cheaper, noisier).

    Examples
    --------
    >>> from sktransfer.multitask import FAMOWeighting
    >>> FAMOWeighting(lr=0.05).build(3).logits
    tensor([0., 0., 0.])
    """

    _parameter_constraints: dict = {
        "lr": [_POSITIVE],
        "gamma": [_NON_NEGATIVE],
        "update": [StrOptions({"same_batch", "next_batch"})],
    }

    def __init__(self, lr=0.025, gamma=0.01, update="same_batch"):
        self.lr = lr
        self.gamma = gamma
        self.update = update

    def build(self, n_tasks, task_types=None):
        return _FAMOWeighter(n_tasks, self.lr, self.gamma, self.update)


# ----------------------------------------------------------------------- STCH
class _STCHWeighter(Weighter):
    def __init__(self, n_tasks, mu, warmup_epochs):
        super().__init__()
        self.mu = float(mu)
        self.warmup_epochs = int(warmup_epochs)
        self.eps = 1e-20
        self.register_buffer("nadir", torch.ones(n_tasks))
        self.register_buffer("n_epochs", torch.zeros((), dtype=torch.long))

    def epoch_end(self, task_losses):
        self.n_epochs += 1
        if int(self.n_epochs) == self.warmup_epochs:
            new = torch.as_tensor(task_losses, dtype=self.nadir.dtype, device=self.nadir.device)
            self.nadir = torch.where(torch.isfinite(new) & (new > 0), new, 1.0)

    def objective(self, losses, present):
        """The scalarized objective and its derivative with respect to every loss."""
        mask = present.to(losses.dtype)
        safe = torch.where(present, losses, 1.0)
        if int(self.n_epochs) < self.warmup_epochs:
            # Warm-up: the sum of the log-losses (weights 1 / L_t).
            value = (mask * torch.log(safe + self.eps)).sum()
            return value, mask / (safe + self.eps)
        nadir = self.nadir.to(losses.dtype)
        s = torch.log(safe / nadir + self.eps).masked_fill(~present, float("-inf"))
        T = losses.shape[0]
        value = T * self.mu * torch.logsumexp(s / self.mu, dim=0)
        w = T * torch.softmax(s / self.mu, dim=0) / (safe + self.eps * nadir)
        return value, w * mask

    def forward(self, losses, present):
        # The objective depends on the network only through the losses, so its gradient is
        # that of sum_t w_t L_t with w_t = d objective / d L_t held constant; the loss is
        # written so (as FAMO's), and its value is a weighted task loss.
        _, w = self.objective(losses, present)
        w = w.detach()
        return (w * losses).sum(), w

    def extra_repr(self):
        return f"mu={self.mu}, warmup_epochs={self.warmup_epochs}"


class STCHWeighting(Weighting):
    """Smooth Tchebycheff scalarization (STCH; Lin et al., 2024).

    The network descends a smooth maximum of the normalised task losses,
    ``T mu log sum_t exp(log(L_t / z_t) / mu)``: as ``mu -> 0`` it tends to
    the Tchebycheff scalarization ``T max_t log(L_t / z_t)`` (only the worst
    task is descended), a large ``mu`` approaches the sum of the log-losses.
    The normalisation ``z_t`` (the nadir point) is each task's mean
    training loss over the last of ``warmup_epochs`` epochs, during which
    the network descends ``sum_t log L_t``; with ``warmup_epochs=0`` it is 1.
    This is the authors' multi-task setting as in LibMTL (log-transformed
    losses, the ideal point at 0 in log space). The recorded weight of a
    task is the derivative of the objective with respect to its loss,
    ``T softmax_t(log(L / z) / mu) / L_t``; the loss the network descends is
    written as ``sum_t w_t L_t`` with these weights held constant, which has
    the objective's gradient (the objective's own value is
    ``weighter.objective(losses, present)[0]``).

    Parameters
    ----------
    mu : float > 0, default=1.0
        Smoothing: the temperature of the soft maximum.
    warmup_epochs : int >= 0, default=4
        Epochs of plain log-loss descent before STCH; the last one sets the
        nadir point.

    Examples
    --------
    >>> import torch
    >>> from sktransfer.multitask import STCHWeighting
    >>> w = STCHWeighting(mu=0.01, warmup_epochs=0).build(2)
    >>> value, _ = w.objective(torch.tensor([1.0, 2.0]), torch.ones(2, dtype=torch.bool))
    >>> round(float(value) / 2, 4)  # close to max_t log L_t = log 2
    0.6931
    """

    _parameter_constraints: dict = {
        "mu": [_POSITIVE],
        "warmup_epochs": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(self, mu=1.0, warmup_epochs=4):
        self.mu = mu
        self.warmup_epochs = warmup_epochs

    def build(self, n_tasks, task_types=None):
        return _STCHWeighter(n_tasks, self.mu, self.warmup_epochs)


# ------------------------------------------------------------------- GradNorm
class _GradNormWeighter(BackwardWeighter):
    def __init__(self, n_tasks, alpha):
        super().__init__()
        self.alpha = float(alpha)
        self.task_weights = nn.Parameter(torch.ones(n_tasks))
        self.register_buffer("initial_losses", torch.zeros(n_tasks))
        self.register_buffer("seen", torch.zeros(n_tasks, dtype=torch.bool))

    def forward(self, losses, present):
        w = self.task_weights.detach().to(losses.dtype) * present.to(losses.dtype)
        return (w * losses).sum(), w

    @staticmethod
    def last_shared_layer(model):
        params = [p for p in shared_parameters(model, "weighting='gradnorm'") if p.dim() >= 2]
        if not params:
            raise ValueError(
                f"weighting='gradnorm' balances the gradient norms at the last shared layer, "
                f"but {type(model).__name__}.shared_parameters() has no weight matrix")
        return params[-1]

    def backward(self, losses, present, model):
        W = self.last_shared_layer(model)
        idx = torch.nonzero(present).flatten().tolist()
        detached = losses.detach()
        new = present & ~self.seen
        if new.any():
            self.initial_losses = torch.where(new, detached.to(self.initial_losses.dtype),
                                              self.initial_losses)
            self.seen = self.seen | new
        norms = torch.stack([
            torch.autograd.grad(losses[t], W, retain_graph=True)[0].norm() for t in idx])
        w = self.task_weights
        G = w[idx] * norms.to(w.dtype)
        ratio = detached[idx].to(w.dtype) / self.initial_losses[idx].clamp(min=1e-12)
        r = ratio / ratio.mean()
        target = (G.mean() * r ** self.alpha).detach()
        grad_loss = (G - target).abs().sum()
        w.grad = torch.autograd.grad(grad_loss, w)[0]
        weights = w.detach().to(losses.dtype) * present.to(losses.dtype)
        total = (weights * losses).sum()
        total.backward()
        return total.detach(), weights

    def after_step(self, net, batch, **fit_params):
        # Renormalise so the weights sum to T (and stay positive).
        with torch.no_grad():
            w = self.task_weights
            w.clamp_(min=1e-6)
            w.mul_(w.shape[0] / w.sum())


class GradNormWeighting(Weighting):
    """Gradient normalisation (GradNorm; Chen et al., 2018).

    The task weights ``w_t`` are learned so that the gradient norms of the
    weighted losses at the last shared layer ``W``,
    ``G_t = ||grad_W w_t L_t||``, follow the tasks' relative training
    rates: the weights descend
    ``L_grad = sum_t |G_t - mean(G) r_t^alpha|``, with
    ``r_t = (L_t / L_t(0)) / mean_k(L_k / L_k(0))`` and the target held
    constant, while the network descends ``sum_t w_t L_t``. After each step
    the weights are renormalised to sum to T. ``W`` is the last weight
    matrix (a parameter with two or more dimensions) of the
    architecture's ``shared_parameters()``; ``L_t(0)`` is the task's loss on
    the first batch it appears in. The weights are parameters of the
    network, updated by the estimator's optimizer.

    Parameters
    ----------
    alpha : float, default=1.5
        Strength of the pull toward equal training rates (0: equal
        gradient norms; the paper uses 0.12 to 1.5 depending on the data).

    Examples
    --------
    >>> from sktransfer.multitask import GradNormWeighting
    >>> GradNormWeighting(alpha=0.5).build(2).task_weights
    Parameter containing:
    tensor([1., 1.], requires_grad=True)
    """

    _parameter_constraints: dict = {"alpha": [_NON_NEGATIVE]}

    def __init__(self, alpha=1.5):
        self.alpha = alpha

    def build(self, n_tasks, task_types=None):
        return _GradNormWeighter(n_tasks, self.alpha)
