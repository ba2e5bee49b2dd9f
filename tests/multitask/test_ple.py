"""PLE and CGC (progressive layered extraction): learning, structure, shared parameters, errors."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError

from sktransfer.multitask import ARCHITECTURES, CGC, PLE, MultiTaskClassifier

FAST = dict(hidden_layer_sizes=(32,), max_epochs=6, lr=3e-3, batch_size=64, random_state=0)
VARIANTS = ["cgc", "ple", PLE(n_shared_experts=1, n_task_experts=2, n_levels=3,
                              expert_hidden_layer_sizes=(24, 16))]


@pytest.fixture(scope="module")
def digits3():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    rng = np.random.RandomState(0)
    t = rng.randint(3, size=len(y))
    y_task = np.choose(t, [y, y % 2, y >= 5]).astype(int)
    Y = np.column_stack([y, y % 2, y >= 5]).astype(float)
    Y[rng.rand(*Y.shape) < 0.3] = np.nan
    return X, t, y_task, Y


def test_registered():
    assert ARCHITECTURES["cgc"] is CGC and ARCHITECTURES["ple"] is PLE
    assert CGC().get_params() == {"n_shared_experts": 2, "n_task_experts": 1}
    assert PLE().get_params()["n_levels"] == 2


@pytest.mark.parametrize("architecture", VARIANTS, ids=str)
def test_learns_in_both_formats(digits3, architecture):
    X, t, y_task, Y = digits3
    tr, te = slice(0, 1200), slice(1200, None)
    clf = MultiTaskClassifier(architecture=architecture, **FAST)
    clf.fit(X[tr], y_task[tr], task_ids=t[tr])
    assert clf.score(X[te], y_task[te], task_ids=t[te]) > 0.7  # chance is about 0.37
    clf.fit(X[tr], Y[tr])
    assert clf.score(X[te], Y[te]) > 0.7
    module = clf.net_.module_.eval()
    Xt = torch.as_tensor(X[:20])
    ids = torch.as_tensor(t[:20])
    with torch.no_grad():
        full, own = module(Xt), module(Xt, ids)
        gates = module.model.gates(Xt)
    torch.testing.assert_close(own, full[torch.arange(20), ids])
    # a task gate mixes its own experts and the shared ones
    n_own = 1 if architecture in ("cgc", "ple") else 2
    n_shared = 2 if architecture in ("cgc", "ple") else 1
    assert gates.shape == (20, 3, n_own + n_shared)
    torch.testing.assert_close(gates.sum(-1), torch.ones(20, 3))


@pytest.mark.parametrize("architecture", ["cgc", "ple"])
def test_on_images_with_a_conv_trunk(digits3, architecture):
    X, t, y_task, _ = digits3
    Xi = X.reshape(-1, 1, 8, 8)[:300]

    def trunk():
        return torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten())

    clf = MultiTaskClassifier(architecture=architecture, module=trunk, max_epochs=1,
                              random_state=0).fit(Xi, y_task[:300], task_ids=t[:300])
    pred = clf.predict(Xi[:40], task_ids=t[:40])
    for task in range(3):
        assert set(pred[t[:40] == task]) <= set(y_task[:300][t[:300] == task])
    experts = clf.net_.module_.model.shared_experts[0]
    assert isinstance(experts[0][0], torch.nn.Conv2d)  # the first level's experts are trunks
    w0, w1 = experts[0][0].weight, experts[1][0].weight
    assert not torch.equal(w0, w1)  # independently initialised


def _tasks_reached(model, X):
    """For every parameter, the tasks whose output has a nonzero gradient with respect to it.

    A parameter that stacks one slice per task along its first axis (the heads, the task
    gates) counts as task-specific when each task's gradient stays in its own slice.
    """
    out = model(X)
    T = out.shape[1]
    params = list(model.parameters())
    reached = {id(p): set() for p in params}
    for t in range(T):
        grads = torch.autograd.grad(out[:, t].pow(2).sum(), params, retain_graph=True,
                                    allow_unused=True)
        for p, g in zip(params, grads):
            if g is None or g.abs().sum() == 0:
                continue
            if p.shape[0] == T and (torch.cat([g[:t], g[t + 1:]]) == 0).all():
                reached[id(p)].add(("slice", t))
            else:
                reached[id(p)].add(t)
    return reached


@pytest.mark.parametrize("architecture", [CGC(), PLE(n_levels=2), PLE(n_levels=3)], ids=str)
def test_shared_parameters_are_those_that_reach_several_tasks(digits3, architecture):
    X, _, _, Y = digits3
    clf = MultiTaskClassifier(architecture=architecture, hidden_layer_sizes=(8,), max_epochs=1,
                              random_state=0).fit(X[:200], Y[:200])
    model = clf.net_.module_.model
    reached = _tasks_reached(model, torch.as_tensor(X[:50]))
    shared = {id(p) for p in model.shared_parameters()}
    for p in model.parameters():
        whole = {t for t in reached[id(p)] if not isinstance(t, tuple)}
        if id(p) in shared:
            assert len(whole) >= 2
        else:
            assert len(whole) <= 1 and not (whole and len(reached[id(p)]) > 1)


def test_cgc_keeps_task_experts_to_their_task(digits3):
    X, _, _, Y = digits3
    clf = MultiTaskClassifier(architecture="cgc", hidden_layer_sizes=(8,), max_epochs=1,
                              random_state=0).fit(X[:200], Y[:200])
    model = clf.net_.module_.model.eval()
    Xt = torch.as_tensor(X[:10])
    with torch.no_grad():
        before = model(Xt)
        for p in model.task_experts[0][1].parameters():  # task 1's expert
            p.add_(1.0)
        after = model(Xt)
    torch.testing.assert_close(after[:, 0], before[:, 0])
    torch.testing.assert_close(after[:, 2], before[:, 2])
    assert not torch.allclose(after[:, 1], before[:, 1])


@pytest.mark.parametrize("weighting", ["mgda", "graddrop", "db_mtl"])
def test_gradient_weightings_train_ple(digits3, weighting):
    X, t, y_task, _ = digits3
    clf = MultiTaskClassifier(architecture="ple", weighting=weighting, **FAST)
    clf.fit(X[:1200], y_task[:1200], task_ids=t[:1200])
    assert clf.score(X[1200:], y_task[1200:], task_ids=t[1200:]) > 0.6


def test_parameters_are_grid_searchable(digits3):
    X, _, _, Y = digits3
    search = GridSearchCV(MultiTaskClassifier(architecture=PLE(), **dict(FAST, max_epochs=1)),
                          {"architecture__n_levels": [1, 2]}, cv=2)
    search.fit(X[:300], np.nan_to_num(Y[:300]).astype(int))
    assert search.best_params_["architecture__n_levels"] in (1, 2)


@pytest.mark.parametrize("architecture, match", [
    (PLE(n_levels=0), r"The 'n_levels' parameter of PLE must be an int in the range \[1, inf\)"),
    (PLE(n_shared_experts=0), r"The 'n_shared_experts' parameter of PLE"),
    (CGC(n_task_experts=1.5), r"The 'n_task_experts' parameter of CGC"),
    (PLE(expert_hidden_layer_sizes=(8, 0)), r"expert_hidden_layer_sizes must be a non-empty "
                                            r"sequence of positive ints"),
    (PLE(expert_hidden_layer_sizes=()), r"expert_hidden_layer_sizes must be a non-empty"),
], ids=str)
def test_bad_settings_raise_errors_that_say_why(digits3, architecture, match):
    X, t, y_task, _ = digits3
    with pytest.raises((InvalidParameterError, ValueError), match=match):
        MultiTaskClassifier(architecture=architecture, **FAST).fit(X[:100], y_task[:100],
                                                                   task_ids=t[:100])
