"""Task weightings: the Weighter protocol, learning on real data, the training step, errors."""

import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from skorch.dataset import ValidSplit

from sktransfer.multitask import (
    WEIGHTINGS,
    BackwardWeighter,
    CAGradWeighting,
    DWAWeighting,
    FAMOWeighting,
    GradientWeighter,
    GradNormWeighting,
    MGDAUBWeighting,
    MGDAWeighting,
    MultiTaskClassifier,
    NashMTLWeighting,
    PCGradWeighting,
    UPGradWeighting,
    Weighter,
    Weighting,
)
from sktransfer.multitask import _solvers as S
from sktransfer.multitask._gradient_step import batch_task_losses
from sktransfer.multitask._net import AcceleratedMultiTaskNet

FAST = dict(hidden_layer_sizes=(32,), max_epochs=6, lr=3e-3, batch_size=64, random_state=0)
LOSS_BASED = ["dwa", "rlw", "famo", "gradnorm"]
GRADIENT_BASED = ["mgda", "mgda_ub", "pcgrad", "cagrad", "imtl", "upgrad", "aligned_mtl",
                  "nash_mtl", "fairgrad"]
#: weighters that fill the gradients themselves (BackwardWeighter)
SETS_OWN_GRADIENTS = ["gradnorm", "graddrop", "gradvac", "db_mtl", "excess_mtl"]


@pytest.fixture(scope="module")
def digits3():
    """Real digits, three tasks per row ('which digit', 'odd?', '>= 5?'), 20% labels missing."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    Y = np.column_stack([y, y % 2, y >= 5]).astype(float)
    rng = np.random.RandomState(1)
    Y[rng.rand(*Y.shape) < 0.2] = np.nan
    return train_test_split(X, Y, test_size=0.3, random_state=0)


@pytest.fixture(scope="module")
def digits_tasks():
    """Real digits in the task format: each row is one of three tasks."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    t = np.random.RandomState(0).randint(3, size=len(y))
    label = np.where(t == 0, y, np.where(t == 1, y % 2, (y >= 5).astype(int)))
    return train_test_split(X, label, t, test_size=0.3, random_state=0)


# ------------------------------------------------------------------ learning
@pytest.mark.parametrize("weighting", LOSS_BASED + GRADIENT_BASED)
def test_every_weighting_learns_real_digits(digits_tasks, weighting):
    X_tr, X_te, y_tr, y_te, t_tr, t_te = digits_tasks
    clf = MultiTaskClassifier(weighting=weighting, **FAST).fit(X_tr, y_tr, task_ids=t_tr)
    pred = clf.predict(X_te, task_ids=t_te)
    for task, chance in [(0, 0.1), (1, 0.5), (2, 0.5)]:
        rows = t_te == task
        acc = np.mean(pred[rows] == y_te[rows])
        assert acc > chance + 0.25, (weighting, task, acc)
    hist = clf.net_.history
    weights = np.array(hist[:, "train_task_weights"])
    assert weights.shape == (FAST["max_epochs"], 3) and np.all(np.isfinite(weights))
    losses = np.array(hist[:, "train_task_losses"])
    assert np.all(losses[-1] < losses[0]), weighting


@pytest.mark.parametrize("weighting", ["mgda", "pcgrad", "famo", "gradnorm", "dwa"])
def test_weighting_learns_a_multi_target_Y_with_missing_labels(digits3, weighting):
    X_tr, X_te, Y_tr, Y_te = digits3
    clf = MultiTaskClassifier(weighting=weighting, **FAST).fit(X_tr, Y_tr)
    assert clf.score(X_te, Y_te) > 0.75


