"""Correctness of the MAML meta-gradient and behaviour of MAMLClassifier."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.func import functional_call

from sktransfer.meta import MAMLClassifier, choose_task_batching
from sktransfer.meta._learner import Learner
from sktransfer.meta._maml_module import MAMLModule, build_maml_module
from sktransfer.meta._task_batching import CompiledRunner
from sktransfer.metrics import few_shot_score
from sktransfer.modules import MLP

CONFIGS = {
    "second_order": {},
    "two_steps": {"inner_steps": 2},
    "meta_sgd": {"learn_inner_lr": True},
    "anil": {"adapt_layers": "head"},
    "head_weight_only": {"adapt_layers": ["head.weight"]},
    "meta_lstm": {"inner_optimizer": "meta_lstm"},
}


def _module(batching="vmap", first_order=False, inner_steps=1, learn_inner_lr=False,
            adapt_layers="all", inner_optimizer="sgd", compile_step=False):
    torch.manual_seed(0)
    learner = Learner(MLP(3, (5,), activation=nn.Tanh), 5, 2).double()
    return build_maml_module(learner, inner_lr=0.3, inner_steps=inner_steps,
                             inner_steps_test=1, first_order=first_order,
                             learn_inner_lr=learn_inner_lr, adapt_layers=adapt_layers,
                             task_batching=batching, inner_optimizer=inner_optimizer,
                             compile_step=compile_step).double()


def _tasks(n_tasks=3):
    gen = torch.Generator().manual_seed(1)
    Xs = torch.randn(n_tasks, 4, 3, generator=gen, dtype=torch.float64)
    Xq = torch.randn(n_tasks, 6, 3, generator=gen, dtype=torch.float64)
    ys = torch.tensor([0, 1, 0, 1]).expand(n_tasks, 4).clone()
    yq = torch.tensor([0, 1, 0, 1, 0, 1]).expand(n_tasks, 6).clone()
    return Xs, ys, Xq, yq


def _grads(module, tasks):
    module.zero_grad()
    module.meta_step(tasks, backward=True)
    return {n: p.grad.clone() for n, p in module.named_parameters()}


def _conv_module(first_order):
    from sktransfer.modules import Conv4

    torch.manual_seed(0)
    trunk = Conv4(in_channels=1, hidden_channels=8, n_blocks=2, image_size=12,
                  track_running_stats=False)
    for i, layer in enumerate(trunk.features):  # the fused batch norm the loop runs
        if "BatchNorm" in type(layer).__name__:
            trunk.features[i] = nn.BatchNorm2d(layer.num_features, track_running_stats=False)
    return build_maml_module(Learner(trunk, trunk.out_features_, 3), inner_lr=0.1,
                             inner_steps=1, first_order=first_order, task_batching="loop")


@pytest.mark.parametrize("first_order", [True, False])
def test_channels_last_loop_gives_the_same_meta_gradient(first_order):
    gen = torch.Generator().manual_seed(2)
    tasks = (torch.rand(2, 3, 1, 12, 12, generator=gen), torch.tensor([[0, 1, 2]] * 2),
             torch.rand(2, 9, 1, 12, 12, generator=gen), torch.tensor([[0, 1, 2] * 3] * 2))
    module = _conv_module(first_order)
    grads = {}
    for fmt in (True, False):
        module.channels_last = fmt
        grads[fmt] = _grads(module, tasks)
    for name, g in grads[False].items():
        torch.testing.assert_close(grads[True][name], g, rtol=1e-3,
                                   atol=1e-3 * float(g.abs().max()) + 1e-6, msg=name)
    # the rule: first order always, second order from 20 examples per task, float32 on a CPU
    module.channels_last = "auto"
    X = tasks[0]
    assert module.use_channels_last(X, 12, second_order=not first_order) == first_order
    assert module.use_channels_last(X, 20, second_order=True)
    assert not module.use_channels_last(X.double(), 40)
    # adaptation and prediction (channels-last) give the standard-format answer
    state = module.adapt_state(tasks[0][0], tasks[1][0])
    logits = module.predict_logits(state, tasks[2][0])
    module.channels_last = False
    torch.testing.assert_close(logits, module.predict_logits(
        module.adapt_state(tasks[0][0], tasks[1][0]), tasks[2][0]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("config", CONFIGS)
def test_vmap_meta_gradient_equals_loop(config):
    tasks = _tasks()
    vm = _grads(_module("vmap", **CONFIGS[config]), tasks)
    lp = _grads(_module("loop", **CONFIGS[config]), tasks)
    assert vm.keys() == lp.keys()
    for name in vm:
        torch.testing.assert_close(vm[name], lp[name], rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("config", CONFIGS)
def test_meta_gradient_matches_finite_differences(config):
    tasks = _tasks()
    module = _module("vmap", **CONFIGS[config])
    analytic = _grads(module, tasks)
    h = 1e-6
    for name, p in module.named_parameters():
        numeric = torch.zeros_like(p)
        flat = p.data.view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + h
            plus = module.meta_step(tasks, backward=False)[0].item()
            flat[i] = old - h
            minus = module.meta_step(tasks, backward=False)[0].item()
            flat[i] = old
            numeric.view(-1)[i] = (plus - minus) / (2 * h)
        torch.testing.assert_close(analytic[name], numeric, rtol=1e-5, atol=1e-8, msg=name)


@pytest.mark.parametrize("inner_steps", [1, 2])
def test_first_order_is_second_order_without_second_order_terms(inner_steps):
    """FOMAML's gradient is the query gradient at the adapted parameters."""
    tasks = _tasks()
    fo = _grads(_module("vmap", first_order=True, inner_steps=inner_steps), tasks)
    so = _grads(_module("vmap", first_order=False, inner_steps=inner_steps), tasks)
    fo_loop = _grads(_module("loop", first_order=True, inner_steps=inner_steps), tasks)

    module = _module("loop", inner_steps=inner_steps)
    learner = module.learner
    expected = {n: torch.zeros_like(p) for n, p in learner.named_parameters()}
    for t in range(3):
        Xs, ys, Xq, yq = (a[t] for a in tasks)
        params = {n: p.detach().clone() for n, p in learner.named_parameters()}
        for _ in range(inner_steps):  # plain SGD, no graph: Jacobian = identity
            params = {n: v.requires_grad_(True) for n, v in params.items()}
            loss = module.loss_fn(functional_call(learner, params, (Xs,)), ys)
            g = torch.autograd.grad(loss, list(params.values()))
            params = {n: (v - 0.3 * gi).detach() for (n, v), gi in zip(params.items(), g)}
        params = {n: v.requires_grad_(True) for n, v in params.items()}
        qloss = module.loss_fn(functional_call(learner, params, (Xq,)), yq)
        for n, gi in zip(params, torch.autograd.grad(qloss, list(params.values()))):
            expected[n] += gi / 3
    for name in expected:
        key = "learner." + name
        torch.testing.assert_close(fo[key], expected[name], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(fo_loop[key], expected[name], rtol=1e-10, atol=1e-12)
    assert any(not torch.allclose(fo[k], so[k]) for k in fo)


def test_choose_task_batching_rule():
    assert choose_task_batching("cuda", 80, 113_000)[0] == "vmap"
    assert choose_task_batching("cpu", 10, 113_000)[0] == "vmap"
    assert choose_task_batching("cpu", 80, 113_000)[0] == "loop"
    assert choose_task_batching("cpu", 10, 113_000, batch_norm=True)[0] == "loop"
    assert choose_task_batching("cuda", 10, 113_000, batch_norm=True)[0] == "vmap"


# ---------------------------------------------------------------- estimator
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


def _maml(**kw):
    params = dict(n_way=5, k_shot=1, n_query=5, inner_lr=0.5, inner_steps_test=3,
                  max_epochs=4, episodes_per_epoch=100, lr=3e-3, random_state=0)
    params.update(kw)
    return MAMLClassifier(**params)


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    return _maml().fit(X[y < 5], y[y < 5])


def test_maml_learns_new_classes(fitted, digits):
    X, y = digits
    held = y >= 5
    mean, ci = few_shot_score(fitted, X[held], y[held], n_way=5, k_shot=1, n_query=5,
                              n_episodes=40, random_state=0)
    assert mean > 0.35, mean  # chance is 0.2
    assert 0 < ci < 0.1
    assert fitted.score(X[y < 5], y[y < 5]) > 0.7
    assert fitted.net_.history[-1, "train_acc"] > fitted.net_.history[0, "train_acc"]


def test_adapt_leaves_meta_model_and_returns_new_estimator(fitted, digits):
    X, y = digits
    before = {k: v.clone() for k, v in fitted.net_.module_.state_dict().items()}
    classes_before = fitted.classes_.copy()
    idx = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(5, 10)])
    labels = np.array(["f", "g", "h", "i", "j"])[y[idx] - 5]
    new = fitted.adapt(X[idx], labels)
    assert new is not fitted and type(new) is MAMLClassifier
    assert new.classes_.tolist() == ["f", "g", "h", "i", "j"]
    assert set(new.predict(X[y >= 5][:20])) <= set(labels)
    np.testing.assert_allclose(new.predict_proba(X[:7]).sum(1), 1, rtol=1e-5)
    after = fitted.net_.module_.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    np.testing.assert_array_equal(fitted.classes_, classes_before)


