"""GradDrop, GradVac, FairGrad, DB-MTL, STCH and ExcessMTL: closed forms, oracles, learning."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import InvalidParameterError

from sktransfer.multitask import (
    WEIGHTINGS,
    BackwardWeighter,
    DBMTLWeighting,
    ExcessMTLWeighting,
    FairGradWeighting,
    GradDropWeighting,
    GradientWeighter,
    GradVacWeighting,
    MultiTaskClassifier,
    STCHWeighting,
    Weighter,
)
from sktransfer.multitask import _solvers as S
from sktransfer.multitask._gradient_surgery import graddrop_direction, gradvac_weights
from sktransfer.multitask._gradient_weighting import fairgrad_weights

NEW = ["graddrop", "gradvac", "fairgrad", "db_mtl", "stch", "excess_mtl"]
FAST = dict(hidden_layer_sizes=(32,), max_epochs=6, lr=3e-3, batch_size=64, random_state=0)


def random_grads(T, P=30, seed=0):
    return np.random.RandomState(seed).randn(T, P)


@pytest.fixture(scope="module")
def digits_tasks():
    """Real digits in the task format: each row is one of three tasks."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    t = np.random.RandomState(0).randint(3, size=len(y))
    label = np.where(t == 0, y, np.where(t == 1, y % 2, (y >= 5).astype(int)))
    return train_test_split(X, label, t, test_size=0.3, random_state=0)


@pytest.fixture(scope="module")
def digits3():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    Y = np.column_stack([y, y % 2, y >= 5]).astype(float)
    rng = np.random.RandomState(1)
    Y[rng.rand(*Y.shape) < 0.2] = np.nan
    return X[:600], Y[:600]


def test_registered_with_their_kind():
    kinds = {"graddrop": BackwardWeighter, "gradvac": BackwardWeighter,
             "fairgrad": GradientWeighter, "db_mtl": BackwardWeighter,
             "excess_mtl": BackwardWeighter}
    for name in NEW:
        weighter = WEIGHTINGS[name]().build(3)
        kind = kinds.get(name, Weighter)
        assert isinstance(weighter, kind), name
        assert weighter.sets_gradients is (kind is not Weighter), name
        losses = torch.tensor([1.0, 2.0, 0.0])
        total, w = weighter.eval()(losses, torch.tensor([True, True, False]))
        assert w.shape == (3,) and w[2] == 0, name
        assert total.item() == pytest.approx((w * losses).sum().item(), rel=1e-6), name


# ------------------------------------------------------------------ FairGrad
def test_fairgrad_closed_form_on_orthogonal_gradients():
    norms = np.array([1.0, 2.0, 0.5])
    np.testing.assert_allclose(fairgrad_weights(np.diag(norms ** 2), alpha=1.0), 1 / norms,
                               rtol=1e-6)
    # alpha = 2: ||g||^2 w = w^(-1/2), w = ||g||^(-4/3)
    np.testing.assert_allclose(fairgrad_weights(np.diag(norms ** 2), alpha=2.0),
                               norms ** (-4 / 3), rtol=1e-6)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
def test_fairgrad_solves_its_fixed_point(alpha):
    for seed in range(3):
        G = random_grads(4, seed=seed) + 1.0  # mostly aligned: a positive solution exists
        M = G @ G.T
        w = fairgrad_weights(M, alpha)
        assert np.all(w > 0)
        np.testing.assert_allclose(M @ w, w ** (-1 / alpha), rtol=1e-5)


def test_fairgrad_zero_gradient_gets_zero_weight():
    w = fairgrad_weights(np.diag([1.0, 0.0]), 1.0)
    assert w[1] == 0 and w[0] == pytest.approx(1.0, rel=1e-6)


def test_fairgrad_against_torchjd():
    pytest.importorskip("torchjd", reason="torchjd (optional test dependency) is absent")
    from torchjd.aggregation import FairGradWeighting as Jd

    for T in (2, 3, 5):
        for seed in range(3):
            G = random_grads(T, seed=seed) + 0.5
            M = G @ G.T
            for alpha in (1.0, 2.0):
                wj = Jd(alpha=alpha)(torch.as_tensor(M)).numpy()
                np.testing.assert_allclose(fairgrad_weights(M, alpha), wj, rtol=1e-4)