def test_recorded_weights_follow_each_scheme(digits3):
    X_tr, _, Y_tr, _ = digits3
    # MGDA's and RLW's weights sum to 1 at every step; GradNorm's to T.
    for name, total in [("mgda", 1.0), ("rlw", 1.0), ("gradnorm", 3.0), ("famo", 1.0)]:
        clf = MultiTaskClassifier(weighting=name, **dict(FAST, max_epochs=3)).fit(X_tr, Y_tr)
        w = np.array(clf.net_.history[:, "train_task_weights"])
        np.testing.assert_allclose(w.sum(1), total, rtol=1e-4, err_msg=name)
    w = clf.net_.history[-1, "train_task_weights"]
    assert not np.allclose(w, w[0])  # FAMO's weights moved apart


def test_dwa_weights_follow_the_epoch_loss_ratios(digits3):
    X_tr, _, Y_tr, _ = digits3
    clf = MultiTaskClassifier(weighting=DWAWeighting(temperature=2.0),
                              **dict(FAST, max_epochs=5)).fit(X_tr, Y_tr)
    hist = clf.net_.history
    L = np.array(hist[:, "train_task_losses"])
    W = np.array(hist[:, "train_task_weights"])
    np.testing.assert_allclose(W[:2], 1.0)
    for e in range(2, 5):
        r = L[e - 1] / L[e - 2]
        expected = 3 * np.exp(r / 2) / np.exp(r / 2).sum()
        np.testing.assert_allclose(W[e], expected, rtol=1e-5)


def test_gradnorm_weights_are_learned_and_sum_to_T(digits3):
    X_tr, _, Y_tr, _ = digits3
    clf = MultiTaskClassifier(weighting=GradNormWeighting(alpha=1.0),
                              **dict(FAST, max_epochs=3, lr=1e-2)).fit(X_tr, Y_tr)
    w = clf.net_.module_.weighter.task_weights.detach().numpy()
    assert w.sum() == pytest.approx(3.0, rel=1e-5) and np.all(w > 0)
    assert not np.allclose(w, 1.0)


# ------------------------------------------------------ the training step
def _fitted(weighting, X, Y, **kw):
    return MultiTaskClassifier(weighting=weighting, **dict(FAST, max_epochs=1, **kw)).fit(X, Y)


def _batch(X, Y_encoded, n=48):
    return ({"X": torch.as_tensor(X[:n], dtype=torch.float32)},
            torch.as_tensor(Y_encoded[:n]))


def _manual_grads(net, Xb, yb):
    """Per-task gradients of the trunk and the summed head gradients, by hand."""
    model = net.module_.model
    out = net.module_(Xb["X"])
    losses, counts = net.criterion_(out, yb)
    shared = list(model.trunk.parameters())
    heads = list(model.heads.parameters())
    rows, head_sum = [], None
    for t in range(losses.shape[0]):
        g = torch.autograd.grad(losses[t], shared + heads, retain_graph=True)
        rows.append(torch.cat([x.reshape(-1) for x in g[:len(shared)]]))
        h = g[len(shared):]
        head_sum = h if head_sum is None else [a + b for a, b in zip(head_sum, h)]
    return torch.stack(rows).double(), head_sum, losses.detach()


def _step_grads(net, Xb, yb):
    net.optimizer_.zero_grad()
    net.train_step_single((Xb, yb))
    model = net.module_.model
    shared = torch.cat([p.grad.reshape(-1) for p in model.trunk.parameters()]).double()
    return shared, [p.grad for p in model.heads.parameters()]


