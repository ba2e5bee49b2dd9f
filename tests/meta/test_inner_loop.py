"""The pieces of gradient-based meta-learning: inner-update strategies, the one inner
loop, the task-batching runners, Reptile on the shared loop, and old pickles."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from torch import nn

import sktransfer.meta._inner_loop as inner_loop_module
import sktransfer.meta._maml_module as maml_module
from sktransfer.meta import (
    InnerUpdate,
    MAMLClassifier,
    MAMLRegressor,
    MetaLSTMUpdate,
    MetaSGDUpdate,
    ReptileClassifier,
    SGDUpdate,
    inner_loop,
)
from sktransfer.meta._learner import Learner
from sktransfer.meta._maml_module import MAMLModule, build_maml_module
from sktransfer.meta._reptile import ReptileModule
from sktransfer.meta._task_batching import (
    CompiledRunner,
    LoopRunner,
    TaskBatchRunner,
    VmapRunner,
    choose_runner,
    vmap_failure,
)
from sktransfer.modules import MLP


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


def _learner(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return Learner(MLP(3, (5,), activation=nn.Tanh), 5, 2).to(dtype)


def _tasks(n_tasks=3, dtype=torch.float64):
    gen = torch.Generator().manual_seed(1)
    Xs = torch.randn(n_tasks, 4, 3, generator=gen, dtype=dtype)
    Xq = torch.randn(n_tasks, 6, 3, generator=gen, dtype=dtype)
    ys = torch.tensor([0, 1, 0, 1]).expand(n_tasks, 4).clone()
    yq = torch.tensor([0, 1, 0, 1, 0, 1]).expand(n_tasks, 6).clone()
    return Xs, ys, Xq, yq


def _params():
    gen = torch.Generator().manual_seed(3)
    return {"head.weight": torch.randn(3, 2, generator=gen),
            "head.bias": torch.randn(3, generator=gen)}


def _grads():
    gen = torch.Generator().manual_seed(4)
    return {"head.weight": torch.randn(3, 2, generator=gen),
            "head.bias": torch.randn(3, generator=gen)}


class SignSGD(InnerUpdate):
    """A custom inner update: a step of fixed length against the gradient's sign."""

    steps = 0

    def __init__(self, inner_lr):
        super().__init__()
        self.lr = float(inner_lr)

    def step(self, params, grads, loss, state):
        SignSGD.steps += 1
        return {k: params[k] - self.lr * torch.sign(grads[k]) for k in params}, state


# ------------------------------------------------------------ inner updates
def test_inner_update_is_abstract_and_hooks_have_defaults():
    with pytest.raises(TypeError, match="abstract"):
        InnerUpdate()

    class Incomplete(InnerUpdate):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()
    update = SignSGD.build(_params(), 0.3)
    assert isinstance(update, SignSGD) and update.lr == 0.3
    assert update.init_state(_params()) is None
    assert update.for_adaptation(7) is update


def test_sgd_update_steps_against_the_gradient_with_a_global_or_per_entry_rate():
    params, grads = _params(), _grads()
    new, state = SGDUpdate(0.5).step(params, grads, torch.tensor(1.0), None)
    assert state is None
    for k in params:
        torch.testing.assert_close(new[k], params[k] - 0.5 * grads[k], rtol=0, atol=0)
    rates = {k: torch.full_like(v, 0.1) for k, v in params.items()}
    rates["head.bias"] = torch.tensor([0.0, 1.0, 2.0])
    new, _ = SGDUpdate(rates).step(params, grads, torch.tensor(1.0), None)
    torch.testing.assert_close(new["head.bias"], params["head.bias"]
                               - torch.tensor([0.0, 1.0, 2.0]) * grads["head.bias"])
    assert not list(SGDUpdate(0.5).parameters())  # nothing to meta-learn


def test_meta_sgd_learns_one_rate_per_entry_and_averages_head_rows_to_adapt():
    params, grads = _params(), _grads()
    update = MetaSGDUpdate.build(params, 0.4)
    assert {n: tuple(p.shape) for n, p in update.named_parameters()} == {
        "lrs.head__weight": (3, 2), "lrs.head__bias": (3,)}
    assert all(torch.all(p == 0.4) for p in update.parameters())
    with torch.no_grad():
        update.lrs["head__bias"].copy_(torch.tensor([1.0, 2.0, 3.0]))
    new, _ = update.step(params, grads, torch.tensor(1.0), None)
    torch.testing.assert_close(new["head.bias"], params["head.bias"]
                               - torch.tensor([1.0, 2.0, 3.0]) * grads["head.bias"])
    new["head.bias"].sum().backward()  # the step is differentiable in the rates
    torch.testing.assert_close(update.lrs["head__bias"].grad, -grads["head.bias"])
    same = update.for_adaptation()
    assert isinstance(same, SGDUpdate) and not same.lr["head.bias"].requires_grad
    wider = update.for_adaptation(head_rows=5)
    torch.testing.assert_close(wider.lr["head.bias"], torch.full((5,), 2.0))
    assert wider.lr["head.weight"].shape == (5, 2)