# ------------------------------------------------------------------ GradDrop
def test_graddrop_keeps_aligned_gradients():
    G = torch.tensor([[1.0, -2.0, 0.5], [3.0, -1.0, 0.0]])
    for seed in range(5):
        U = torch.rand(3, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(graddrop_direction(G, U), G.sum(0))


def test_graddrop_picks_a_sign_per_coordinate():
    G = torch.tensor([[1.0], [-3.0]])  # purity P = (1 - 2/4) / 2 = 0.25
    assert graddrop_direction(G, torch.tensor([0.1])).item() == 1.0  # P > U: positive kept
    assert graddrop_direction(G, torch.tensor([0.5])).item() == -3.0  # P < U: negative kept
    # leak 1 is the plain sum; 0.5 keeps half of the dropped part
    assert graddrop_direction(G, torch.tensor([0.5]), leak=1.0).item() == -2.0
    assert graddrop_direction(G, torch.tensor([0.5]), leak=0.5).item() == -2.5


def test_graddrop_against_torchjd():
    pytest.importorskip("torchjd", reason="torchjd (optional test dependency) is absent")
    from torchjd.aggregation import GradDrop

    G = torch.as_tensor(random_grads(4, P=200), dtype=torch.float32)
    for leak in (0.0, 0.3):
        torch.manual_seed(3)
        jd = GradDrop(leak=torch.full((4,), leak))(G)
        torch.manual_seed(3)
        ours, w = GradDropWeighting(leak=leak).build(4).combine(G, [0, 1, 2, 3])
        torch.testing.assert_close(ours, jd)
        np.testing.assert_array_equal(w, np.ones(4))


# ------------------------------------------------------------------- GradVac
def test_gradvac_first_step_is_pcgrad():
    M = np.array([[1.0, -0.5], [-0.5, 1.0]])
    w, targets = gradvac_weights(M, np.zeros((2, 2)), 0.5, [[1], [0]])
    np.testing.assert_allclose(w, [1.5, 1.5], atol=1e-7)
    np.testing.assert_allclose(targets, [[0, -0.25], [-0.25, 0]], atol=1e-7)  # EMA of cos = -0.5
    for seed in range(3):
        G = random_grads(4, seed=seed)
        M = G @ G.T
        orders = [[j for j in np.random.RandomState(seed + i).permutation(4) if j != i]
                  for i in range(4)]
        w, _ = gradvac_weights(M, np.zeros((4, 4)), 0.0, orders)
        np.testing.assert_allclose(w, S.pcgrad_weights(M, orders), rtol=1e-6, atol=1e-7)


def test_gradvac_reaches_the_target_similarity():
    # target 0.5, gradients at cosine -0.5: the adjusted g_0 has cosine 0.5 with g_1
    M = np.array([[1.0, -0.5], [-0.5, 1.0]])
    w, targets = gradvac_weights(M, np.full((2, 2), 0.5), 0.0, [[1], []])  # adjust g_0 only
    G = np.linalg.cholesky(M)  # rows with Gramian M
    g0 = G[0] + (w[1] - 1.0) * G[1]
    assert w[0] == 1.0
    assert g0 @ G[1] / (np.linalg.norm(g0) * np.linalg.norm(G[1])) == pytest.approx(0.5)
    np.testing.assert_allclose(targets, [[0.5, 0.5], [0.5, 0.5]])  # beta 0: unchanged


def test_gradvac_against_torchjd_over_steps():
    pytest.importorskip("torchjd", reason="torchjd (optional test dependency) is absent")
    from torchjd.aggregation import GradVacWeighting as Jd

    jd = Jd(beta=0.3)
    ours = GradVacWeighting(beta=0.3).build(4)
    for step in range(4):
        G = torch.as_tensor(random_grads(4, P=40, seed=step), dtype=torch.float64)
        torch.manual_seed(step)
        wj = jd(G @ G.T)
        torch.manual_seed(step)
        d, w = ours.combine(G, [0, 1, 2, 3])
        np.testing.assert_allclose(w, wj.numpy(), rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(d, wj @ G)


def test_gradvac_keeps_the_targets_of_absent_tasks():
    weighter = GradVacWeighting(beta=1.0).build(3)
    G = torch.as_tensor(random_grads(2, seed=1))
    weighter.combine(G, [0, 2])
    cos = float(G[0] @ G[1] / (G[0].norm() * G[1].norm()))
    assert weighter.targets[0, 2].item() == pytest.approx(cos, rel=1e-6)
    assert weighter.targets[0, 1] == 0 and weighter.targets[1].abs().sum() == 0


# -------------------------------------------------------------------- DB-MTL
def test_db_mtl_scales_every_averaged_gradient_to_the_largest_norm():
    weighter = DBMTLWeighting(beta=0.5).build(2)
    g = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    d, alpha = weighter.combine(g, [0, 1])
    # first step: m = (1 - beta) g; the smaller one is scaled to the larger norm
    np.testing.assert_allclose(alpha, [1.0, 3.0], rtol=1e-6)
    torch.testing.assert_close(d, torch.tensor([1.5, 1.5]))
    d, alpha = weighter.combine(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), [0, 1])
    m = torch.tensor([[0.5 * 1.5 + 0.5, 0.0], [0.0, 0.5 * 0.5 + 0.5]])  # EMA
    torch.testing.assert_close(weighter.grad_buffer, m)
    torch.testing.assert_close(d, torch.tensor([1.25, 1.25]))


def test_db_mtl_state_pickles_and_loads_into_a_fresh_weighter():
    weighter = DBMTLWeighting().build(2)
    weighter.combine(torch.ones(2, 5), [0, 1])
    again = pickle.loads(pickle.dumps(weighter))
    torch.testing.assert_close(again.grad_buffer, weighter.grad_buffer)
    fresh = DBMTLWeighting().build(2)
    fresh.load_state_dict(weighter.state_dict())
    torch.testing.assert_close(fresh.grad_buffer, weighter.grad_buffer)
    assert int(fresh.n_steps) == 1


# ---------------------------------------------------------------------- STCH
def test_stch_tends_to_the_max_as_mu_goes_to_zero():
    losses = torch.tensor([0.5, 2.0, 1.0])
    present = torch.ones(3, dtype=torch.bool)
    target = 3 * np.log(2.0)
    gaps = []
    for mu in (1.0, 0.1, 0.01):
        value, _ = STCHWeighting(mu=mu, warmup_epochs=0).build(3).objective(losses, present)
        gaps.append(float(value) - target)
    assert gaps[0] > gaps[1] > gaps[2] >= 0 and gaps[2] < 1e-6


def test_stch_weights_are_the_gradient_of_its_objective_and_use_the_nadir():
    weighter = STCHWeighting(mu=0.5, warmup_epochs=1).build(3)
    losses = torch.tensor([0.5, 2.0, 1.0], requires_grad=True)
    present = torch.tensor([True, True, False])
    _, w = weighter(losses, present)  # warm-up: sum of the log-losses
    torch.testing.assert_close(w, torch.tensor([2.0, 0.5, 0.0]))
    weighter.epoch_end(torch.tensor([1.0, 4.0, 2.0]))  # end of warm-up: the nadir point
    torch.testing.assert_close(weighter.nadir, torch.tensor([1.0, 4.0, 2.0]))
    value, w = weighter.objective(losses, present)
    (grad,) = torch.autograd.grad(value, losses)
    torch.testing.assert_close(w, grad)
    s = torch.log(torch.tensor([0.5, 0.5]))
    expected = 3 * 0.5 * torch.logsumexp(s / 0.5, 0)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)


