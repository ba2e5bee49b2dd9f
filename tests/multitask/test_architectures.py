"""Every multi-task architecture: builds, learns, keeps its contract; the renamed networks."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, KFold

from sktransfer import MultiTaskClassifier
from sktransfer.modules import MLP
from sktransfer.multitask import (
    ARCHITECTURES,
    CrossStitch,
    HardParameterSharing,
    HardSharing,
    HardSharingNet,
    MMoE,
    Sluice,
    TaskConditioned,
    TaskConditionedNet,
    TaskConditioning,
)
from sktransfer.multitask._hard import task_relationship_penalty

FAST = dict(hidden_layer_sizes=(32, 32), max_epochs=8, lr=3e-3, random_state=0)
VARIANTS = sorted(ARCHITECTURES) + [
    TaskConditioning(where="all", how="film"),
    TaskConditioning(where="hidden", how="concat"),
    HardParameterSharing(task_covariance_penalty=0.1),
    Sluice(n_subspaces=4),
]


@pytest.fixture(scope="module")
def digits3():
    """Digits with three tasks: which digit, odd, high; one task per row or all."""
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    rng = np.random.RandomState(0)
    t = rng.randint(3, size=len(y))
    y_task = np.choose(t, [y, y % 2, y >= 5]).astype(int)
    Y = np.column_stack([y, y % 2, y >= 5]).astype(float)
    Y[rng.rand(*Y.shape) < 0.3] = np.nan
    return X, t, y_task, Y


@pytest.mark.parametrize("architecture", VARIANTS, ids=str)
def test_every_architecture_learns_in_both_formats(digits3, architecture):
    X, t, y_task, Y = digits3
    tr, te = slice(0, 1200), slice(1200, None)
    clf = MultiTaskClassifier(architecture=architecture, **FAST)
    clf.fit(X[tr], y_task[tr], task_ids=t[tr])
    assert clf.score(X[te], y_task[te], task_ids=t[te]) > 0.7  # chance is about 0.37
    clf.fit(X[tr], Y[tr])
    assert clf.score(X[te], Y[te]) > 0.7
    # One row answered per task equals the all-tasks output at that task.
    module = clf.net_.module_.eval()
    Xt = torch.as_tensor(X[:20], dtype=torch.float32)
    ids = torch.as_tensor(t[:20])
    with torch.no_grad():
        full = module(Xt)
        own = module(Xt, ids)
    torch.testing.assert_close(own, full[torch.arange(20), ids], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("architecture", ["hard", "independent", "cross_stitch", "sluice",
                                          "mtan", "mmoe", TaskConditioning(how="film")],
                         ids=str)
def test_layered_architectures_on_images(digits3, architecture):
    X, t, y_task, _ = digits3
    Xi = X.reshape(-1, 1, 8, 8)[:300]

    def trunk():
        return torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten())

    clf = MultiTaskClassifier(architecture=architecture, module=trunk, max_epochs=1,
                              random_state=0).fit(Xi, y_task[:300], task_ids=t[:300])
    pred = clf.predict(Xi[:40], task_ids=t[:40])
    assert pred.shape == (40,)
    for task in range(3):  # each row answered with a label of its own task
        assert set(pred[t[:40] == task]) <= set(y_task[:300][t[:300] == task])
    with torch.no_grad():  # the image trunk's features reach the heads
        out = clf.net_.module_.eval()(torch.as_tensor(Xi[:8], dtype=torch.float32))
    assert out.shape == (8, 3, 10) and torch.isfinite(out).all()


def test_independent_tasks_share_nothing(digits3):
    X, t, y_task, _ = digits3
    clf = MultiTaskClassifier(architecture="independent", **dict(FAST, max_epochs=0))
    clf.fit(X, y_task, task_ids=t)
    cols = clf.net_.module_.model.columns
    before = [p.detach().clone() for p in cols[1].parameters()]
    # Train on task 0's rows only: task 1's column must not move.
    clf.net_.partial_fit(clf._inputs(X[t == 0].astype(np.float32),
                                     np.zeros((t == 0).sum(), dtype=np.int64)),
                         torch.as_tensor(y_task[t == 0]))
    assert all(torch.equal(a, b) for a, b in zip(before, cols[1].parameters()))
    assert clf.net_.module_.model.shared_parameters() == []


def test_cross_stitch_mixing_starts_near_identity(digits3):
    X, t, y_task, _ = digits3
    clf = MultiTaskClassifier(architecture=CrossStitch(init_self=0.8),
                              **dict(FAST, max_epochs=0)).fit(X, y_task, task_ids=t)
    alpha = clf.net_.module_.model.alphas[0].detach()
    np.testing.assert_allclose(alpha.diagonal(), 0.8)
    np.testing.assert_allclose(alpha.sum(1), 1.0, rtol=1e-6)


def test_mmoe_gates_are_distributions(digits3):
    X, t, y_task, _ = digits3
    clf = MultiTaskClassifier(architecture=MMoE(n_experts=3), **dict(FAST, max_epochs=2))
    clf.fit(X, y_task, task_ids=t)
    gates = clf.net_.module_.model.gates(torch.as_tensor(X[:10], dtype=torch.float32))
    assert gates.shape == (10, 3, 3)
    np.testing.assert_allclose(gates.sum(-1).detach().numpy(), 1.0, rtol=1e-5)


def test_task_relationship_penalty_closed_form():
    W = torch.randn(4, 3, 5, dtype=torch.float64)
    M = W.reshape(4, -1).numpy()
    G = M @ M.T
    evals, evecs = np.linalg.eigh(G)
    root = evecs @ np.diag(np.sqrt(evals)) @ evecs.T
    omega = root / np.trace(root)
    expected = np.trace(M.T @ np.linalg.inv(omega) @ M)
    assert task_relationship_penalty(W, eps=1e-12).item() == pytest.approx(expected, rel=1e-6)


def test_task_relationship_penalty_shrinks_the_heads(digits3):
    X, t, y_task, _ = digits3
    models = [MultiTaskClassifier(architecture=HardParameterSharing(task_covariance_penalty=lam),
                                  **dict(FAST, max_epochs=3)).fit(X, y_task, task_ids=t)
              for lam in (0.0, 0.1)]
    # The penalty equals (trace norm of the heads)^2, so it pulls that norm down.
    norms = [task_relationship_penalty(m.net_.module_.model.heads.weight.detach()).item()
             for m in models]
    assert norms[1] < 0.8 * norms[0]
    assert models[0].net_.module_.penalty() is None
    assert models[1].net_.module_.penalty().item() > 0


def test_architecture_parameters_are_grid_searchable(digits3):
    X, _, _, Y = digits3
    search = GridSearchCV(
        MultiTaskClassifier(architecture=TaskConditioning(), **dict(FAST, max_epochs=3)),
        {"architecture__how": ["concat", "film"], "architecture__where": ["input", "all"]},
        cv=KFold(2)).fit(X[:600], Y[:600])
    assert len(search.cv_results_["params"]) == 4


@pytest.mark.parametrize(
    "architecture, module, match",
    [
        (TaskConditioning(where="hidden"), torch.nn.Linear(64, 8),
         "needs the default MLP trunk"),
        ("cross_stitch", torch.nn.Linear(64, 8), "must be an nn.Sequential"),
        (TaskConditioning(where="middle"), None,
         "The 'where' parameter of TaskConditioning must be a str among"),
        (TaskConditioning(how="sum"), None,
         "The 'how' parameter of TaskConditioning must be a str among"),
        (Sluice(n_subspaces=3), None, "choose n_subspaces dividing 32"),
        (MMoE(n_experts=0), None,
         r"The 'n_experts' parameter of MMoE must be an int in the range \[1, inf\)"),
        (HardParameterSharing(task_covariance_penalty=-1), None,
         "The 'task_covariance_penalty' parameter of HardParameterSharing must be"),
    ],
)
def test_bad_architecture_settings_raise_errors_that_say_why(digits3, architecture, module,
                                                            match):
    X, t, y_task, _ = digits3
    with pytest.raises(ValueError, match=match):
        MultiTaskClassifier(architecture=architecture, module=module,
                            **dict(FAST, max_epochs=1)).fit(X, y_task, task_ids=t)


def test_concat_conditioning_rejects_images(digits3):
    X, t, y_task, _ = digits3
    with pytest.raises(ValueError, match="use how='film' for images"):
        MultiTaskClassifier(architecture="conditioned", max_epochs=1).fit(
            X.reshape(-1, 1, 8, 8), y_task, task_ids=t)


# ------------------------------------------------ the networks' names before 0.2
def _hard_net(cls):
    torch.manual_seed(0)
    return cls(MLP(64, (16,)), 16, 3, 10, task_covariance_penalty=0.1)


def _conditioned_net(cls):
    torch.manual_seed(0)
    block = torch.nn.Sequential(torch.nn.Linear(64 + 3, 16), torch.nn.ReLU())
    return cls([block], {0}, "concat", [(64,), (16,)], 3, 10)


@pytest.mark.parametrize("old, new, make", [
    (HardSharing, HardSharingNet, _hard_net),
    (TaskConditioned, TaskConditionedNet, _conditioned_net),
], ids=["HardSharing", "TaskConditioned"])
def test_old_network_names_warn_and_build_the_same_network(digits3, old, new, make):
    X, t, y_task, _ = digits3
    with pytest.warns(FutureWarning, match=rf"Class {old.__name__} is deprecated; it was "
                                           rf"renamed {new.__name__} in 0.2"):
        net = make(old)
    assert isinstance(net, new)
    fresh = make(new)
    for (name, a), (_, b) in zip(net.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name
    Xt, ids = torch.as_tensor(X[:10], dtype=torch.float32), torch.as_tensor(t[:10])
    torch.testing.assert_close(net(Xt, ids), fresh(Xt, ids), rtol=0, atol=0)
    # ... and it still serves as a user architecture
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # clone copies the module
        clf = MultiTaskClassifier(architecture=net, **dict(FAST, max_epochs=3))
        clf.fit(X[:1200], y_task[:1200], task_ids=t[:1200])
    assert clf.score(X[1200:], y_task[1200:], task_ids=t[1200:]) > 0.5


def test_the_new_network_names_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _hard_net(HardSharingNet)
        _conditioned_net(TaskConditionedNet)