def test_meta_lstm_update_starts_as_gradient_descent_with_shrinkage():
    params, grads = _params(), _grads()
    update = MetaLSTMUpdate(0.2)
    state = update.init_state(params)
    new, new_state = update.step(params, grads, torch.tensor(0.7), state)
    forget = torch.sigmoid(torch.tensor(6.0))
    for k in params:
        torch.testing.assert_close(new[k], forget * params[k] - 0.2 * grads[k])
        assert new_state[k][0].shape == params[k].shape
    assert {n for n, _ in update.named_parameters()} == {"w_i", "b_i", "w_f", "b_f"}


def test_build_inner_update_maps_the_estimator_parameters():
    from sktransfer.meta._inner_update import build_inner_update

    params = _params()
    assert type(build_inner_update("sgd", False, 0.1, params)) is SGDUpdate
    assert type(build_inner_update("sgd", True, 0.1, params)) is MetaSGDUpdate
    assert type(build_inner_update("meta_lstm", False, 0.1, params)) is MetaLSTMUpdate
    assert type(build_inner_update(SignSGD, False, 0.1, params)) is SignSGD


# ------------------------------------------------------------- inner loop
def test_inner_loop_runs_the_update_and_reports_the_last_step():
    torch.manual_seed(0)
    head = nn.Linear(2, 3).double()
    X, y = torch.randn(6, 2, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1, 2])
    params = {"head.weight": head.weight, "head.bias": head.bias}

    def forward(p, X):
        return torch.nn.functional.linear(X, p["head.weight"], p["head.bias"])

    loss_fn = torch.nn.functional.cross_entropy
    expected = {k: v.detach().clone() for k, v in params.items()}
    for _ in range(2):  # plain SGD by hand
        p = {k: v.clone().requires_grad_(True) for k, v in expected.items()}
        last_loss = loss_fn(forward(p, X), y)
        g = torch.autograd.grad(last_loss, list(p.values()))
        expected = {k: v.detach() - 0.3 * gi for (k, v), gi in zip(p.items(), g)}
    for functional in (True, False):
        fast, out, loss = inner_loop(forward, params, X, y, loss_fn, 2, SGDUpdate(0.3),
                                     functional=functional, return_last=True)
        for k in expected:
            torch.testing.assert_close(fast[k], expected[k], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(loss.detach(), last_loss.detach(), rtol=1e-12, atol=1e-12)
        assert out.shape == (6, 3)
    # a number is plain SGD; no steps, the parameters unchanged
    fast = inner_loop(forward, params, X, y, loss_fn, 2, 0.3)
    torch.testing.assert_close(fast["head.bias"], expected["head.bias"])
    assert inner_loop(forward, params, X, y, loss_fn, 0, 0.3) is params
    with pytest.raises(TypeError, match="InnerUpdate or a step size"):
        inner_loop(forward, params, X, y, loss_fn, 1, "sgd")


def test_inner_loop_old_keywords_warn_and_give_the_same_result():
    head = nn.Linear(2, 3)
    X, y = torch.randn(4, 2), torch.tensor([0, 1, 2, 0])
    params = {"weight": head.weight, "bias": head.bias}

    def forward(p, X):
        return torch.nn.functional.linear(X, p["weight"], p["bias"])

    loss_fn = torch.nn.functional.cross_entropy
    new = inner_loop(forward, params, X, y, loss_fn, 1, 0.2)
    with pytest.warns(FutureWarning, match="lr=.... is deprecated"):
        old = inner_loop(forward, params, X, y, loss_fn, 1, lr=0.2)
    assert all(torch.equal(new[k], old[k]) for k in new)
    rule = MetaLSTMUpdate(0.2)
    with pytest.warns(FutureWarning, match="update_rule=.... is deprecated"):
        old = inner_loop(forward, params, X, y, loss_fn, 1, 0.2, update_rule=rule)
    new = inner_loop(forward, params, X, y, loss_fn, 1, rule)
    assert all(torch.equal(new[k], old[k]) for k in new)


@pytest.mark.parametrize("kw", [
    {}, {"first_order": True}, {"learn_inner_lr": True}, {"inner_optimizer": "meta_lstm"},
    {"adapt_layers": "head"}, {"task_batching": "vmap"},
], ids=["maml", "fomaml", "meta_sgd", "meta_lstm", "anil", "maml_vmap"])
def test_every_maml_variant_and_reptile_run_the_one_inner_loop(monkeypatch, digits, kw):
    calls = []

    def spy(*args, **kwargs):
        calls.append(type(args[6] if len(args) > 6 else kwargs["update"]).__name__)
        return inner_loop(*args, **kwargs)

    # the inner loop is called from MAML's per-task loss and from shared adaptation
    monkeypatch.setattr(maml_module, "inner_loop", spy)
    monkeypatch.setattr(inner_loop_module, "inner_loop", spy)
    X, y = digits
    params = dict(n_way=5, n_query=2, max_epochs=1, episodes_per_epoch=8, batch_size=4,
                  hidden_layer_sizes=(8,), random_state=0)
    MAMLClassifier(**{"task_batching": "loop", **params, **kw}).fit(X[y < 5], y[y < 5])
    # two meta-batches of 4 tasks (vmap: traced once per batch), then predict's adaptation
    assert len(calls) == (2 + 1 if kw.get("task_batching") == "vmap" else 8 + 1)
    expected = ("MetaSGDUpdate" if kw.get("learn_inner_lr") else
                "MetaLSTMUpdate" if kw.get("inner_optimizer") else "SGDUpdate")
    assert set(calls[:-1]) == {expected}
    calls.clear()
    rep = ReptileClassifier(**params).fit(X[y < 5], y[y < 5])
    assert calls == ["SGDUpdate"] * 9
    assert rep.predict(X[:2]).shape == (2,)


# ------------------------------------------------------------------ Reptile
def test_reptile_composes_the_inner_loop_with_its_own_outer_update():
    assert not issubclass(ReptileModule, MAMLModule)
    learner = _learner()
    module = ReptileModule(learner, SGDUpdate(0.3), adapt_layers="all", inner_steps=2,
                           inner_steps_test=2)
    tasks = _tasks()
    theta = {k: v.detach().clone() for k, v in learner.named_parameters()}
    module.meta_step(tasks, backward=True)
    expected = {k: torch.zeros_like(v) for k, v in theta.items()}
    for t in range(3):  # theta - phi, phi = 2 SGD steps on support + query
        X = torch.cat([tasks[0][t], tasks[2][t]])
        y = torch.cat([tasks[1][t], tasks[3][t]])
        phi = {k: v.clone() for k, v in theta.items()}
        for _ in range(2):
            p = {k: v.requires_grad_(True) for k, v in phi.items()}
            loss = module.loss_fn(torch.func.functional_call(learner, p, (X,)), y)
            g = torch.autograd.grad(loss, list(p.values()))
            phi = {k: (v - 0.3 * gi).detach() for (k, v), gi in zip(p.items(), g)}
        for k in expected:
            expected[k] += (theta[k] - phi[k]) / 3
    for name, p in learner.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-12, atol=1e-14)

    class Frozen(InnerUpdate):  # a custom update plugs into Reptile too
        def step(self, params, grads, loss, state):
            return params, state

    frozen = ReptileModule(_learner(), Frozen(), adapt_layers="all", inner_steps=2,
                           inner_steps_test=2)
    frozen.meta_step(tasks, backward=True)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in frozen.parameters())


