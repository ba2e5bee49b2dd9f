"""Fisher information and the collapsed EWC penalty: exact equalities."""

import numpy as np
import pytest
import torch
from torch import nn

from sktransfer.continual import EWC, SynapticIntelligence, fisher_diagonal
from sktransfer.continual._base import ContinualModule, ContinualNet
from sktransfer.continual._strategies import Task


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(),
                         nn.Linear(16, 5))


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 3, 3, stride=2, dilation=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3, 5))


def _data(model, n=33):
    g = torch.Generator().manual_seed(1)
    shape = (12,) if isinstance(model[0], nn.Linear) else (2, 8, 8)
    return torch.randn((n,) + shape, generator=g), torch.randint(0, 5, (n,), generator=g)


def _rel_err(a, b):
    return max(float((a[k] - b[k]).norm() / b[k].norm().clamp(min=1e-30)) for k in b)


@pytest.mark.parametrize("make", [_mlp, _cnn], ids=["linear", "conv"])
@pytest.mark.parametrize("kind", ["exact", "sampled", "empirical"])
@pytest.mark.parametrize("method", ["hooks", "vmap"])
def test_fast_paths_equal_per_sample_loop(make, kind, method):
    model = make()
    X, y = _data(model)
    ref = fisher_diagonal(model, X, y, kind=kind, method="loop", random_state=3)
    fast = fisher_diagonal(model, X, y, kind=kind, method=method, batch_size=10,
                           random_state=3)
    assert set(fast) == {n for n, _ in model.named_parameters()}
    assert _rel_err(fast, ref) < 1e-5


@pytest.mark.parametrize("make", [_mlp, _cnn], ids=["linear", "conv"])
def test_exact_one_pass_per_class_when_too_big_to_batch(make, monkeypatch):
    from sktransfer.continual import _fisher

    model = make()
    X, y = _data(model)
    batched = fisher_diagonal(model, X, kind="exact")
    monkeypatch.setattr(_fisher, "_BATCHED_LIMIT", 0)
    looped = fisher_diagonal(model, X, kind="exact")
    ref = fisher_diagonal(model, X, kind="exact", method="loop")
    assert _rel_err(looped, ref) < 1e-5 and _rel_err(batched, ref) < 1e-5


def test_exact_is_expectation_of_sampled():
    model = _mlp()
    X, _ = _data(model, n=200)
    exact = fisher_diagonal(model, X, kind="exact")
    sampled = [fisher_diagonal(model, X, kind="sampled", random_state=s) for s in range(20)]
    mean = {k: torch.stack([s[k] for s in sampled]).mean(0) for k in exact}
    assert _rel_err(mean, exact) < 0.1
    assert _rel_err(sampled[0], exact) > _rel_err(mean, exact)


def test_batched_is_biased_as_documented():
    model = _mlp()
    X, y = _data(model, n=256)
    empirical = fisher_diagonal(model, X, y, kind="empirical")
    one = fisher_diagonal(model, X, y, kind="batched", batch_size=1)
    assert _rel_err(one, empirical) < 1e-5
    b32 = fisher_diagonal(model, X, y, kind="batched", batch_size=32)
    ratio = sum(float(v.sum()) for v in b32.values()) / sum(float(v.sum())
                                                            for v in empirical.values())
    assert ratio < 0.5  # far smaller than the per-sample Fisher


def test_fisher_eval_mode_and_restores_training_flag():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.Dropout(0.5), nn.Linear(16, 5))
    X, y = _data(_mlp())
    model.train()
    a = fisher_diagonal(model, X, y, kind="empirical")
    b = fisher_diagonal(model, X, y, kind="empirical")
    assert model.training
    assert _rel_err(a, b) == 0  # no dropout noise: eval mode


def test_fisher_general_layers_use_vmap():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 8), nn.LayerNorm(8), nn.Linear(8, 5))
    X, y = _data(_mlp())
    auto = fisher_diagonal(model, X, y, kind="exact")
    ref = fisher_diagonal(model, X, y, kind="exact", method="loop")
    assert _rel_err(auto, ref) < 1e-5
    with pytest.raises(ValueError, match="hooks"):
        fisher_diagonal(model, X, y, method="hooks")


def test_fisher_layer_applied_twice_falls_back():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(12, 12)
            self.b = nn.Linear(12, 5)

        def forward(self, X):
            return self.b(torch.tanh(self.a(torch.tanh(self.a(X)))))

    torch.manual_seed(0)
    model = Twice()
    X, y = _data(_mlp())
    fast = fisher_diagonal(model, X, y, kind="empirical", method="hooks")
    ref = fisher_diagonal(model, X, y, kind="empirical", method="loop")
    assert _rel_err(fast, ref) < 1e-5


