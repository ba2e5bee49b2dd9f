"""The T x T solvers of the gradient-based weightings, against independent oracles.

Each solver returns weights ``w`` with update ``d = w @ G``. The oracles are
closed forms for two tasks written out here from the papers, generic
optimisation of the primal problem with scipy, the defining equations, and
torchjd's weightings (an optional dependency; those tests skip without it).
"""

import numpy as np
import pytest
from scipy.optimize import minimize

from sktransfer.multitask import (
    AlignedMTLWeighting,
    CAGradWeighting,
    IMTLWeighting,
    MGDAWeighting,
    NashMTLWeighting,
    PCGradWeighting,
    UPGradWeighting,
)
from sktransfer.multitask import _solvers as S


def random_grads(T, P=12, seed=0, conflict=True):
    rng = np.random.RandomState(seed)
    G = rng.randn(T, P)
    if not conflict:
        G += 3.0
    return G


def pairs(n=6):
    """Random gradient pairs, with and without conflict, and of different norms."""
    out = []
    for seed in range(n):
        rng = np.random.RandomState(100 + seed)
        g1, g2 = rng.randn(2, 7)
        out.append(np.stack([g1 * (1 + seed), g2]))
    out.append(np.array([[1.0, 0.0], [-0.5, 1.0]]))   # conflict
    out.append(np.array([[1.0, 0.2], [0.9, 0.3]]))    # aligned, one inside the other's cone
    return out


# ---------------------------------------------------------------------- MGDA
@pytest.mark.parametrize("G", pairs())
@pytest.mark.parametrize("solver", [S.min_norm_weights, S.min_norm_weights_nnls])
def test_mgda_two_tasks_closed_form(G, solver):
    g1, g2 = G
    # Sener & Koltun (2018), Algorithm 1: gamma = [(g2 - g1) . g2 / ||g1 - g2||^2]_{[0, 1]}.
    gamma = np.clip((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2)), 0.0, 1.0)
    expected = gamma * g1 + (1 - gamma) * g2
    w = solver(G @ G.T)
    np.testing.assert_allclose(w @ G, expected, atol=1e-10)
    assert w.sum() == pytest.approx(1.0) and np.all(w >= 0)


def _min_norm_oracle(M):
    T = len(M)
    res = minimize(lambda w: w @ M @ w, np.full(T, 1.0 / T), jac=lambda w: 2 * M @ w,
                   method="SLSQP", bounds=[(0, 1)] * T,
                   constraints=({"type": "eq", "fun": lambda w: w.sum() - 1},),
                   options={"ftol": 1e-15, "maxiter": 1000})
    return res.fun


@pytest.mark.parametrize("T", [3, 4, 8])
@pytest.mark.parametrize("conflict", [True, False])
def test_mgda_min_norm_matches_generic_qp(T, conflict):
    for seed in range(3):
        G = random_grads(T, seed=seed, conflict=conflict)
        M = G @ G.T
        best = _min_norm_oracle(M)
        w = S.min_norm_weights_nnls(M)
        assert np.all(w >= -1e-12) and w.sum() == pytest.approx(1.0)
        assert w @ M @ w == pytest.approx(best, rel=1e-6, abs=1e-9)
        w_fw = S.min_norm_weights(M)  # the paper's Frank-Wolfe: approximate
        assert w_fw @ M @ w_fw == pytest.approx(best, rel=1e-2, abs=1e-4)


def test_mgda_zero_gradient_gives_zero_step():
    G = random_grads(3)
    G[1] = 0.0
    for solver in ("nnls", "frank_wolfe"):
        for normalization in ("none", "l2", "loss+"):
            weighter = MGDAWeighting(normalization=normalization, solver=solver).build(3)
            w = weighter.solve(G @ G.T, np.ones(3))
            np.testing.assert_allclose(w @ G, 0.0, atol=1e-12)


def test_mgda_normalizations_scale_the_gradients_before_the_solve():
    G = random_grads(3)
    losses = np.array([0.5, 2.0, 1.0])
    norms = np.linalg.norm(G, axis=1)
    for normalization, scale in [("none", np.ones(3)), ("l2", norms), ("loss", losses),
                                 ("loss+", losses * norms)]:
        Gn = G / scale[:, None]
        expected = S.min_norm_weights_nnls(Gn @ Gn.T)
        w = MGDAWeighting(normalization=normalization).build(3).solve(G @ G.T, losses)
        np.testing.assert_allclose(w, expected, atol=1e-10)


