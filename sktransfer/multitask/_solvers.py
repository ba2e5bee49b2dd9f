"""The small T x T problems behind the gradient-based task weightings.

Every gradient-based weighting combines the per-task gradients ``g_1..g_T``
of the shared parameters (the rows of a (T, P) matrix ``G``) into one
update ``d = sum_t w_t g_t``. The weights depend on the gradients only
through their Gramian ``M = G G^T`` (T x T, ``M[i, j] = g_i . g_j``), so
each solver here takes ``M`` as a float64 numpy array and returns the
weights ``w`` (T,). None of them touches the (T, P) matrix, which keeps
them cheap: well under a millisecond for T <= 8.

All solvers are plain numpy / scipy; no GPL or convex-modelling dependency.
"""

import numpy as np
from scipy.optimize import minimize, nnls

__all__ = [
    "min_norm_2",
    "min_norm_weights",
    "min_norm_weights_nnls",
    "normalize_gramian",
    "pcgrad_weights",
    "cagrad_weights",
    "imtl_g_weights",
    "upgrad_weights",
    "aligned_mtl_weights",
    "nash_mtl_weights",
]


def min_norm_2(v11, v12, v22):
    """Min-norm point of the segment between two vectors, in closed form.

    Returns ``gamma`` such that ``gamma * a + (1 - gamma) * b`` has the
    smallest norm on the segment [a, b], given ``v11 = a.a``, ``v12 = a.b``
    and ``v22 = b.b`` (Sener & Koltun, 2018, Algorithm 1), and the squared
    norm of that point.

    Unlike the authors' code, which clips ``gamma`` to [0.001, 0.999], the
    exact minimiser is returned: when one vector is zero the min-norm point
    is 0, and the step is zero.
    """
    if v12 >= v11:
        return 1.0, v11
    if v12 >= v22:
        return 0.0, v22
    gamma = (v22 - v12) / (v11 + v22 - 2.0 * v12)
    return gamma, v22 + gamma * (v12 - v22)


def min_norm_weights(M, max_iter=250, tol=1e-5):
    """Min-norm point of the convex hull of the gradients (MGDA).

    Solves ``min_{w in simplex} w^T M w`` with the Frank-Wolfe algorithm of
    Sener & Koltun (2018, Algorithm 2): start from the best pair (closed
    form), then repeatedly move toward the vertex with the smallest
    directional derivative with an exact line search, until the weights
    change by less than ``tol`` (L1) or after ``max_iter`` iterations. With
    two tasks the closed form is exact.
    """
    M = np.asarray(M, dtype=np.float64)
    T = M.shape[0]
    if T == 1:
        return np.ones(1)
    # Best pair, in closed form.
    best = None
    for i in range(T):
        for j in range(i + 1, T):
            gamma, cost = min_norm_2(M[i, i], M[i, j], M[j, j])
            if best is None or cost < best[0]:
                best = (cost, i, j, gamma)
    _, i, j, gamma = best
    w = np.zeros(T)
    w[i], w[j] = gamma, 1.0 - gamma
    if T == 2:
        return w
    Mw = M @ w
    for _ in range(max_iter):
        t = int(np.argmin(Mw))
        v11 = float(w @ Mw)
        v12 = float(Mw[t])
        v22 = float(M[t, t])
        gamma, _ = min_norm_2(v11, v12, v22)
        new = gamma * w
        new[t] += 1.0 - gamma
        change = np.abs(new - w).sum()
        w = new
        if change < tol:
            break
        Mw = gamma * Mw + (1.0 - gamma) * M[:, t]
    return w


def min_norm_weights_nnls(M):
    """Exact min-norm point of the convex hull, as a non-negative least squares.

    With ``M = R^T R``, the projection of ``(0, 1)`` onto the cone spanned
    by the columns of ``[R; 1^T]`` is ``[R; 1^T] u`` with
    ``u = argmin_{u >= 0} ||R u||^2 + (1 - 1^T u)^2``, and ``u / sum(u)``
    minimises ``w^T M w`` over the simplex (scaling the cone point back to
    the hyperplane ``sum(w) = 1``). One call of :func:`scipy.optimize.nnls`
    gives the exact solution, where Frank-Wolfe converges sublinearly.
    """
    M = np.asarray(M, dtype=np.float64)
    T = M.shape[0]
    if T == 1:
        return np.ones(1)
    if T == 2:
        gamma, _ = min_norm_2(M[0, 0], M[0, 1], M[1, 1])
        return np.array([gamma, 1.0 - gamma])
    lam, V = np.linalg.eigh(M)
    R = (V * np.sqrt(np.clip(lam, 0.0, None))).T
    A = np.vstack([R, np.ones((1, T))])
    b = np.zeros(T + 1)
    b[-1] = 1.0
    u, _ = nnls(A, b)
    s = u.sum()
    if s <= 0:  # pragma: no cover - (0, 1) always has a positive projection
        return np.full(T, 1.0 / T)
    return u / s


