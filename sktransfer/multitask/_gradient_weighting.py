"""Gradient-based task weightings: MGDA, MGDA-UB, PCGrad, CAGrad, IMTL-G, UPGrad, FairGrad, ...

Each strategy turns the per-task gradients of the shared parameters into
one update ``d = sum_t w_t g_t``; the weights ``w`` depend on the gradients
through their Gramian only and are computed by the solvers of
:mod:`sktransfer.multitask._solvers`. The weighters are
:class:`~._weighting_base.GradientWeighter` modules: the net trains them
with :func:`sktransfer.multitask._gradient_step.gradient_train_step`, which
computes the per-task gradients and calls their ``solve(M, losses)``.
Called as ``weighter(losses, present)`` (for the validation loss) they
return the plain sum of the task losses.
"""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, Options, StrOptions

from . import _solvers
from ._weighting_base import GradientWeighter, Weighting

__all__ = [
    "MGDAWeighting",
    "MGDAUBWeighting",
    "PCGradWeighting",
    "CAGradWeighting",
    "IMTLWeighting",
    "UPGradWeighting",
    "AlignedMTLWeighting",
    "NashMTLWeighting",
    "FairGradWeighting",
]


class _SolverWeighter(GradientWeighter):
    """A gradient weighter whose weights are ``solver(M, **kwargs)``."""

    def __init__(self, name, solver, **kwargs):
        super().__init__()
        self.name = name
        self._solver = solver
        self._kwargs = kwargs

    def solve(self, M, losses):
        return self._solver(M, **self._kwargs)

    def extra_repr(self):
        return f"{self.name!r}"


# The name sktransfer 0.1 pickled this class under.
_GradientWeighter = _SolverWeighter


class _MGDAWeighter(_SolverWeighter):
    def __init__(self, name, normalization, solver, level):
        super().__init__(name, None)
        self.normalization = normalization
        self.solver = solver
        self.level = level

    def solve(self, M, losses):
        Mn, scale = _solvers.normalize_gramian(M, losses, self.normalization)
        if np.any(scale <= 0):
            # A zero gradient (or loss) is the min-norm point: the step is zero.
            w = np.zeros(len(scale))
            w[int(np.argmin(scale))] = 1.0
            return w
        if self.solver == "frank_wolfe":
            return _solvers.min_norm_weights(Mn)
        return _solvers.min_norm_weights_nnls(Mn)


class _PCGradWeighter(_SolverWeighter):
    def __init__(self):
        super().__init__("pcgrad", None)

    def solve(self, M, losses):
        T = M.shape[0]
        # The task order of each projection, from the (seeded) torch RNG.
        orders = [torch.randperm(T).tolist() for _ in range(T)]
        return _solvers.pcgrad_weights(M, orders)


_NORMALIZATIONS = ("none", "l2", "loss", "loss+")


# A finite number >= 0 (an Interval never holds NaN, and this one excludes inf).
_NON_NEGATIVE = Interval(Real, 0, np.inf, closed="left")


class MGDAWeighting(Weighting):
    """Multiple-gradient descent (Sener & Koltun, 2018).

    The update is the min-norm point of the convex hull of the per-task
    gradients of the shared parameters: ``d = G^T w`` with
    ``w = argmin_{w >= 0, sum w = 1} ||G^T w||^2``. It decreases every
    task's loss when such a direction exists (a Pareto-stationary point
    otherwise). The weights sum to 1; a task whose gradient is zero makes
    the min-norm point, and so the step of the shared parameters, zero.
    Task-specific parameters get their ordinary gradient.

    Parameters
    ----------
    normalization : {"none", "l2", "loss", "loss+"}, default="none"
        How the gradients are scaled before the min-norm problem (the
        options of the authors' code): ``g_t / ||g_t||``, ``g_t / L_t``,
        ``g_t / (L_t ||g_t||)`` or unscaled. The weights found are applied
        to the unscaled gradients, as in the authors' code.
    solver : {"nnls", "frank_wolfe"}, default="nnls"
        ``"frank_wolfe"``: the paper's Frank-Wolfe iterations (Algorithm 2,
        started from the best pair, at most 250 iterations, tolerance
        1e-5). ``"nnls"``: the exact solution through one non-negative
        least-squares problem (faster, and exact where Frank-Wolfe stops
        early). Two tasks use the closed form either way.

    Examples
    --------
    >>> from sktransfer.multitask import MGDAWeighting
    >>> import numpy as np
    >>> M = np.array([[1.0, 0.0], [0.0, 4.0]])  # orthogonal gradients, norms 1 and 2
    >>> MGDAWeighting().build(2).solve(M, np.ones(2)).round(2)
    array([0.8, 0.2])
    """

    _level = "parameters"
    _name = "mgda"
    _parameter_constraints: dict = {
        "normalization": [StrOptions(set(_NORMALIZATIONS))],
        "solver": [StrOptions({"nnls", "frank_wolfe"})],
    }

    def __init__(self, normalization="none", solver="nnls"):
        self.normalization = normalization
        self.solver = solver

    def build(self, n_tasks, task_types=None):
        return _MGDAWeighter(self._name, self.normalization, self.solver, self._level)