# -------------------------------------------------------------------- PCGrad
@pytest.mark.parametrize("G", pairs())
def test_pcgrad_two_tasks_closed_form(G):
    g1, g2 = G
    dot = g1 @ g2
    if dot < 0:  # Yu et al. (2020), Algorithm 1, both gradients projected
        expected = (g1 - dot / (g2 @ g2) * g2) + (g2 - dot / (g1 @ g1) * g1)
    else:
        expected = g1 + g2
    for order in ([0, 1], [1, 0]):
        w = S.pcgrad_weights(G @ G.T, [order, order])
        np.testing.assert_allclose(w @ G, expected, atol=1e-10)


def test_pcgrad_matches_explicit_projection_loop():
    G = random_grads(5, seed=3)
    rng = np.random.RandomState(0)
    orders = [rng.permutation(5).tolist() for _ in range(5)]
    expected = np.zeros(G.shape[1])
    for i in range(5):
        g = G[i].copy()
        for j in orders[i]:
            if j != i and g @ G[j] < 0:
                g -= (g @ G[j]) / (G[j] @ G[j]) * G[j]
        expected += g
    np.testing.assert_allclose(S.pcgrad_weights(G @ G.T, orders) @ G, expected, atol=1e-10)


# -------------------------------------------------------------------- CAGrad
def _cagrad_primal(G, c):
    """max_d min_i g_i . d  s.t. ||d - g0|| <= c ||g0||, solved in the primal space."""
    g0 = G.mean(0)
    r = c * np.linalg.norm(g0)
    x0 = np.concatenate([g0, [min(G @ g0)]])
    constraints = [{"type": "ineq", "fun": lambda x: G @ x[:-1] - x[-1]},
                   {"type": "ineq", "fun": lambda x: r ** 2 - np.sum((x[:-1] - g0) ** 2)}]
    res = minimize(lambda x: -x[-1], x0, jac=lambda x: np.r_[np.zeros(len(g0)), -1.0],
                   method="SLSQP", constraints=constraints,
                   options={"ftol": 1e-14, "maxiter": 2000})
    return res.x[:-1]


@pytest.mark.parametrize("T", [2, 3, 5])
@pytest.mark.parametrize("c", [0.2, 0.5, 0.9])
def test_cagrad_matches_primal_problem(T, c):
    for seed in range(2):
        G = random_grads(T, P=6, seed=seed)
        d = S.cagrad_weights(G @ G.T, c=c, rescale=0) @ G
        expected = _cagrad_primal(G, c)
        np.testing.assert_allclose(d, expected, atol=2e-4 * np.linalg.norm(expected))
        # rescale=1 divides by 1 + c^2, as the authors' default
        d1 = S.cagrad_weights(G @ G.T, c=c) @ G
        np.testing.assert_allclose(d1 * (1 + c ** 2), d, rtol=1e-6, atol=1e-9)


def test_cagrad_zero_c_is_the_mean():
    G = random_grads(4)
    np.testing.assert_allclose(S.cagrad_weights(G @ G.T, c=0.0, rescale=0), 0.25)


# --------------------------------------------------------------------- IMTL-G
@pytest.mark.parametrize("G", pairs())
def test_imtl_two_tasks_closed_form(G):
    g1, g2 = G
    u1, u2 = g1 / np.linalg.norm(g1), g2 / np.linalg.norm(g2)
    # Liu et al. (2021): alpha_2 = g1 U^T (D U^T)^-1, D = g1 - g2, U = u1 - u2.
    a2 = (g1 @ (u1 - u2)) / ((g1 - g2) @ (u1 - u2))
    w = S.imtl_g_weights(G @ G.T)
    np.testing.assert_allclose(w, [1 - a2, a2], atol=1e-9)