def normalize_gramian(M, losses, normalization):
    """Gramian of the normalised gradients ``g_t / n_t`` and the scales ``n_t``.

    ``normalization`` is one of the options of the MGDA authors' code:
    ``"l2"`` (``n_t = ||g_t||``), ``"loss"`` (``n_t = L_t``), ``"loss+"``
    (``n_t = L_t ||g_t||``) or ``"none"`` (``n_t = 1``).
    """
    norms = np.sqrt(np.clip(np.diag(M), 0.0, None))
    if normalization == "none":
        scale = np.ones_like(norms)
    elif normalization == "l2":
        scale = norms
    elif normalization == "loss":
        scale = np.asarray(losses, dtype=np.float64)
    elif normalization == "loss+":
        scale = np.asarray(losses, dtype=np.float64) * norms
    else:
        raise ValueError(f"normalization must be one of 'l2', 'loss', 'loss+', 'none'; "
                         f"got {normalization!r}")
    safe = np.where(scale > 0, scale, 1.0)
    return M / np.outer(safe, safe), scale


def pcgrad_weights(M, orders):
    """PCGrad (Yu et al., 2020) as weights on the original gradients.

    For each task ``i`` its gradient is projected, in the task order
    ``orders[i]``, onto the normal plane of every other task's gradient it
    conflicts with (negative inner product); the update is the sum of the
    projected gradients. A projected gradient is a combination of the
    original ones, so the whole procedure runs on the Gramian.
    """
    M = np.asarray(M, dtype=np.float64)
    T = M.shape[0]
    total = np.zeros(T)
    for i in range(T):
        c = np.zeros(T)
        c[i] = 1.0
        for j in orders[i]:
            if j == i or M[j, j] <= 0:
                continue
            dot = M[j] @ c
            if dot < 0:
                c[j] -= dot / M[j, j]
        total += c
    return total


def _cagrad_on_support(M, a, phi, S):
    """Stationary point of the CAGrad dual with support ``S``, in closed form.

    On the support, ``a_S + phi M_SS w_S / s = nu 1`` with ``s = ||G^T w||``
    and ``sum(w_S) = 1``. With ``p = M_SS^-1 1`` and ``q = M_SS^-1 a_S``,
    ``w_S = (nu p - q) / k`` where ``k = phi / s = nu 1^T p - 1^T q`` and
    ``phi^2 = nu^2 1^T p - 2 nu 1^T q + a_S^T q`` (a quadratic in ``nu``).
    Returns ``(nu, w_S)`` or None if the support has no such point.
    """
    MS = M[np.ix_(S, S)]
    try:
        p = np.linalg.solve(MS, np.ones(len(S)))
        q = np.linalg.solve(MS, a[S])
    except np.linalg.LinAlgError:
        return None
    A, B, C = p.sum(), q.sum(), a[S] @ q
    disc = B * B - A * (C - phi * phi)
    if not (A > 0 and disc > 0):
        return None
    k = np.sqrt(disc)
    nu = (B + k) / A
    return nu, (nu * p - q) / k


def _cagrad_active_set(M, a, phi, max_iter=None):
    """Exact CAGrad dual by a forward active-set search over supports; None if it fails.

    Starts from the best vertex of the simplex and adds, one at a time, the
    task whose directional derivative most violates optimality, dropping a
    task whose weight turns negative.
    """
    T = M.shape[0]
    diag = np.sqrt(np.clip(np.diag(M), 0.0, None))
    S = [int(np.argmin(a + phi * diag))]
    for _ in range(max_iter or 4 * T):
        if len(S) == 1:
            i = S[0]
            if diag[i] <= 0:
                return None
            w = np.zeros(T)
            w[i] = 1.0
            nu = a[i] + phi * diag[i]
        else:
            sol = _cagrad_on_support(M, a, phi, S)
            if sol is None:
                return None
            nu, wS = sol
            if wS.min() < -1e-12:
                S.pop(int(np.argmin(wS)))
                continue
            w = np.zeros(T)
            w[S] = wS
        s = np.sqrt(max(w @ M @ w, 0.0))
        if s <= 0:
            return None
        grad = a + phi * (M @ w) / s
        out = [i for i in range(T) if i not in S]
        if not out:
            return w
        i = out[int(np.argmin(grad[out]))]
        if grad[i] >= nu - 1e-10 * (abs(nu) + 1.0):
            return w
        S = sorted(S + [i])
    return None