class MGDAUBWeighting(MGDAWeighting):
    """MGDA-UB: MGDA on the gradients of the shared representation (Sener & Koltun, 2018).

    The paper's efficient upper bound (Section 3.3): with a shared encoder
    ``Z = trunk(X)``, the min-norm problem is solved for the gradients of
    the task losses with respect to ``Z`` (one (n, d) matrix per task)
    instead of the shared parameters, so the per-task backward passes stop
    at ``Z``; the trunk then takes one backward pass of
    ``sum_t w_t dL_t/dZ``. Needs an architecture with a ``trunk`` and
    ``heads`` (``architecture="hard"``).

    Parameters
    ----------
    normalization : {"none", "l2", "loss", "loss+"}, default="none"
        Gradient scaling before the min-norm problem; see
        :class:`MGDAWeighting`. The authors' released configurations use
        ``"loss+"`` or ``"l2"`` depending on the data set.
    solver : {"nnls", "frank_wolfe"}, default="nnls"
        See :class:`MGDAWeighting`.

    Examples
    --------
    >>> from sktransfer.multitask import MGDAUBWeighting
    >>> MGDAUBWeighting(normalization="l2").build(3).level
    'representation'
    """

    _level = "representation"
    _name = "mgda_ub"
    _parameter_constraints: dict = {**MGDAWeighting._parameter_constraints}


class PCGradWeighting(Weighting):
    """Projecting conflicting gradients (Yu et al., 2020).

    For each task, in a random order of the other tasks, the task's
    gradient is projected onto the normal plane of each other task's
    gradient it conflicts with (``g_i . g_j < 0``):
    ``g_i <- g_i - (g_i . g_j / ||g_j||^2) g_j``. The update is the sum of
    the projected gradients (equal weighting when no gradients conflict).
    The orders come from the seeded torch random generator, so a fit is
    reproducible with ``random_state``.

    Examples
    --------
    >>> from sktransfer.multitask import PCGradWeighting
    >>> import numpy as np
    >>> M = np.array([[1.0, -0.5], [-0.5, 1.0]])  # conflicting gradients
    >>> PCGradWeighting().build(2).solve(M, np.ones(2))
    array([1.5, 1.5])
    """

    def build(self, n_tasks, task_types=None):
        return _PCGradWeighter()


class CAGradWeighting(Weighting):
    """Conflict-averse gradient descent (Liu et al., 2021).

    The update maximises the smallest task improvement ``min_t g_t . d``
    within a ball of radius ``c ||g_0||`` around the average gradient
    ``g_0``: ``d = g_0 + c ||g_0|| g_w / ||g_w||`` with ``g_w = G^T w`` and
    ``w`` the solution of the dual
    ``min_{w in simplex} g_w . g_0 + c ||g_0|| ||g_w||`` (solved with scipy's
    SLSQP, as in the authors' code). ``c = 0`` is the average gradient; a
    large ``c`` approaches MGDA.

    Parameters
    ----------
    c : float, default=0.4
        Radius of the ball, relative to ``||g_0||`` (the paper uses 0.4 on
        NYUv2 and 0.4 to 0.5 elsewhere).
    rescale : {0, 1, 2}, default=1
        Divide the update by ``1 + c^2`` (1, the authors' default), by
        ``1 + c`` (2) or not at all (0).

    Examples
    --------
    >>> from sktransfer.multitask import CAGradWeighting
    >>> import numpy as np
    >>> w = CAGradWeighting(c=0.0).build(2).solve(np.eye(2), np.ones(2))
    >>> w.round(3)  # c = 0: the average gradient
    array([0.5, 0.5])
    """

    _parameter_constraints: dict = {
        "c": [_NON_NEGATIVE],
        "rescale": [Options(Integral, {0, 1, 2})],
    }

    def __init__(self, c=0.4, rescale=1):
        self.c = c
        self.rescale = rescale

    def build(self, n_tasks, task_types=None):
        return _SolverWeighter("cagrad", _solvers.cagrad_weights, c=float(self.c),
                               rescale=int(self.rescale))