# ----------------------------------------------------------------- ExcessMTL
def test_excess_mtl_follows_the_authors_update():
    eta = 0.5
    weighter = ExcessMTLWeighting(robust_step_size=eta).build(2)
    g1 = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    g2 = torch.tensor([[1.0, 1.0], [0.0, 3.0]])
    _, w = weighter.combine(g1, [0, 1])
    np.testing.assert_allclose(w, [1.0, 1.0])  # the first excess risks are the baseline
    acc = g1 ** 2
    e0 = (g1 ** 2 / torch.sqrt(acc + 1e-7)).sum(1)
    acc = acc + g2 ** 2
    e1 = (g2 ** 2 / torch.sqrt(acc + 1e-7)).sum(1)
    lw = torch.exp(eta * e1 / e0)
    lw = lw / lw.sum() * 2
    d, w = weighter.combine(g2, [0, 1])
    np.testing.assert_allclose(w, lw.numpy(), rtol=1e-5)
    torch.testing.assert_close(d, lw @ g2)
    assert w[1] > w[0]  # task 1's gradient grew relative to its start


# ------------------------------------------------------ through the estimator
@pytest.mark.parametrize("weighting", NEW)
def test_new_weightings_learn_real_digits(digits_tasks, weighting):
    X_tr, X_te, y_tr, y_te, t_tr, t_te = digits_tasks
    w = STCHWeighting(warmup_epochs=2) if weighting == "stch" else weighting
    # DB-MTL's moving average of the gradients (beta 0.9) starts slowly
    params = dict(FAST, max_epochs=12) if weighting == "db_mtl" else FAST
    clf = MultiTaskClassifier(weighting=w, **params).fit(X_tr, y_tr, task_ids=t_tr)
    pred = clf.predict(X_te, task_ids=t_te)
    for task, chance in [(0, 0.1), (1, 0.5), (2, 0.5)]:
        rows = t_te == task
        acc = np.mean(pred[rows] == y_te[rows])
        assert acc > chance + 0.25, (weighting, task, acc)
    weights = np.asarray(clf.net_.history[:, "train_task_weights"])
    assert weights.shape == (params["max_epochs"], 3) and np.all(np.isfinite(weights))
    assert np.all(weights > 0)
    losses = np.array(clf.net_.history[:, "train_task_losses"])
    assert np.all(losses[-1] < losses[0]), weighting