def cagrad_weights(M, c=0.4, rescale=1):
    """Conflict-averse gradient descent (Liu et al., 2021).

    The update maximises the worst task improvement in a ball of radius
    ``c ||g_0||`` around the average gradient ``g_0``. Its dual over the
    simplex, ``min_w w^T M 1/T + c ||g_0|| sqrt(w^T M w)``, is solved
    exactly by an active-set search (on a fixed support the stationarity
    conditions reduce to a quadratic equation), falling back on scipy's
    SLSQP, the authors' solver, when a support is degenerate. Then
    ``d = g_0 + c ||g_0|| / ||g_w|| g_w``, divided by ``1 + c^2``
    (``rescale=1``, the default of the authors' code), ``1 + c``
    (``rescale=2``) or 1 (``rescale=0``).
    """
    M = np.asarray(M, dtype=np.float64)
    T = M.shape[0]
    b = np.full(T, 1.0 / T)
    tr = np.trace(M)
    if T == 1 or c == 0 or tr <= 0:
        w = b
    else:
        # The weights do not depend on the scale of M: solve with trace 1.
        Mn = M / tr
        phi_n = c * np.sqrt(max(b @ Mn @ b, 0.0))
        Mb = Mn @ b
        w = _cagrad_active_set(Mn, Mb, phi_n)
        if w is None:
            def fun(w):
                Mw = Mn @ w
                s = np.sqrt(max(w @ Mw, 0.0) + 1e-20)
                return w @ Mb + phi_n * s, Mb + phi_n * Mw / s

            res = minimize(fun, b, jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * T,
                           constraints=({"type": "eq", "fun": lambda w: 1.0 - w.sum(),
                                         "jac": lambda w: -np.ones_like(w)},),
                           options={"ftol": 1e-12, "maxiter": 200})
            w = np.clip(res.x, 0.0, None)
    g0_norm = np.sqrt(max(b @ M @ b, 0.0))
    phi = c * g0_norm
    gw_norm = np.sqrt(max(w @ M @ w, 0.0))
    lam = phi / gw_norm if gw_norm > 0 else 0.0
    weights = b + lam * w
    if rescale == 1:
        return weights / (1.0 + c ** 2)
    if rescale == 2:
        return weights / (1.0 + c)
    return weights


def imtl_g_weights(M):
    """IMTL-G (Liu et al., 2021): the update has equal projections on all task directions.

    The weights sum to 1 and ``d . g_t / ||g_t||`` is the same for every
    task. The paper's closed form
    ``alpha_{2:T} = g_1 U^T (D U^T)^{-1}`` (``D`` the differences
    ``g_1 - g_t``, ``U`` those of the unit vectors) is, written with the
    Gramian, ``w = M^{-1} n / (1^T M^{-1} n)`` with ``n_t = ||g_t||``; a
    pseudo-inverse handles linearly dependent gradients. Tasks with a zero
    gradient get weight 0.
    """
    M = np.asarray(M, dtype=np.float64)
    n = np.sqrt(np.clip(np.diag(M), 0.0, None))
    keep = n > 0
    w = np.zeros(len(n))
    if not keep.any():
        return w
    Mk = M[np.ix_(keep, keep)]
    v = np.linalg.lstsq(Mk, n[keep], rcond=None)[0]
    s = v.sum()
    if abs(s) < 1e-12:
        return w
    w[keep] = v / s
    return w