class IMTLWeighting(Weighting):
    """Impartial multi-task learning, gradient balancing (IMTL-G; Liu et al., 2021).

    The update ``d = sum_t w_t g_t`` (weights summing to 1) has the same
    projection on every task's unit gradient: ``d . g_t / ||g_t||`` is equal
    for all tasks, so no task dominates. Closed form:
    ``w = M^{-1} n / (1^T M^{-1} n)``, with ``n_t = ||g_t||`` (equivalent to
    the paper's ``alpha = g_1 U^T (D U^T)^{-1}``); a pseudo-inverse handles
    linearly dependent gradients.

    Examples
    --------
    >>> from sktransfer.multitask import IMTLWeighting
    >>> import numpy as np
    >>> IMTLWeighting().build(2).solve(np.diag([1.0, 4.0]), np.ones(2)).round(3)
    array([0.667, 0.333])
    """

    def build(self, n_tasks, task_types=None):
        return _SolverWeighter("imtl", _solvers.imtl_g_weights)


class UPGradWeighting(Weighting):
    """Unconflicting projection of gradients (UPGrad; Quinton & Rey, 2024).

    Each task's gradient is projected onto the dual cone of all the
    gradients (the directions ``x`` with ``g_t . x >= 0`` for every task,
    which harm no task to first order), and the projections are averaged.
    Each projection is a small quadratic program over the Gramian, solved as
    a non-negative least-squares problem with scipy; the result agrees with
    torchjd's ``UPGrad`` (mean preference).

    Parameters
    ----------
    reg_eps : float, default=1e-4
        Added to the diagonal of the trace-normalised Gramian, as in
        torchjd, to keep the problem strictly convex.

    Examples
    --------
    >>> from sktransfer.multitask import UPGradWeighting
    >>> import numpy as np
    >>> UPGradWeighting(reg_eps=0.0).build(2).solve(np.eye(2), np.ones(2)).round(3)
    array([0.5, 0.5])
    """

    _parameter_constraints: dict = {"reg_eps": [_NON_NEGATIVE]}

    def __init__(self, reg_eps=1e-4):
        self.reg_eps = reg_eps

    def build(self, n_tasks, task_types=None):
        return _SolverWeighter("upgrad", _solvers.upgrad_weights, reg_eps=float(self.reg_eps))


class AlignedMTLWeighting(Weighting):
    """Aligned-MTL (Senushkin et al., 2023): align the gradients' principal components.

    The gradients are made orthogonal and of equal norm by the balance
    transformation ``B = sqrt(s) V L^{-1/2} V^T`` of the Gramian's
    eigendecomposition ``M = V L V^T`` (``s``: the smallest eigenvalue by
    default), which removes both conflict and dominance (the aligned
    system's condition number is 1); the update is the sum of the aligned
    gradients, ``w = B 1``.

    Parameters
    ----------
    scale_mode : {"min", "median", "rmse"}, default="min"
        The eigenvalue ``s`` that sets the norm of the aligned gradients:
        the smallest (the paper), the median or the mean.

    Examples
    --------
    >>> from sktransfer.multitask import AlignedMTLWeighting
    >>> import numpy as np
    >>> AlignedMTLWeighting().build(2).solve(np.diag([1.0, 4.0]), np.ones(2)).round(3)
    array([1. , 0.5])
    """

    _parameter_constraints: dict = {"scale_mode": [StrOptions({"min", "median", "rmse"})]}

    def __init__(self, scale_mode="min"):
        self.scale_mode = scale_mode

    def build(self, n_tasks, task_types=None):
        return _SolverWeighter("aligned_mtl", _solvers.aligned_mtl_weights,
                               scale_mode=self.scale_mode)


class NashMTLWeighting(Weighting):
    """Nash-MTL (Navon et al., 2022): the Nash bargaining solution between tasks.

    The update ``d = G^T alpha`` with ``alpha > 0`` solving
    ``M alpha = 1 / alpha``: every task's improvement is ``g_t . d = 1 /
    alpha_t``, the Nash bargaining solution of the tasks' utilities
    (Theorem 3.3 of the paper). The paper approximates it by a sequence of
    convex programs (cvxpy); here the equivalent strictly convex problem
    ``min a^T M a / 2 - sum log a`` is solved exactly by Newton's method
    (scipy/numpy only). Tasks with a zero gradient get weight 0.

    Parameters
    ----------
    max_norm : float, default=1.0
        The update is scaled down to this norm when longer (the authors'
        default); 0 disables the clipping.

    Examples
    --------
    >>> from sktransfer.multitask import NashMTLWeighting
    >>> import numpy as np
    >>> NashMTLWeighting(max_norm=0).build(2).solve(np.diag([1.0, 4.0]), np.ones(2)).round(3)
    array([1. , 0.5])
    """

    _parameter_constraints: dict = {"max_norm": [_NON_NEGATIVE]}

    def __init__(self, max_norm=1.0):
        self.max_norm = max_norm

    def build(self, n_tasks, task_types=None):
        return _SolverWeighter("nash_mtl", _solvers.nash_mtl_weights,
                               max_norm=float(self.max_norm))