@pytest.mark.parametrize("T", [3, 4, 8])
def test_imtl_paper_formula_and_equal_projections(T):
    G = random_grads(T, P=20, seed=T)
    U = G / np.linalg.norm(G, axis=1, keepdims=True)
    D = G[0] - G[1:]
    Ud = U[0] - U[1:]
    alpha = G[0] @ Ud.T @ np.linalg.inv(D @ Ud.T)
    expected = np.r_[1 - alpha.sum(), alpha]
    w = IMTLWeighting().build(T).solve(G @ G.T, np.ones(T))
    np.testing.assert_allclose(w, expected, atol=1e-8)
    proj = U @ (w @ G)
    np.testing.assert_allclose(proj, proj[0], rtol=1e-8)


# --------------------------------------------------------------------- UPGrad
def _project_on_dual_cone(G, g):
    """argmin_x ||x - g||^2 s.t. G x >= 0, in the primal space."""
    res = minimize(lambda x: np.sum((x - g) ** 2), g, jac=lambda x: 2 * (x - g),
                   method="SLSQP", constraints=[{"type": "ineq", "fun": lambda x: G @ x,
                                                 "jac": lambda x: G}],
                   options={"ftol": 1e-15, "maxiter": 1000})
    return res.x


@pytest.mark.parametrize("T", [2, 3, 5])
@pytest.mark.parametrize("conflict", [True, False])
def test_upgrad_matches_primal_projections(T, conflict):
    G = random_grads(T, P=8, seed=T, conflict=conflict)
    expected = np.mean([_project_on_dual_cone(G, g) for g in G], axis=0)
    w = UPGradWeighting(reg_eps=0.0).build(T).solve(G @ G.T, np.ones(T))
    np.testing.assert_allclose(w @ G, expected, atol=1e-6 * np.linalg.norm(G))
    # the result harms no task
    assert np.all(G @ (w @ G) >= -1e-8)


# ---------------------------------------------------------------- Aligned-MTL
@pytest.mark.parametrize("T", [2, 3, 6])
def test_aligned_mtl_aligns_the_gradients(T):
    G = random_grads(T, P=10, seed=T)
    M = G @ G.T
    lam, V = np.linalg.eigh(M)
    B = np.sqrt(lam.min()) * (V / np.sqrt(lam)) @ V.T
    aligned = B @ G
    # orthogonal, of equal norm sqrt(lambda_min): condition number 1
    np.testing.assert_allclose(aligned @ aligned.T, lam.min() * np.eye(T), atol=1e-8 * lam.max())
    w = AlignedMTLWeighting().build(T).solve(M, np.ones(T))
    np.testing.assert_allclose(w @ G, aligned.sum(0), atol=1e-8 * np.linalg.norm(G))


# -------------------------------------------------------------------- Nash-MTL
@pytest.mark.parametrize("T", [2, 3, 8])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_nash_mtl_solves_the_bargaining_equation(T, scale):
    G = random_grads(T, P=20, seed=T) * scale
    M = G @ G.T
    a = S.nash_mtl_weights(M, max_norm=0)
    assert np.all(a > 0)
    # Navon et al. (2022), Theorem 3.3: G G^T alpha = 1 / alpha.
    np.testing.assert_allclose(M @ a, 1 / a, rtol=1e-7)


def test_nash_mtl_two_orthogonal_tasks_closed_form_and_clipping():
    M = np.diag([4.0, 0.25])  # alpha_t = 1 / ||g_t||
    np.testing.assert_allclose(S.nash_mtl_weights(M, max_norm=0), [0.5, 2.0], rtol=1e-9)
    w = NashMTLWeighting(max_norm=0.5).build(2).solve(M, np.ones(2))
    assert np.sqrt(w @ M @ w) == pytest.approx(0.5)
    np.testing.assert_allclose(w / w[0], [1.0, 4.0], rtol=1e-9)


# ---------------------------------------------------------- degenerate inputs
def test_solvers_handle_a_single_task_and_rank_deficiency():
    G = random_grads(3)
    G[2] = G[0]  # two identical tasks
    M = G @ G.T
    for weighting in (MGDAWeighting(), PCGradWeighting(), CAGradWeighting(), IMTLWeighting(),
                      UPGradWeighting(), AlignedMTLWeighting(), NashMTLWeighting()):
        w = weighting.build(3).solve(M, np.ones(3))
        assert np.all(np.isfinite(w)), weighting
        w1 = weighting.build(1).solve(M[:1, :1], np.ones(1))
        assert w1.shape == (1,) and np.isfinite(w1).all() and w1[0] > 0, weighting