def upgrad_weights(M, pref=None, reg_eps=1e-4):
    """UPGrad (Quinton & Rey, 2024): project each gradient on the dual cone, then average.

    The projection of ``g_i`` onto the cone ``{x : G x >= 0}`` (the
    directions that harm no task) is ``G^T v_i`` with
    ``v_i = argmin_{v >= e_i} v^T M v`` (the dual problem, Proposition 1 of
    the paper); with ``M = R^T R`` this is a non-negative least-squares
    problem in ``s = v - e_i``, solved by :func:`scipy.optimize.nnls`. The
    weights are ``sum_i pref_i v_i`` (``pref`` defaults to ``1/T``, as in
    torchjd). As in torchjd, the Gramian is first divided by its trace and
    ``reg_eps`` is added to its diagonal.
    """
    M = np.asarray(M, dtype=np.float64)
    T = M.shape[0]
    pref = np.full(T, 1.0 / T) if pref is None else np.asarray(pref, dtype=np.float64)
    tr = np.trace(M)
    Mn = M / tr if tr >= 1e-4 else M
    Mn = Mn + reg_eps * np.eye(T)
    R = np.linalg.cholesky(Mn).T  # Mn = R^T R
    total = np.zeros(T)
    for i in range(T):
        u = np.zeros(T)
        u[i] = pref[i]
        s, _ = nnls(R, -R @ u)
        total += u + s
    return total


def aligned_mtl_weights(M, pref=None, scale_mode="min"):
    """Aligned-MTL (Senushkin et al., 2023): align the principal components of the gradients.

    With ``M = V diag(l) V^T`` (the non-negligible eigenvalues), the
    balance transformation ``B = sqrt(s) V diag(l)^{-1/2} V^T`` makes the
    aligned gradients ``B G`` orthogonal with equal norms ``sqrt(s)``
    (``s``: the smallest eigenvalue for ``"min"``, the median or the mean
    for ``"median"`` / ``"rmse"``), and the update is their sum weighted by
    ``pref`` (ones by default): ``w = B pref``.
    """
    M = np.asarray(M, dtype=np.float64)
    T = M.shape[0]
    pref = np.ones(T) if pref is None else np.asarray(pref, dtype=np.float64)
    lam, V = np.linalg.eigh(M)
    tol = lam.max() * T * np.finfo(np.float64).eps
    keep = lam > tol
    if not keep.any():
        return np.zeros(T)
    lam, V = lam[keep], V[:, keep]
    if scale_mode == "min":
        s = lam.min()
    elif scale_mode == "median":
        s = np.median(lam)
    elif scale_mode == "rmse":
        s = lam.mean()
    else:
        raise ValueError(f"scale_mode must be 'min', 'median' or 'rmse'; got {scale_mode!r}")
    B = np.sqrt(s) * (V / np.sqrt(lam)) @ V.T
    return B @ pref


def nash_mtl_weights(M, max_norm=1.0, tol=1e-14, max_iter=100):
    """Nash-MTL (Navon et al., 2022): the Nash bargaining solution.

    The weights ``alpha > 0`` solve ``M alpha = 1 / alpha`` (elementwise;
    Theorem 3.3 of the paper): every task's improvement ``g_t . d`` is
    ``1 / alpha_t``. This is the stationarity condition of the strictly
    convex problem ``min_a a^T M a / 2 - sum_t log a_t``, solved here to
    machine precision by a damped Newton method (the paper approximates the
    same point by a sequence of convex programs). The Gramian is first
    scaled to unit mean diagonal and a ridge of ``1e-12`` keeps the problem
    bounded when gradients are exactly opposed. If ``max_norm > 0`` the
    update is scaled down to norm ``max_norm``, as in the authors' code.
    """
    M = np.asarray(M, dtype=np.float64)
    T = M.shape[0]
    diag = np.clip(np.diag(M), 0.0, None)
    keep = diag > 0
    w = np.zeros(T)
    if not keep.any():
        return w
    Mk = M[np.ix_(keep, keep)]
    s = np.mean(np.diag(Mk))
    A = Mk / s + 1e-12 * np.eye(Mk.shape[0])
    a = 1.0 / np.sqrt(np.diag(A))
    f = 0.5 * a @ A @ a - np.log(a).sum()
    for _ in range(max_iter):
        g = A @ a - 1.0 / a
        H = A + np.diag(1.0 / a ** 2)
        step = np.linalg.solve(H, -g)
        decrement = -g @ step
        if decrement < tol:
            break
        t = 1.0
        while True:
            new = a + t * step
            if np.all(new > 0):
                f_new = 0.5 * new @ A @ new - np.log(new).sum()
                if f_new <= f - 0.25 * t * decrement or t < 1e-10:
                    break
            t *= 0.5
        a, f = new, f_new
    w[keep] = a / np.sqrt(s)
    if max_norm > 0:
        norm = np.sqrt(max(w @ M @ w, 0.0))
        if norm > max_norm:
            w *= max_norm / norm
    return w