# ------------------------------------------------------------------ runners
def _maml_module(runner, learner=None, **kw):
    learner = _learner() if learner is None else learner
    return build_maml_module(learner, inner_lr=0.3, inner_steps=kw.pop("inner_steps", 2),
                             task_batching=runner, **kw)


def test_runners_have_one_method_and_report_their_path():
    assert isinstance(_maml_module("vmap").runner, VmapRunner)
    assert isinstance(_maml_module("loop").runner, LoopRunner)
    compiled = _maml_module("loop", first_order=True, compile_step=True).runner
    assert isinstance(compiled, CompiledRunner) and compiled.task_batching == "loop"
    assert [VmapRunner.task_batching, LoopRunner.task_batching] == ["vmap", "loop"]
    with pytest.raises(TypeError, match="abstract"):
        TaskBatchRunner()
    # "auto" follows choose_task_batching: a small task on a CPU vmaps, a large one loops
    assert isinstance(choose_runner("auto", False, "cpu", 10, 1000), VmapRunner)
    assert isinstance(choose_runner("auto", False, "cpu", 80, 113_000), LoopRunner)
    assert isinstance(choose_runner("auto", False, "cpu", 10, 1000, batch_norm=True),
                      LoopRunner)
    assert choose_runner("vmap", False, "cpu", 80, 10**6).reason == "set by task_batching"