@pytest.mark.parametrize("weighting, oracle", [
    ("mgda", lambda G: S.min_norm_weights_nnls(G @ G.T)),
    ("pcgrad", None),
    ("imtl", lambda G: S.imtl_g_weights(G @ G.T)),
    ("upgrad", lambda G: S.upgrad_weights(G @ G.T)),
    ("nash_mtl", lambda G: S.nash_mtl_weights(G @ G.T, max_norm=1.0)),
    ("cagrad", lambda G: S.cagrad_weights(G @ G.T, c=0.4)),
    ("aligned_mtl", lambda G: S.aligned_mtl_weights(G @ G.T)),
])
def test_gradient_step_writes_weighted_shared_gradient(digits3, weighting, oracle):
    X_tr, _, Y_tr, _ = digits3
    clf = _fitted(weighting, X_tr, Y_tr)
    net = clf.net_
    Xb, yb = _batch(X_tr, _encode(clf, Y_tr))
    G, head_sum, _ = _manual_grads(net, Xb, yb)
    torch.manual_seed(3)
    shared, head_grads = _step_grads(net, Xb, yb)
    Gn = G.numpy()
    if oracle is None:  # PCGrad with the same task orders (the torch RNG, re-seeded)
        torch.manual_seed(3)
        orders = [torch.randperm(3).tolist() for _ in range(3)]
        w = S.pcgrad_weights(Gn @ Gn.T, orders)
    else:
        w = oracle(Gn)
    expected = torch.as_tensor(w) @ G
    torch.testing.assert_close(shared, expected, rtol=1e-4, atol=1e-6 * expected.abs().max())
    for got, exp in zip(head_grads, head_sum):
        torch.testing.assert_close(got, exp, rtol=1e-5, atol=1e-7)


def _encode(clf, Y):
    """Y encoded as the net sees it: local label indices, -1 for missing."""
    out = np.full(Y.shape, -1, dtype=np.int64)
    for k, classes in enumerate(clf.task_classes_):
        keep = ~np.isnan(Y[:, k])
        out[keep, k] = np.searchsorted(classes, Y[keep, k])
    return out


def test_mgda_two_tasks_step_matches_closed_form(digits3):
    X_tr, _, Y_tr, _ = digits3
    Y2 = Y_tr[:, 1:]
    clf = _fitted("mgda", X_tr, Y2)
    net = clf.net_
    Xb, yb = _batch(X_tr, _encode(clf, Y2))
    G, _, _ = _manual_grads(net, Xb, yb)
    g1, g2 = G
    gamma = torch.clamp((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2)), 0, 1)
    shared, _ = _step_grads(net, Xb, yb)
    torch.testing.assert_close(shared, gamma * g1 + (1 - gamma) * g2, rtol=1e-4, atol=1e-8)


def test_mgda_ub_uses_the_representation_gradients(digits3):
    X_tr, _, Y_tr, _ = digits3
    clf = _fitted(MGDAUBWeighting(normalization="l2"), X_tr, Y_tr)
    net = clf.net_
    Xb, yb = _batch(X_tr, _encode(clf, Y_tr))
    model = net.module_.model
    Z = model.trunk(Xb["X"])
    Zl = Z.detach().requires_grad_(True)
    out = model.heads(Zl).masked_fill(~net.module_.class_mask, -1e4)  # the module's mask
    losses, _ = net.criterion_(out, yb)
    GZ = torch.stack([torch.autograd.grad(losses[t], Zl, retain_graph=True)[0].reshape(-1)
                      for t in range(3)]).double()
    norms = GZ.norm(dim=1)
    w = S.min_norm_weights_nnls(((GZ / norms[:, None]) @ (GZ / norms[:, None]).T).numpy())
    gZ = (torch.as_tensor(w) @ GZ).float().view_as(Z)
    expected = torch.autograd.grad(Z, list(model.trunk.parameters()), grad_outputs=gZ)
    net.optimizer_.zero_grad()
    net.train_step_single((Xb, yb))
    for p, e in zip(model.trunk.parameters(), expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-7)


def test_absent_task_is_dropped_from_the_gradient_problem(digits3):
    X_tr, _, Y_tr, _ = digits3
    clf = _fitted("mgda", X_tr, Y_tr)
    net = clf.net_
    Xb, yb = _batch(X_tr, _encode(clf, Y_tr))
    yb[:, 2] = -1  # task 2 has no label in this batch
    G, _, _ = _manual_grads(net, Xb, yb)
    net.__dict__.pop("_task_acc", None)
    shared, _ = _step_grads(net, Xb, yb)
    Gp = G[:2].numpy()
    w = S.min_norm_weights_nnls(Gp @ Gp.T)
    torch.testing.assert_close(shared, torch.as_tensor(w) @ G[:2], rtol=1e-4, atol=1e-8)
    _, _, weights, present = net.__dict__.pop("_task_acc")["train"][-1]
    assert weights[2] == 0 and not present[2]