@pytest.mark.parametrize("weighting, same_as", [
    (GradDropWeighting(leak=1.0), "equal"),  # leak 1: nothing dropped
    (ExcessMTLWeighting(), "equal"),  # first step: weights 1
    (GradVacWeighting(beta=0.0), "pcgrad"),  # targets 0 (beta 0 keeps them there)
], ids=str)
def test_first_training_step_matches_its_closed_form(digits3, weighting, same_as):
    X, Y = digits3
    Y = Y[:, 1:]  # two tasks: the task orders of GradVac and PCGrad are the same
    params = dict(hidden_layer_sizes=(16,), max_epochs=1, random_state=0)
    model = MultiTaskClassifier(**params).fit(X[:64], Y[:64]).net_.module_.model.state_dict()
    batch = ({"X": torch.as_tensor(X[64:192], dtype=torch.float32)},
             torch.as_tensor(np.nan_to_num(Y[64:192], nan=-1), dtype=torch.int64))

    def first_step(w):
        strategy = WEIGHTINGS[w]() if isinstance(w, str) else w
        net = MultiTaskClassifier(weighting=strategy, **params).fit(X[:64], Y[:64]).net_
        net.module_.model.load_state_dict(model)
        net.module_.weighter = strategy.build(2)  # a fresh state: the first step
        net.optimizer_.zero_grad()
        torch.manual_seed(0)
        net.train_step_single(batch)
        return {n: p.grad.clone() for n, p in net.module_.model.named_parameters()}

    a, b = first_step(weighting), first_step(same_as)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("weighting", ["graddrop", "gradvac"])
def test_random_surgery_is_reproducible(digits_tasks, weighting):
    X_tr, X_te, y_tr, _, t_tr, t_te = digits_tasks
    params = dict(FAST, max_epochs=2)
    p1 = MultiTaskClassifier(weighting=weighting, **params).fit(
        X_tr, y_tr, task_ids=t_tr).predict_proba(X_te, task_ids=t_te)
    state = torch.random.get_rng_state()
    p2 = MultiTaskClassifier(weighting=weighting, **params).fit(
        X_tr, y_tr, task_ids=t_tr).predict_proba(X_te, task_ids=t_te)
    assert torch.equal(state, torch.random.get_rng_state())  # the global stream is untouched
    np.testing.assert_array_equal(np.concatenate(p1), np.concatenate(p2))