@pytest.mark.parametrize("config", [{}, {"learn_inner_lr": True},
                                    {"inner_optimizer": "meta_lstm"},
                                    {"adapt_layers": "head"}],
                         ids=["maml", "meta_sgd", "meta_lstm", "anil"])
def test_loop_and_vmap_runners_meta_learn_the_same_parameters(config):
    tasks = _tasks(n_tasks=4, dtype=torch.float32)
    trained = {}
    for runner in ("vmap", "loop"):
        module = _maml_module(runner, learner=_learner(torch.float32), **config)
        opt = torch.optim.SGD(module.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            loss, acc = module.meta_step(tasks, backward=True)
            opt.step()
        trained[runner] = (module, loss, acc)
    (vm, vm_loss, vm_acc), (lp, lp_loss, lp_acc) = trained["vmap"], trained["loop"]
    for (name, a), b in zip(vm.named_parameters(), lp.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)
    torch.testing.assert_close(vm_loss, lp_loss, rtol=1e-6, atol=1e-6)
    assert vm_acc == lp_acc
    # and adapt a new support set to the same parameters
    a = vm.adapt_state(tasks[0][0], tasks[1][0], n_classes=2)
    b = lp.adapt_state(tasks[0][0], tasks[1][0], n_classes=2)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-6, msg=k)


@pytest.mark.parametrize("runner", ["vmap", "loop", "compiled"])
def test_each_runner_returns_the_mean_loss_and_fills_grad_only_with_backward(runner,
                                                                            monkeypatch):
    monkeypatch.setattr(CompiledRunner, "compile_backend", "eager")
    kw = {"first_order": True, "compile_step": runner == "compiled"}
    module = _maml_module("vmap" if runner == "vmap" else "loop", **kw)
    tasks = _tasks()
    loss, acc = module.meta_step(tasks, backward=False)
    assert all(p.grad is None for p in module.parameters())
    per_task = [module.task_loss(*(a[t] for a in tasks), functional=False) for t in range(3)]
    torch.testing.assert_close(loss, sum(lt for lt, _ in per_task).detach() / 3)
    assert acc == pytest.approx(float(sum(m for _, m in per_task)) / 3)
    module.meta_step(tasks, backward=True)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_vmap_failure_is_tried_once_and_leaves_no_trace():
    class Dropout(nn.Module):  # vmap runs it, drawing random numbers
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 5)

        def forward(self, X):
            return torch.dropout(self.linear(X), 0.5, True)

    class DataDependent(nn.Module):  # .item() has no batching rule
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 5)

        def forward(self, X):
            out = self.linear(X)
            return out.relu() if out.sum().item() > -1e9 else out

    tasks = _tasks(n_tasks=1, dtype=torch.float32)
    ok = _maml_module("vmap", learner=Learner(Dropout(), 5, 2))
    rng = torch.random.get_rng_state()
    assert vmap_failure(ok, tasks) is None
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(p.grad is None for p in ok.parameters())
    bad = _maml_module("vmap", learner=Learner(DataDependent(), 5, 2))
    assert "RuntimeError" in vmap_failure(bad, tasks)
    assert all(p.grad is None for p in bad.parameters())
    # running statistics: an in-place buffer update, refused under vmap; buffers unchanged
    stats = _maml_module("vmap", learner=Learner(nn.Sequential(nn.Linear(3, 5),
                                                               nn.BatchNorm1d(5)), 5, 2))
    before = {k: v.clone() for k, v in stats.named_buffers()}
    assert "in-place" in vmap_failure(stats, tasks)
    assert all(torch.equal(v, before[k]) for k, v in stats.named_buffers())
    # at build, "auto" tries the vmapped step and keeps the loop runner it chose then
    auto = build_maml_module(Learner(DataDependent(), 5, 2), inner_lr=0.3, inner_steps=1,
                             task_batching="auto", sample_shape=(3,), support_size=4,
                             query_size=6)
    assert isinstance(auto.runner, LoopRunner) and "vmap failed" in auto.runner.reason
    runner = auto.runner
    auto.meta_step(tasks)
    assert auto.runner is runner