# ---------------------------------------------------------------- torchjd oracle
def _torchjd():
    return pytest.importorskip("torchjd", reason="torchjd (optional test dependency) is absent")


@pytest.mark.parametrize("T", [2, 3, 5, 8])
def test_against_torchjd_gramian_weightings(T):
    _torchjd()
    import torch
    from torchjd.aggregation import AlignedMTLWeighting as JdAligned
    from torchjd.aggregation import IMTLGWeighting as JdIMTLG
    from torchjd.aggregation import MGDAWeighting as JdMGDA

    for seed in range(3):
        G = random_grads(T, P=30, seed=seed)
        M = G @ G.T
        Mt = torch.as_tensor(M)
        # MGDA: torchjd runs Frank-Wolfe with a loose stop; compare the min norm reached.
        wj = JdMGDA(epsilon=1e-9, max_iters=100000)(Mt).numpy()
        w = S.min_norm_weights_nnls(M)
        assert w @ M @ w <= wj @ M @ wj + 1e-9
        assert w @ M @ w == pytest.approx(wj @ M @ wj, rel=1e-3, abs=1e-8)
        np.testing.assert_allclose(S.imtl_g_weights(M), JdIMTLG()(Mt).numpy(), atol=1e-8)
        # torchjd's preference vector is the mean, ours the sum.
        np.testing.assert_allclose(S.aligned_mtl_weights(M), T * JdAligned()(Mt).numpy(),
                                   rtol=1e-7)


def test_against_torchjd_pcgrad_two_tasks():
    _torchjd()
    import torch
    from torchjd.aggregation import PCGradWeighting as JdPCGrad

    for G in pairs():
        M = G @ G.T
        expected = JdPCGrad()(torch.as_tensor(M)).numpy()
        np.testing.assert_allclose(S.pcgrad_weights(M, [[0, 1], [1, 0]]), expected, atol=1e-10)


@pytest.mark.parametrize("T", [2, 3, 5, 8])
def test_against_torchjd_upgrad(T):
    _torchjd()
    pytest.importorskip("quadprog", reason="torchjd's UPGrad needs quadprog")
    pytest.importorskip("qpsolvers", reason="torchjd's UPGrad needs qpsolvers")
    import torch
    from torchjd.aggregation import UPGradWeighting as JdUPGrad

    for seed in range(3):
        G = random_grads(T, P=30, seed=seed)
        M = G @ G.T
        np.testing.assert_allclose(S.upgrad_weights(M), JdUPGrad()(torch.as_tensor(M)).numpy(),
                                   rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("T", [2, 3, 5])
def test_against_torchjd_cagrad(T):
    _torchjd()
    pytest.importorskip("cvxpy", reason="torchjd's CAGrad needs cvxpy")
    import torch
    from torchjd.aggregation import CAGradWeighting as JdCAGrad

    G = random_grads(T, P=30, seed=1)
    M = G @ G.T
    # torchjd normalises the Gramian by its trace first; the weights are scale-free.
    expected = JdCAGrad(c=0.5)(torch.as_tensor(M)).numpy()
    np.testing.assert_allclose(S.cagrad_weights(M, c=0.5, rescale=0), expected, rtol=1e-3)


@pytest.mark.parametrize("T", [2, 3, 5, 8])
def test_against_torchjd_nash_mtl(T):
    _torchjd()
    pytest.importorskip("cvxpy", reason="torchjd's NashMTL needs cvxpy")
    pytest.importorskip("ecos", reason="torchjd's NashMTL needs ecos")
    import torch
    from torchjd.aggregation._nash_mtl import _NashMTLWeighting as JdNash

    G = random_grads(T, P=30, seed=T)
    jd = JdNash(n_tasks=T, max_norm=0.0, update_weights_every=1, optim_niter=200)
    for _ in range(5):  # the authors' sequence of convex programs, warm-started
        expected = jd(torch.as_tensor(G)).numpy()
    np.testing.assert_allclose(S.nash_mtl_weights(G @ G.T, max_norm=0), expected, rtol=1e-6)