def test_more_test_steps_change_adaptation(fitted, digits):
    X, y = digits
    idx = np.concatenate([np.flatnonzero(y == c)[:1] for c in range(5, 10)])
    one = pickle.loads(pickle.dumps(fitted)).set_params(inner_steps_test=1)
    assert not np.allclose(one.adapt(X[idx], y[idx]).predict_proba(X[:5]),
                           fitted.adapt(X[idx], y[idx]).predict_proba(X[:5]))


def test_same_seed_same_model_loop_matches_vmap_and_pickle_round_trips(digits):
    X, y = digits
    mask = y < 5
    a = _maml(max_epochs=1, episodes_per_epoch=20, n_query=1).fit(X[mask], y[mask])
    b = _maml(max_epochs=1, episodes_per_epoch=20, n_query=1).fit(X[mask], y[mask])
    c = _maml(max_epochs=1, episodes_per_epoch=20, n_query=1,
              task_batching="loop").fit(X[mask], y[mask])
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    np.testing.assert_allclose(a.predict_proba(X), c.predict_proba(X), rtol=1e-4, atol=1e-5)
    assert a.task_batching_ == "vmap" and c.task_batching_ == "loop"
    assert "examples per task" in a.task_batching_reason_
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(restored.predict(X), a.predict(X))