# -------------------------------------------------------------- FAMO oracle
class _OfficialFAMO:
    """The update of the authors' FAMO code (Liu et al., 2023), as the oracle."""

    def __init__(self, n_tasks, gamma=0.01, w_lr=0.025):
        self.min_losses = torch.zeros(n_tasks)
        self.w = torch.zeros(n_tasks, requires_grad=True)
        self.w_opt = torch.optim.Adam([self.w], lr=w_lr, weight_decay=gamma)

    def get_weighted_loss(self, losses):
        self.prev_loss = losses
        z = torch.softmax(self.w, -1)
        D = losses - self.min_losses + 1e-8
        c = (z / D).sum().detach()
        return (D.log() * z / c).sum()

    def update(self, curr_loss):
        delta = (self.prev_loss - self.min_losses + 1e-8).log() - \
                (curr_loss - self.min_losses + 1e-8).log()
        with torch.enable_grad():
            d = torch.autograd.grad(torch.softmax(self.w, -1), self.w,
                                    grad_outputs=delta.detach())[0]
        self.w_opt.zero_grad()
        self.w.grad = d
        self.w_opt.step()


def test_famo_matches_the_authors_update():
    rng = np.random.RandomState(0)
    ours = FAMOWeighting().build(3).train()
    official = _OfficialFAMO(3)
    present = torch.ones(3, dtype=torch.bool)
    for _ in range(20):
        before = torch.as_tensor(rng.uniform(0.5, 2.0, 3), dtype=torch.float32)
        after = before * torch.as_tensor(rng.uniform(0.7, 1.1, 3), dtype=torch.float32)
        # the same gradient for the network ...
        theta = before.clone().requires_grad_(True)
        total, _ = ours(theta, present)
        g_ours = torch.autograd.grad(total, theta)[0]
        theta2 = before.clone().requires_grad_(True)
        g_off = torch.autograd.grad(official.get_weighted_loss(theta2), theta2)[0]
        torch.testing.assert_close(g_ours, g_off, rtol=1e-5, atol=1e-7)
        # ... and the same logits after the update
        ours.update_logits(after, present)
        official.update(after)
        torch.testing.assert_close(ours.logits, official.w.detach(), rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------ invariants
@pytest.mark.parametrize("weighting", ["pcgrad", "rlw", "famo", "mgda_ub"])
def test_reproducible_with_random_state(digits_tasks, weighting):
    X_tr, X_te, y_tr, _, t_tr, t_te = digits_tasks
    kw = dict(FAST, max_epochs=2)
    p1 = MultiTaskClassifier(weighting=weighting, **kw).fit(X_tr, y_tr, task_ids=t_tr)
    p2 = MultiTaskClassifier(weighting=weighting, **kw).fit(X_tr, y_tr, task_ids=t_tr)
    np.testing.assert_array_equal(p1.predict_proba(X_te, task_ids=t_te),
                                  p2.predict_proba(X_te, task_ids=t_te))


def test_clone_pickle_and_search_parameters(digits_tasks):
    X_tr, X_te, y_tr, _, t_tr, t_te = digits_tasks
    clf = MultiTaskClassifier(weighting=CAGradWeighting(c=0.2), **dict(FAST, max_epochs=2))
    assert clf.get_params()["weighting__c"] == 0.2
    c2 = clone(clf).set_params(weighting__c=0.7)
    assert c2.weighting.c == 0.7 and clf.weighting.c == 0.2
    for w in ("famo", "dwa", "gradnorm", "nash_mtl"):
        fitted = MultiTaskClassifier(weighting=w, **dict(FAST, max_epochs=2)).fit(
            X_tr, y_tr, task_ids=t_tr)
        again = pickle.loads(pickle.dumps(fitted))
        np.testing.assert_array_equal(again.predict(X_te, task_ids=t_te),
                                      fitted.predict(X_te, task_ids=t_te))


# --------------------------------------------------------------- errors
class _NoSharedInfo(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(64, 16)
        self.out = torch.nn.Linear(16, 3 * 10)

    def forward(self, X, task_ids=None):
        out = self.out(torch.relu(self.body(X))).view(-1, 3, 10)
        if task_ids is None:
            return out
        return out[torch.arange(X.shape[0]), task_ids]


@pytest.mark.parametrize("weighting", ["mgda", "pcgrad", "gradnorm"])
def test_gradient_weighting_needs_the_architectures_shared_parameters(digits_tasks, weighting):
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks
    clf = MultiTaskClassifier(architecture=_NoSharedInfo(), weighting=weighting,
                              **dict(FAST, max_epochs=1))
    with pytest.raises(ValueError, match=r"shared parameters .* cannot be found: define a "
                                         r"method shared_parameters\(\)"):
        clf.fit(X_tr, y_tr, task_ids=t_tr)
    # A loss-based weighting needs no shared parameters.
    MultiTaskClassifier(architecture=_NoSharedInfo(), weighting="dwa",
                        **dict(FAST, max_epochs=1)).fit(X_tr, y_tr, task_ids=t_tr)


def test_mgda_ub_needs_a_trunk(digits_tasks):
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks
    clf = MultiTaskClassifier(architecture=_NoSharedInfo(), weighting="mgda_ub",
                              **dict(FAST, max_epochs=1))
    with pytest.raises(ValueError, match="shared representation Z = trunk"):
        clf.fit(X_tr, y_tr, task_ids=t_tr)


@pytest.mark.parametrize("weighting, match", [
    ("magic", r"The 'weighting' parameter of MultiTaskClassifier must be a str among "
              r"\{.*'cagrad'.*\}"),
    (CAGradWeighting(c=-1), r"The 'c' parameter of CAGradWeighting must be a float in the "
                             r"range \[0.0, inf\)"),
    (CAGradWeighting(rescale=5), r"The 'rescale' parameter of CAGradWeighting must be .* "
                                   r"among \{0, 1, 2\}"),
    (MGDAWeighting(normalization="l3"), "The 'normalization' parameter of MGDAWeighting must "
                                          "be a str among"),
    (MGDAWeighting(solver="cvx"), "The 'solver' parameter of MGDAWeighting must be a str among"),
    (FAMOWeighting(update="sometimes"), "The 'update' parameter of FAMOWeighting must be a "
                                          "str among"),
    (FAMOWeighting(lr=0), r"The 'lr' parameter of FAMOWeighting must be a float in the range "
                            r"\(0.0, inf\)"),
    (DWAWeighting(temperature=0), "The 'temperature' parameter of DWAWeighting must be"),
    (GradNormWeighting(alpha=np.nan), "The 'alpha' parameter of GradNormWeighting must be .* "
                                        "Got nan instead"),
    (UPGradWeighting(reg_eps=-1), "The 'reg_eps' parameter of UPGradWeighting must be"),
    (NashMTLWeighting(max_norm="x"), "The 'max_norm' parameter of NashMTLWeighting must be"),
])
def test_bad_weighting_parameters_are_rejected_by_name(digits_tasks, weighting, match):
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks
    with pytest.raises(ValueError, match=match):
        MultiTaskClassifier(weighting=weighting, **dict(FAST, max_epochs=1)).fit(
            X_tr, y_tr, task_ids=t_tr)


def test_every_registered_name_builds_a_weighter_of_its_kind():
    assert set(LOSS_BASED + GRADIENT_BASED) <= set(WEIGHTINGS)
    assert isinstance(WEIGHTINGS["pcgrad"](), PCGradWeighting)
    losses = torch.tensor([1.0, 2.0, 0.0])
    present = torch.tensor([True, True, False])  # task 2 has no label in the batch
    for name, cls in WEIGHTINGS.items():
        strategy = cls([1.0, 0.5, 2.0]) if name == "static" else cls()
        weighter = strategy.build(3)
        if name in GRADIENT_BASED:
            kind = GradientWeighter
        elif name in SETS_OWN_GRADIENTS:
            kind = BackwardWeighter
        else:
            kind = Weighter
            assert not isinstance(weighter, (GradientWeighter, BackwardWeighter)), name
        assert isinstance(weighter, kind), name
        assert weighter.sets_gradients is (kind is not Weighter), name
        total, weights = weighter.eval()(losses, present)
        assert weights.shape == (3,) and weights[2] == 0, name  # absent: weight 0
        # at their initial state every weighting's total is the weighted sum
        assert total.item() == pytest.approx((weights * losses).sum().item(), rel=1e-6), name


def test_weighters_that_step_on_their_own_refuse_data_parallel_and_fp16():
    own_step = set(GRADIENT_BASED) | set(SETS_OWN_GRADIENTS) | {"famo"}
    for name, cls in WEIGHTINGS.items():
        weighter = (cls([1.0, 1.0]) if name == "static" else cls()).build(2)
        two = SimpleNamespace(num_processes=2, mixed_precision="no")
        fp16 = SimpleNamespace(num_processes=1, mixed_precision="fp16")
        if name in own_step:
            with pytest.raises(ValueError, match="computes its own gradient step"):
                AcceleratedMultiTaskNet.check_weighting(weighter, two, name)
        else:
            AcceleratedMultiTaskNet.check_weighting(weighter, two, name)
        if weighter.sets_gradients:
            with pytest.raises(ValueError, match="float16 loss scaling"):
                AcceleratedMultiTaskNet.check_weighting(weighter, fp16, name)
        else:
            AcceleratedMultiTaskNet.check_weighting(weighter, fp16, name)
    # a user weighter with an after_step hook steps on its own too
    with pytest.raises(ValueError, match="computes its own gradient step"):
        AcceleratedMultiTaskNet.check_weighting(_RecordingWeighter(), two, "recording")
    AcceleratedMultiTaskNet.check_weighting(_MeanWeighter(), two, "mean")


def test_nothing_shared_falls_back_to_the_plain_sum(digits_tasks):
    X_tr, X_te, y_tr, y_te, t_tr, t_te = digits_tasks
    clf = MultiTaskClassifier(architecture="independent", weighting="mgda",
                              **dict(FAST, max_epochs=4)).fit(X_tr, y_tr, task_ids=t_tr)
    np.testing.assert_allclose(clf.net_.history[:, "train_task_weights"], 1.0)
    assert clf.score(X_te, y_te, task_ids=t_te) > 0.6


def test_architecture_penalty_gets_its_gradient(digits3):
    from sktransfer.multitask import HardParameterSharing

    X_tr, _, Y_tr, _ = digits3
    clf = _fitted("pcgrad", X_tr, Y_tr,
                  architecture=HardParameterSharing(task_covariance_penalty=0.1))
    net = clf.net_
    Xb, yb = _batch(X_tr, _encode(clf, Y_tr))
    _, head_sum, _ = _manual_grads(net, Xb, yb)
    heads = list(net.module_.model.heads.parameters())
    pen_grads = torch.autograd.grad(net.module_.penalty(), heads, allow_unused=True)
    _, head_grads = _step_grads(net, Xb, yb)
    for got, g, p in zip(head_grads, head_sum, pen_grads):
        expected = g if p is None else g + p
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------- the Weighter protocol
class _MeanWeighter(Weighter):
    """The mean of the present tasks' losses: a weighter with ``forward`` only."""

    def forward(self, losses, present):
        w = present.to(losses.dtype) / present.sum()
        return (w * losses).sum(), w


class _RecordingWeighter(Weighter):
    """Equal weighting that records what its hooks receive."""

    def __init__(self):
        super().__init__()
        self.train_losses, self.n_valid, self.steps, self.epochs = [], 0, [], []

    def forward(self, losses, present):
        if self.training and torch.is_grad_enabled():
            self.train_losses.append(losses.detach().clone())
        else:
            self.n_valid += 1
        w = present.to(losses.dtype)
        return (w * losses).sum(), w

    def after_step(self, net, batch, **fit_params):
        X, y = batch
        losses, counts = batch_task_losses(net, batch, **fit_params)
        self.steps.append({"net": id(net), "n_rows": len(y), "task_ids": X["task_ids"].clone(),
                           "losses": losses.detach(), "counts": counts,
                           "head": net.module_.model.heads.weight.detach().clone()})

    def epoch_end(self, task_losses):
        self.epochs.append(task_losses.clone())


class _OneWeighting(Weighting):
    """A user strategy: builds the weighter it is given a class of."""

    _parameter_constraints: dict = {"weighter": [type]}

    def __init__(self, weighter=_MeanWeighter):
        self.weighter = weighter

    def build(self, n_tasks, task_types=None):
        return self.weighter()


def test_weighter_hooks_are_documented_no_ops_and_forward_is_required():
    with pytest.raises(TypeError, match="abstract"):
        Weighter()
    with pytest.raises(TypeError, match="abstract.*solve"):
        type("NoSolve", (GradientWeighter,), {})()
    with pytest.raises(TypeError, match="abstract.*backward"):
        type("NoBackward", (BackwardWeighter,), {"forward": _MeanWeighter.forward})()
    w = _MeanWeighter()
    assert w.after_step(None, None) is None and w.epoch_end(torch.ones(2)) is None
    assert not w.sets_gradients
    assert GradientWeighter.level == "parameters" and GradientWeighter.sets_gradients


def test_a_weighter_with_only_forward_trains(digits_tasks):
    X_tr, X_te, y_tr, y_te, t_tr, t_te = digits_tasks
    clf = MultiTaskClassifier(weighting=_OneWeighting(_MeanWeighter), **FAST)
    clf.fit(X_tr, y_tr, task_ids=t_tr)
    assert isinstance(clf.net_.module_.weighter, _MeanWeighter)
    pred = clf.predict(X_te, task_ids=t_te)
    for task, chance in [(0, 0.1), (1, 0.5), (2, 0.5)]:
        rows = t_te == task
        assert np.mean(pred[rows] == y_te[rows]) > chance + 0.25, task
    # every batch of 64 rows holds all three tasks: each weighs 1/3
    np.testing.assert_allclose(clf.net_.history[:, "train_task_weights"], 1 / 3, rtol=1e-6)
    losses = np.array(clf.net_.history[:, "train_task_losses"])
    assert np.all(losses[-1] < losses[0])


def test_after_step_and_epoch_end_receive_the_step_and_the_epoch_losses(digits_tasks):
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks
    epochs = 3
    clf = MultiTaskClassifier(weighting=_OneWeighting(_RecordingWeighter),
                              train_split=ValidSplit(5), **dict(FAST, max_epochs=epochs,
                                                                batch_size=200))
    clf.fit(X_tr, y_tr, task_ids=t_tr)
    weighter, history = clf.net_.module_.weighter, clf.net_.history
    # after_step: once per training batch, with the net and the batch of that step
    n_batches = [sum(1 for b in h["batches"] if "train_loss" in b) for h in history]
    n_rows = [sum(b["train_batch_size"] for b in h["batches"] if "train_loss" in b)
              for h in history]
    assert len(weighter.steps) == len(weighter.train_losses) == sum(n_batches)
    assert {step["net"] for step in weighter.steps} == {id(clf.net_)}
    assert weighter.n_valid > 0  # validation batches go through forward only
    first = 0
    for n, rows in zip(n_batches, n_rows):
        assert sum(step["n_rows"] for step in weighter.steps[first:first + n]) == rows
        first += n
    for i, step in enumerate(weighter.steps):
        counts = torch.bincount(step["task_ids"], minlength=3).to(step["counts"].dtype)
        torch.testing.assert_close(step["counts"], counts)
        # the optimizer has stepped: the batch's losses differ from those forward saw
        assert not torch.equal(step["losses"], weighter.train_losses[i])
        if i:
            assert not torch.equal(step["head"], weighter.steps[i - 1]["head"])
    # epoch_end: once per training epoch, with the epoch's recorded task losses
    assert len(weighter.epochs) == epochs == len(history)
    np.testing.assert_array_equal(torch.stack(weighter.epochs).double().numpy(),
                                  np.array(history[:, "train_task_losses"]))
    assert all(len(h["valid_task_losses"]) == 3 for h in history)


class _SumOfLossesBackward(BackwardWeighter):
    """Backpropagates the plain sum itself: equal weighting, through the custom step."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, losses, present):
        w = present.to(losses.dtype)
        return (w * losses).sum(), w

    def backward(self, losses, present, model):
        self.calls += 1
        total, weights = self(losses, present)
        total.backward()
        return total.detach(), weights


def test_a_backward_weighter_sets_the_gradients_itself(digits_tasks):
    X_tr, X_te, y_tr, _, t_tr, t_te = digits_tasks
    kw = dict(FAST, max_epochs=2, batch_size=128)
    own = MultiTaskClassifier(weighting=_OneWeighting(_SumOfLossesBackward), **kw)
    own.fit(X_tr, y_tr, task_ids=t_tr)
    equal = MultiTaskClassifier(weighting="equal", **kw).fit(X_tr, y_tr, task_ids=t_tr)
    assert own.net_.module_.weighter.calls == kw["max_epochs"] * -(-len(X_tr) // 128)
    np.testing.assert_allclose(own.predict_proba(X_te, task_ids=t_te),
                               equal.predict_proba(X_te, task_ids=t_te), rtol=1e-5, atol=1e-6)


class _SumOfGradients(GradientWeighter):
    """Weight 1 for every task's gradient; records the problems it is given."""

    def __init__(self):
        super().__init__()
        self.problems = []

    def solve(self, M, losses):
        self.problems.append((M.copy(), losses.copy()))
        return np.ones(len(M))


def test_a_gradient_weighter_solves_the_gramian_of_the_present_tasks(digits3):
    X_tr, _, Y_tr, _ = digits3
    clf = _fitted(_OneWeighting(_SumOfGradients), X_tr, Y_tr)
    net = clf.net_
    problems = net.module_.weighter.problems
    assert len(problems) == -(-len(X_tr) // FAST["batch_size"])
    for M, losses in problems:
        assert M.dtype == np.float64 and M.shape == (3, 3) and losses.shape == (3,)
        np.testing.assert_allclose(M, M.T, rtol=1e-12)
        assert np.all(np.linalg.eigvalsh(M) > -1e-9 * np.trace(M))  # a Gramian
    # the shared update is the sum of the task gradients, as computed by hand
    Xb, yb = _batch(X_tr, _encode(clf, Y_tr))
    yb[:, 1] = -1  # task 1 is absent: left out of the problem
    G, _, losses = _manual_grads(net, Xb, yb)
    shared, _ = _step_grads(net, Xb, yb)
    M, seen = problems[-1]
    np.testing.assert_allclose(M, (G[[0, 2]] @ G[[0, 2]].T).numpy(), rtol=1e-4)
    np.testing.assert_allclose(seen, losses[[0, 2]].double().numpy(), rtol=1e-6)
    torch.testing.assert_close(shared, G[0] + G[2], rtol=1e-4, atol=1e-6)


def test_an_unnamed_gradient_weighter_is_named_by_its_class_in_errors(digits_tasks):
    X_tr, _, y_tr, _, t_tr, _ = digits_tasks
    clf = MultiTaskClassifier(architecture=_NoSharedInfo(),
                              weighting=_OneWeighting(_SumOfGradients),
                              **dict(FAST, max_epochs=1))
    with pytest.raises(ValueError, match="_SumOfGradients needs the parameters shared"):
        clf.fit(X_tr, y_tr, task_ids=t_tr)