def fairgrad_weights(M, alpha=1.0, tol=1e-14, max_iter=100):
    """FairGrad's weights: the ``w > 0`` with ``M w = w^(-1 / alpha)``.

    With ``p = 1 / alpha`` this is the stationarity condition of the strictly
    convex problem ``min_w w^T M w / 2 - sum_t F(w_t)``, ``F' = w^(-p)``
    (``F = log`` for ``alpha = 1``, Nash-MTL's problem), solved by a damped
    Newton method on the Gramian scaled to unit mean diagonal, with a ridge
    of ``1e-12`` (as :func:`~._solvers.nash_mtl_weights`). Where Newton's
    method does not converge, scipy's bounded least squares on the equation
    (the authors' solver) from ``w = 1 / k`` takes over. Tasks whose gradient
    is zero have no finite solution and get weight 0.
    """
    M = np.asarray(M, dtype=np.float64)
    k = M.shape[0]
    w = np.zeros(k)
    diag = np.clip(np.diag(M), 0.0, None)
    live = diag > 0
    if not live.any():
        return w
    p = 1.0 / alpha
    s = float(np.mean(diag[live]))
    A = M[np.ix_(live, live)] / s + 1e-12 * np.eye(int(live.sum()))

    def objective(a):
        F = np.log(a).sum() if p == 1 else (a ** (1 - p)).sum() / (1 - p)
        return 0.5 * a @ A @ a - F

    a = np.diag(A) ** (-1 / (1 + p))  # the solution for orthogonal gradients
    f = objective(a)
    for _ in range(max_iter):
        g = A @ a - a ** (-p)
        H = A + np.diag(p * a ** (-p - 1))
        step = np.linalg.solve(H, -g)
        decrement = -g @ step
        if not np.isfinite(decrement):
            break
        if decrement < tol:
            # M w = w^(-p) for w = c a, with c = s^(-1 / (1 + p))
            w[live] = a * s ** (-1 / (1 + p))
            return w
        t = 1.0
        while True:
            new = a + t * step
            if np.all(new > 0):
                f_new = objective(new)
                if f_new <= f - 0.25 * t * decrement or t < 1e-10:
                    break
            t *= 0.5
        a, f = new, f_new
    from scipy.optimize import least_squares

    B = M[np.ix_(live, live)]
    w[live] = least_squares(lambda x: B @ x - np.power(x, -p), np.full(B.shape[0], 1.0 / k),
                            jac=lambda x: B + np.diag(p * np.power(x, -p - 1)),
                            bounds=(0, np.inf)).x
    return w


class FairGradWeighting(Weighting):
    """Alpha-fair gradient weighting (FairGrad; Ban & Ji, 2024).

    The update ``d = G^T w`` gives every task the improvement
    ``g_t . d = w_t^(-1 / alpha)``, the condition of optimality of the
    alpha-fair utility ``sum_t (g_t . d)^(1 - alpha) / (1 - alpha)`` over
    the unit ball: ``w`` solves ``(G G^T) w = w^(-1 / alpha)``.
    ``alpha = 1`` is proportional fairness (Nash-MTL's condition);
    a larger ``alpha`` moves toward max-min fairness (MGDA-like). With
    orthogonal gradients and ``alpha = 1``, ``w_t = 1 / ||g_t||``. Tasks with
    a zero gradient get weight 0. The equation is the stationarity condition
    of a strictly convex problem, solved by Newton's method (scipy's least
    squares, the authors' solver, where it does not converge).

    Parameters
    ----------
    alpha : float > 0, default=1.0
        The fairness parameter (the authors use 1 to 8 depending on the
        data set; LibMTL's default is 1).

    Examples
    --------
    >>> from sktransfer.multitask import FairGradWeighting
    >>> import numpy as np
    >>> M = np.diag([1.0, 4.0])  # orthogonal gradients, norms 1 and 2
    >>> FairGradWeighting(alpha=1.0).build(2).solve(M, np.ones(2)).round(3)
    array([1. , 0.5])
    """

    _parameter_constraints: dict = {"alpha": [Interval(Real, 0, np.inf, closed="neither")]}

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def build(self, n_tasks, task_types=None):
        return _SolverWeighter("fairgrad", fairgrad_weights, alpha=float(self.alpha))