def test_auto_falls_back_to_loop_for_modules_vmap_cannot_run(digits):
    X, y = digits
    mask = y < 5

    class DataDependent(nn.Module):  # .item() has no batching rule
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(64, 16)

        def forward(self, X):
            out = self.linear(X)
            return out.relu() if out.sum().item() > -1e9 else out

    trunk = DataDependent

    maml = _maml(module=trunk, max_epochs=1, episodes_per_epoch=8, n_query=1)
    maml.fit(X[mask], y[mask])
    assert maml.task_batching_ == "loop"
    assert "vmap failed" in maml.task_batching_reason_


@pytest.mark.parametrize("kw, update", [
    ({"first_order": True}, "SGDUpdate"),
    ({"learn_inner_lr": True}, "MetaSGDUpdate"),
    ({"adapt_layers": "head"}, "SGDUpdate"),
    ({"inner_optimizer": "meta_lstm"}, "MetaLSTMUpdate"),
], ids=["first_order", "meta_sgd", "anil", "meta_lstm"])
def test_variants_meta_learn_their_update_and_adapt_only_their_layers(digits, kw, update):
    X, y = digits
    mask = y < 5
    maml = _maml(max_epochs=1, episodes_per_epoch=20, **kw).fit(X[mask], y[mask])
    module = maml.net_.module_
    assert type(module.inner_update).__name__ == update
    idx = np.concatenate([np.flatnonzero(y == c)[:1] for c in range(5, 10)])
    new = maml.adapt(X[idx], y[idx])
    meta = dict(module.learner.named_parameters())
    moved = {k for k, v in new.adapted_state_.items() if not torch.equal(v, meta[k].detach())}
    assert moved == set(module.adapt_names)
    assert set(new.predict(X[y >= 5])) <= set(range(5, 10))
    if kw.get("adapt_layers") == "head":
        assert moved == {"head.weight", "head.bias"}
    if kw.get("learn_inner_lr"):  # the per-entry rates were meta-learned from 0.5
        rates = module.inner_update.lrs
        assert any(not torch.allclose(v, torch.full_like(v, 0.5)) for v in rates.values())
    if kw.get("inner_optimizer"):  # the gates were meta-learned from their start
        assert float(module.inner_update.w_i.detach().abs().sum()) > 0