# ---------------------------------------------------------- custom updates
def test_a_custom_inner_update_plugs_into_the_estimators(digits):
    X, y = digits
    SignSGD.steps = 0
    params = dict(n_way=5, n_query=2, max_epochs=1, episodes_per_epoch=8,
                  hidden_layer_sizes=(8,), random_state=0)
    sign = MAMLClassifier(inner_optimizer=SignSGD, **params).fit(X[y < 5], y[y < 5])
    assert isinstance(sign.net_.module_.inner_update, SignSGD)
    trained_steps = SignSGD.steps
    assert trained_steps > 0
    idx = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(5, 10)])
    sign.adapt(X[idx], y[idx])
    assert SignSGD.steps == trained_steps + 1  # adapt ran it (inner_steps_test = 1)
    plain = MAMLClassifier(**params).fit(X[y < 5], y[y < 5])
    assert not np.allclose(sign.predict_proba(X[:20]), plain.predict_proba(X[:20]))
    assert clone(sign).get_params()["inner_optimizer"] is SignSGD
    restored = pickle.loads(pickle.dumps(sign))
    np.testing.assert_array_equal(restored.predict_proba(X[:20]), sign.predict_proba(X[:20]))
    Xr = np.random.RandomState(0).rand(60, 1).astype(np.float32)
    reg = MAMLRegressor(inner_optimizer=SignSGD, k_shot=3, n_query=3, batch_size=2,
                        max_epochs=1, episodes_per_epoch=4, random_state=0)
    assert isinstance(reg.fit(Xr, Xr[:, 0]).net_.module_.inner_update, SignSGD)
    with pytest.raises(ValueError, match="choose one"):
        MAMLClassifier(inner_optimizer=SignSGD, learn_inner_lr=True, **params).fit(X, y)
    with pytest.raises(ValueError, match="InnerUpdate subclass"):
        MAMLClassifier(inner_optimizer=nn.Linear, **params).fit(X, y)
    with pytest.raises(ValueError, match="compile_step=True needs first-order MAML"):
        MAMLClassifier(inner_optimizer=SignSGD, first_order=True, compile_step=True,
                       **params).fit(X, y)


# ------------------------------------------------------- older fitted models
def _old_layout(module):
    """The __dict__ a MAMLModule had before 0.2 (inner rates and update rule as attributes)."""
    state = module.__getstate__()
    modules = dict(state["_modules"])
    update = modules.pop("inner_update")
    state["_modules"] = modules
    if isinstance(update, MetaSGDUpdate):
        modules["inner_lrs"] = update.lrs
        state["update_rule"] = None
    elif isinstance(update, MetaLSTMUpdate):
        modules["update_rule"] = update
        state["inner_lrs"] = None
    else:
        state["inner_lrs"] = state["update_rule"] = None
    state["inner_lr"] = 0.3
    runner = state.pop("runner")
    state["task_batching"] = runner.task_batching
    state["task_batching_reason"] = runner.reason
    state["compile_step"] = isinstance(runner, CompiledRunner)
    return state


@pytest.mark.parametrize("config", [{}, {"learn_inner_lr": True},
                                    {"inner_optimizer": "meta_lstm"}],
                         ids=["sgd", "meta_sgd", "meta_lstm"])
def test_modules_and_weights_saved_before_the_split_load(config):
    module = _maml_module("loop", **config)
    old = MAMLModule.__new__(MAMLModule)
    old.__setstate__(_old_layout(module))
    assert type(old.inner_update) is type(module.inner_update)
    assert isinstance(old.runner, LoopRunner)
    tasks = _tasks()
    state_new = module.adapt_state(tasks[0][0], tasks[1][0])
    state_old = old.adapt_state(tasks[0][0], tasks[1][0])
    assert all(torch.equal(state_new[k], state_old[k]) for k in state_new)
    # weights saved with the old names load into the new layout
    renamed = {k.replace("inner_update.lrs.", "inner_lrs.").replace("inner_update.",
                                                                     "update_rule."): v
               for k, v in module.state_dict().items()}
    fresh = _maml_module("loop", learner=_learner(seed=1), **config)
    fresh.load_state_dict(renamed)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(),
                                                 module.state_dict().values()))


def test_old_module_paths_still_import():
    from sktransfer.meta._inner_loop import MetaLSTMUpdate as OldLSTM
    from sktransfer.meta._maml import MAMLClassifier as OldMAML
    from sktransfer.meta._maml_module import choose_task_batching

    assert OldMAML is MAMLClassifier and OldLSTM is MetaLSTMUpdate
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_task_batching("cuda", 10, 1)[0] == "vmap"