def test_fisher_bad_kind_labels_or_method_raise_errors_naming_them():
    model = _mlp()
    X, y = _data(model)
    with pytest.raises(ValueError, match="kind"):
        fisher_diagonal(model, X, y, kind="diagonal")
    with pytest.raises(ValueError, match="true labels"):
        fisher_diagonal(model, X, kind="empirical")
    with pytest.raises(ValueError, match="method"):
        fisher_diagonal(model, X, y, method="fast")


# ---------------------------------------------------------------- the penalty
def _net(scenario="domain"):
    torch.manual_seed(0)
    module = ContinualModule(nn.Sequential(nn.Linear(6, 8), nn.ReLU()), 8, 3, scenario)
    net = ContinualNet(module, criterion=nn.CrossEntropyLoss, batch_size=8, max_epochs=1)
    net.initialize()
    net.refresh_params()
    return net


def _perturb(net, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.params:
            p.add_(0.3 * torch.randn(p.shape, generator=g))


def _task(k, n=40):
    g = torch.Generator().manual_seed(10 + k)
    return Task(k, torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g),
                torch.zeros(n, dtype=torch.long))


@pytest.mark.parametrize("gamma", [None, 0.7])
def test_collapsed_penalty_equals_sum_of_task_penalties(gamma):
    net = _net()
    lam = 3.0
    plugin = EWC(ewc_lambda=lam, gamma=gamma).build("domain")
    plugin.before_task(net, _task(0))
    per_task, online = [], None
    for k in range(4):
        _perturb(net, k)
        task = _task(k)
        before = torch.get_rng_state()
        plugin.after_task(net, task)
        torch.set_rng_state(before)
        fisher = fisher_diagonal(net.module_, task.X, task.y, kind="exact",
                                 forward_kwargs={"task_ids": task.t})
        anchor = {n: p.detach().clone() for n, p in zip(net.param_names, net.params)}
        per_task.append((fisher, anchor))
        if gamma is not None:
            online = fisher if online is None else {n: gamma * online[n] + fisher[n]
                                                    for n in fisher}
    _perturb(net, 99)
    theta = dict(zip(net.param_names, net.params))
    if gamma is None:
        expected = sum(0.5 * lam * sum(float((F[n] * (theta[n].detach() - a[n]) ** 2).sum())
                                       for n in F)
                       for F, a in per_task)
    else:
        last = per_task[-1][1]
        expected = 0.5 * lam * sum(float((online[n] * (theta[n].detach() - last[n]) ** 2).sum())
                                   for n in online)
    assert plugin.penalty(net) == pytest.approx(expected, rel=1e-4)

    # the gradient added in place equals autograd's gradient of the penalty
    params = list(net.params)
    grads = [torch.zeros_like(p) for p in params]
    net.step_index = None
    with torch.no_grad():
        plugin.add_penalty_gradients(net, params, grads)
    if gamma is None:
        total = sum(0.5 * lam * (F[n] * (theta[n] - a[n]) ** 2).sum()
                    for F, a in per_task for n in F)
    else:
        total = sum(0.5 * lam * (online[n] * (theta[n] - last[n]) ** 2).sum() for n in online)
    auto = torch.autograd.grad(total, params)
    for g, a in zip(grads, auto):
        torch.testing.assert_close(g, a, rtol=1e-4, atol=1e-6)


def test_penalty_step_cost_does_not_grow_with_tasks():
    net = _net()
    plugin = EWC(ewc_lambda=1.0).build("domain")
    plugin.before_task(net, _task(0))
    for k in range(5):
        plugin.after_task(net, _task(k))
    # two running tensors per parameter, whatever the number of tasks
    assert len(plugin.A) == len(plugin.B) == len(net.params)
    assert plugin.n_consolidated == 5


def test_si_penalty_gradient_matches_autograd():
    net = _net()
    plugin = SynapticIntelligence(si_c=0.5, xi=0.1).build("domain")
    plugin.before_task(net, _task(0))
    # simulate a few steps: record gradients, move, accumulate
    with torch.no_grad():  # as in ContinualNet's training step
        for _ in range(3):
            params = list(net.params)
            grads = [torch.randn_like(p) for p in params]
            plugin.record_gradients(net, params, grads)
            for p, g in zip(params, grads):
                p.sub_(0.1 * g)
            plugin.after_step(net, params)
        plugin.after_task(net, _task(0))
    _perturb(net, 5)
    params = list(net.params)
    theta = dict(zip(net.param_names, params))
    total = sum(0.5 * (plugin.importance[n] * (theta[n] - plugin.anchor[n]) ** 2).sum()
                for n in plugin.importance)
    assert plugin.penalty(net) == pytest.approx(float(total.detach()), rel=1e-5)
    grads = [torch.zeros_like(p) for p in params]
    with torch.no_grad():
        plugin.add_penalty_gradients(net, params, grads)
    auto = torch.autograd.grad(total, params)
    for g, a in zip(grads, auto):
        torch.testing.assert_close(g, a, rtol=1e-4, atol=1e-6)
    assert np.isfinite(plugin.penalty(net))