def test_images_get_conv4_and_auto_runs_the_loop_with_fused_batch_norm(digits, monkeypatch):
    X, y = digits
    images = np.kron(X.reshape(-1, 1, 8, 8), np.ones((1, 1, 2, 2), dtype=np.float32))
    mask = y < 5
    maml = _maml(max_epochs=1, episodes_per_epoch=8).fit(images[mask], y[mask])
    assert maml.net_.module_.learner.trunk.__class__.__name__ == "Conv4"
    # on a CPU, auto runs the loop with PyTorch's fused batch norm
    assert maml.task_batching_ == "loop"
    norms = [m for m in maml.net_.module_.modules() if "BatchNorm" in type(m).__name__]
    assert norms and all(isinstance(m, nn.BatchNorm2d) for m in norms)
    idx = np.concatenate([np.flatnonzero(y == c)[:1] for c in range(5, 10)])
    assert maml.adapt(images[idx], y[idx]).predict(images[:4]).shape == (4,)
    restored = pickle.loads(pickle.dumps(maml))
    np.testing.assert_array_equal(restored.predict_proba(images[:8]),
                                  maml.predict_proba(images[:8]))
    # same rounding on both paths: channels-last convolutions only run in the loop
    monkeypatch.setattr(MAMLModule, "channels_last", False)
    # (per-tensor Adam, for which the tolerance was set: with the fused kernel the
    # paths' rounding once left one probability in 100 at 2e-4 apart)
    vm = _maml(max_epochs=1, episodes_per_epoch=8, task_batching="vmap", n_query=1,
               net_params={"optimizer__fused": False})
    vm.fit(images[mask], y[mask])
    lp = _maml(max_epochs=1, episodes_per_epoch=8, task_batching="loop", n_query=1,
               net_params={"optimizer__fused": False})
    lp.fit(images[mask], y[mask])
    np.testing.assert_allclose(vm.predict_proba(images[:20]), lp.predict_proba(images[:20]),
                               rtol=1e-3, atol=1e-4)


def test_invalid_parameters_and_support_sets_raise(fitted, digits):
    X, y = digits
    with pytest.raises(ValueError, match="meta-trained for n_way=5"):
        fitted.adapt(X[:20], y[:20] % 3)
    with pytest.raises(ValueError, match="n_way=12 is larger than the number of classes"):
        _maml(n_way=12).fit(X, y)
    small = np.concatenate([np.flatnonzero(y == c)[:4] for c in range(5)])
    with pytest.raises(ValueError, match="k_shot \\+ n_query = 6"):
        _maml(k_shot=1, n_query=5).fit(X[small], y[small])
    for bad, match in [({"task_batching": "gpu"}, "task_batching"),
                       ({"adapt_layers": "nothing."}, "matches no parameter"),
                       ({"adapt_layers": 3}, "adapt_layers"),
                       ({"inner_lr": -1.0}, "inner_lr"),
                       ({"learn_inner_lr": True, "inner_optimizer": "meta_lstm"}, "choose one"),
                       ({"inner_optimizer": "adam"}, "inner_optimizer"),
                       ({"k_shot": 0}, "k_shot")]:
        with pytest.raises((ValueError, TypeError), match=match):
            _maml(**bad).fit(X[y < 5], y[y < 5])