def test_clone_pickle_and_search_parameters(digits_tasks):
    X_tr, X_te, y_tr, _, t_tr, t_te = digits_tasks
    clf = MultiTaskClassifier(weighting=DBMTLWeighting(beta=0.5), **dict(FAST, max_epochs=2))
    assert clone(clf).get_params()["weighting__beta"] == 0.5
    clf.set_params(weighting__beta=0.8).fit(X_tr, y_tr, task_ids=t_tr)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(np.concatenate(again.predict_proba(X_te, task_ids=t_te)),
                               np.concatenate(clf.predict_proba(X_te, task_ids=t_te)))


@pytest.mark.parametrize("weighting, match", [
    (GradDropWeighting(leak=1.5), r"The 'leak' parameter of GradDropWeighting"),
    (GradVacWeighting(beta=-0.1), r"The 'beta' parameter of GradVacWeighting"),
    (FairGradWeighting(alpha=0), r"The 'alpha' parameter of FairGradWeighting"),
    (DBMTLWeighting(beta=1.0), r"The 'beta' parameter of DBMTLWeighting"),
    (DBMTLWeighting(beta_sigma=-1), r"The 'beta_sigma' parameter of DBMTLWeighting"),
    (STCHWeighting(mu=0), r"The 'mu' parameter of STCHWeighting"),
    (STCHWeighting(warmup_epochs=1.5), r"The 'warmup_epochs' parameter of STCHWeighting"),
    (ExcessMTLWeighting(robust_step_size=0),
     r"The 'robust_step_size' parameter of ExcessMTLWeighting"),
], ids=str)
def test_bad_parameters_are_rejected_by_name(digits_tasks, weighting, match):
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks
    with pytest.raises(InvalidParameterError, match=match):
        MultiTaskClassifier(weighting=weighting, **FAST).fit(X_tr, y_tr, task_ids=t_tr)


@pytest.mark.parametrize("weighting", ["graddrop", "gradvac", "db_mtl", "excess_mtl"])
def test_gradient_surgery_needs_shared_parameters(digits_tasks, weighting):
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks

    class NoShared(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(64, 10)

        def forward(self, X, task_ids=None):
            out = self.lin(X)
            return out if task_ids is not None else out.unsqueeze(1).expand(-1, 3, -1)

    clf = MultiTaskClassifier(weighting=weighting, architecture=NoShared(), **FAST)
    with pytest.raises(ValueError, match=rf"weighting='{weighting}' needs the parameters "
                                         r"shared by all tasks"):
        clf.fit(X_tr, y_tr, task_ids=t_tr)


def test_fairgrad_newton_agrees_with_least_squares():
    from scipy.optimize import least_squares

    for seed in range(4):
        G = random_grads(5, seed=seed) + 0.3
        M = G @ G.T
        for alpha in (0.5, 1.0, 4.0):
            p = 1 / alpha
            ref = least_squares(lambda x, M=M, p=p: M @ x - x ** (-p), np.full(5, 0.2),
                                bounds=(0, np.inf), xtol=1e-15, ftol=1e-15, gtol=1e-15).x
            np.testing.assert_allclose(fairgrad_weights(M, alpha), ref, rtol=1e-6)


def test_accumulators_of_absent_tasks_stay_unchanged():
    G = torch.as_tensor(random_grads(2, P=6, seed=2), dtype=torch.float32)
    excess = ExcessMTLWeighting().build(3)
    excess.combine(G, [0, 2])
    torch.testing.assert_close(excess.sq_grad_sum[[0, 2]], G * G)
    assert excess.sq_grad_sum[1].abs().sum() == 0 and not excess.seen[1]
    db = DBMTLWeighting(beta=0.5).build(3)
    db.combine(G, [0, 2])
    torch.testing.assert_close(db.grad_buffer[[0, 2]], 0.5 * G)
    assert db.grad_buffer[1].abs().sum() == 0