def test_failed_fit_keeps_fitted_state(fitted, digits):
    X, y = digits
    est = pickle.loads(pickle.dumps(fitted))
    before = est.predict_proba(X[:10])
    est.set_params(n_way=50)
    with pytest.raises(ValueError):
        est.fit(X, y)
    np.testing.assert_array_equal(est.predict_proba(X[:10]), before)
    assert est.n_way_ == 5


def test_validation_split_records_valid_metrics_and_predict_covers_all_fit_classes(digits):
    from skorch.dataset import ValidSplit

    X, y = digits
    maml = _maml(n_way=3, n_query=1, max_epochs=2, episodes_per_epoch=20,
                 train_split=ValidSplit(0.25)).fit(X, y)
    history = maml.net_.history
    assert "valid_loss" in history[-1] and "valid_acc" in history[-1]
    # predict after fit answers among all 10 classes of fit (head rows start from their mean)
    assert maml.adapted_state_["head.weight"].shape[0] == 10
    assert maml.predict_proba(X[:5]).shape == (5, 10)
    assert maml.score(X, y) > 0.3


def test_compiled_step_equals_the_loop_and_is_refused_for_second_order(monkeypatch, digits):
    monkeypatch.setattr(CompiledRunner, "compile_backend", "eager")  # trace, skip codegen
    tasks = _tasks()
    for steps in (1, 2):
        ref = _grads(_module("loop", first_order=True, inner_steps=steps), tasks)
        module = _module("loop", first_order=True, inner_steps=steps, compile_step=True)
        got = _grads(module, tasks)
        for name in ref:
            torch.testing.assert_close(got[name], ref[name], rtol=1e-10, atol=1e-12)
    assert "_compiled" in module.runner.__dict__
    restored = pickle.loads(pickle.dumps(module))
    assert "_compiled" not in restored.runner.__dict__
    with pytest.raises(ValueError, match="cannot be compiled"):
        _module(first_order=False, compile_step=True)
    with pytest.raises(ValueError, match="cannot be compiled"):
        _module(first_order=True, learn_inner_lr=True, compile_step=True)
    X, y = digits
    maml = _maml(first_order=True, compile_step=True, max_epochs=1, episodes_per_epoch=8)
    maml.fit(X[y < 5], y[y < 5])
    assert maml.task_batching_reason_ == "compiled first-order step"
    assert maml.predict(X[:3]).shape == (3,)


def test_vmap_runner_swaps_a_users_fused_batch_norm_for_the_exact_one():
    from torch import nn

    from sktransfer.meta import MAMLClassifier
    from sktransfer.modules import BatchNorm2d, Conv4

    rng = np.random.RandomState(0)
    X = rng.rand(60, 1, 8, 8).astype(np.float32)
    y = np.repeat(np.arange(6), 10)
    kw = dict(n_way=3, k_shot=2, n_query=2, episodes_per_epoch=4, max_epochs=1,
              task_batching="vmap", random_state=0)
    torch.manual_seed(0)  # the same initial weights for both networks
    fused = MAMLClassifier(module=Conv4(hidden_channels=4, n_blocks=2, image_size=8,
                                        track_running_stats=False), **kw).fit(X, y)
    assert not any(type(m) is nn.BatchNorm2d for m in fused.net_.module_.modules())
    assert any(type(m) is BatchNorm2d for m in fused.net_.module_.modules())
    torch.manual_seed(0)
    primitive = MAMLClassifier(module=Conv4(hidden_channels=4, n_blocks=2, image_size=8,
                                            track_running_stats=False,
                                            batch_norm="primitive"), **kw).fit(X, y)
    np.testing.assert_array_equal(fused.predict_proba(X), primitive.predict_proba(X))
