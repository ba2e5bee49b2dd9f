"""LoRA and BitFit: what trains, the merge, and trainable parameter counts."""

import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from sktransfer.transfer import BitFit, FineTuner, LoRA
from sktransfer.transfer._lora import LoRALayer, merge_adapters


def make_mlp(out=5):
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, out))


class SmallConv(nn.Module):
    def __init__(self, out=5):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)   # gets no adapter
        self.fc = nn.Linear(8 * 4 * 4, out)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.depthwise(x))
        return self.fc(x.flatten(1))


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


@pytest.fixture(scope="module")
def pretrained(digits):
    """An MLP pretrained on the digits 0-4 (the module itself, with its weights)."""
    X, y = digits
    torch.manual_seed(0)
    ft = FineTuner(make_mlp(), strategy="full", head="keep", lr=1e-2, max_epochs=30,
                   random_state=0).fit(X[y < 5], y[y < 5])
    return ft.net_.module_


@pytest.fixture(scope="module")
def target(digits):
    X, y = digits
    keep = y >= 5
    return X[keep][:300], y[keep][:300], X[keep][300:], y[keep][300:]


def _weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_merged_network_equals_the_adapted_one(pretrained, target):
    X, y, Xt, _ = target
    ft = FineTuner(pretrained, strategy=LoRA(rank=3, merge=False), max_epochs=15,
                   random_state=0).fit(X, y)
    adapted = ft.net_.module_
    assert sum(isinstance(m, LoRALayer) for m in adapted.modules()) == 2
    merged = copy.deepcopy(adapted)
    assert merge_adapters(merged) == 2
    assert not any(isinstance(m, LoRALayer) for m in merged.modules())
    with torch.no_grad():
        a = adapted.eval()(torch.as_tensor(Xt))
        b = merged.eval()(torch.as_tensor(Xt))
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


def test_merged_conv_network_equals_the_adapted_one(digits):
    X, y = digits
    X = X.reshape(-1, 1, 8, 8)
    torch.manual_seed(0)
    ft = FineTuner(SmallConv(out=10), strategy=LoRA(rank=2, merge=False), max_epochs=3,
                   random_state=0).fit(X[:300], y[:300])
    adapted = ft.net_.module_
    kinds = {n: type(m.base).__name__ for n, m in adapted.named_modules()
             if isinstance(m, LoRALayer)}
    assert kinds == {"conv1": "Conv2d", "conv2": "Conv2d"}  # not the grouped one, not the head
    merged = copy.deepcopy(adapted)
    merge_adapters(merged)
    with torch.no_grad():
        a = adapted.eval()(torch.as_tensor(X[300:400]))
        b = merged.eval()(torch.as_tensor(X[300:400]))
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


def test_lora_trains_low_rank_updates_and_merges_by_default(pretrained, target):
    X, y, Xt, yt = target
    before = _weights(pretrained)
    ft = FineTuner(pretrained, strategy="lora", max_epochs=30, random_state=0).fit(X, y)
    module = ft.net_.module_
    assert [type(m).__name__ for m in module] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    for name in ("0.weight", "2.weight"):
        delta = module.state_dict()[name] - before[name]
        assert delta.abs().max() > 1e-4                       # it learned ...
        assert torch.linalg.matrix_rank(delta, atol=1e-5) <= 4  # ... at rank 4 (the default)
    for name in ("0.bias", "2.bias"):                          # the biases are frozen
        torch.testing.assert_close(module.state_dict()[name], before[name])
    assert pretrained.state_dict()["0.weight"].equal(before["0.weight"])  # source untouched
    assert ft.score(Xt, yt) > 0.8                                          # chance is 0.2


def test_lora_starts_from_the_pretrained_network(pretrained, digits):
    X, y = digits
    keep = y < 5
    ft = FineTuner(pretrained, strategy=LoRA(merge=False), head="keep", max_epochs=0,
                   random_state=0).fit(X[keep], y[keep])
    with torch.no_grad():
        expected = pretrained.eval()(torch.as_tensor(X[keep])).argmax(1).numpy()
    np.testing.assert_array_equal(ft.predict(X[keep]), expected)


def test_lora_partial_fit_after_a_merge_adds_fresh_adapters(pretrained, target):
    X, y, Xt, yt = target
    before = _weights(pretrained)
    ft = FineTuner(pretrained, strategy=LoRA(rank=2), max_epochs=5, random_state=0)
    ft.partial_fit(X, y)
    head = ft.net_.module_[4].weight
    state = ft.net_.optimizer_.state[head]["step"].item()
    ft.partial_fit(X, y)
    assert not any(isinstance(m, LoRALayer) for m in ft.net_.module_.modules())
    # the head's optimizer state carried over
    assert ft.net_.optimizer_.state[ft.net_.module_[4].weight]["step"].item() > state
    delta = ft.net_.module_.state_dict()["0.weight"] - before["0.weight"]
    assert torch.linalg.matrix_rank(delta, atol=1e-5) <= 4   # two rank-2 updates


def test_lora_without_merge_continues_its_adapters(pretrained, target):
    X, y, _, _ = target
    ft = FineTuner(pretrained, strategy=LoRA(merge=False), max_epochs=3, random_state=0)
    ft.fit(X, y)
    A = ft.net_.module_[0].lora_A.weight
    ft.partial_fit(X, y)
    assert ft.net_.module_[0].lora_A.weight is A
    restored = pickle.loads(pickle.dumps(ft))
    np.testing.assert_allclose(restored.predict_proba(X), ft.predict_proba(X), atol=1e-6)


def test_target_modules_choose_the_layers(pretrained, target):
    X, y, _, _ = target
    ft = FineTuner(pretrained, strategy=LoRA(target_modules=["2"], merge=False), max_epochs=2,
                   random_state=0).fit(X, y)
    assert [n for n, m in ft.net_.module_.named_modules() if isinstance(m, LoRALayer)] == ["2"]
    with pytest.raises(ValueError, match=r"match no nn.Linear or nn.Conv2d.*\['0', '2'\]"):
        FineTuner(pretrained, strategy=LoRA(target_modules=["conv*"]), max_epochs=1).fit(X, y)


def test_bitfit_trains_only_the_biases(pretrained, target):
    X, y, Xt, yt = target
    before = _weights(pretrained)
    ft = FineTuner(pretrained, strategy="bitfit", max_epochs=30, random_state=0).fit(X, y)
    after = ft.net_.module_.state_dict()
    for name in ("0.weight", "2.weight"):
        torch.testing.assert_close(after[name], before[name])
    for name in ("0.bias", "2.bias"):
        assert (after[name] - before[name]).abs().max() > 1e-4
    assert ft.score(Xt, yt) > 0.7


def test_trainable_parameter_counts_per_strategy(pretrained, target):
    X, y, _, _ = target
    head = 32 * 5 + 5
    total = 64 * 32 + 32 + 32 * 32 + 32 + head
    expected = {"last": head, "full": total, "bitfit": 32 + 32 + head,
                "lora": 4 * (64 + 32) + 4 * (32 + 32) + head}
    for strategy, count in expected.items():
        ft = FineTuner(pretrained, strategy=strategy, max_epochs=1, random_state=0).fit(X, y)
        assert ft.n_trainable_params_ == count, strategy
        assert ft.n_params_ == total, strategy
        assert ft.net_.history[-1, "trainable_params"] == count


def test_lora_is_searchable_and_clones(pretrained, target):
    X, y, _, _ = target
    ft = FineTuner(pretrained, strategy=LoRA(), max_epochs=3, random_state=0)
    search = GridSearchCV(ft, {"strategy__rank": [1, 2]}, cv=2).fit(X, y)
    assert search.best_estimator_.strategy_.rank in (1, 2)
    assert clone(ft).get_params()["strategy__rank"] == 4


@pytest.mark.parametrize("params, match", [
    ({"rank": 0}, "rank"),
    ({"alpha": 0}, "alpha"),
    ({"dropout": 1.0}, "dropout"),
    ({"target_modules": "0"}, "target_modules"),
    ({"merge": "yes"}, "merge"),
])
def test_lora_bad_parameters(params, match, pretrained, target):
    X, y, _, _ = target
    with pytest.raises(InvalidParameterError, match=match):
        FineTuner(pretrained, strategy=LoRA(**params), max_epochs=1).fit(X, y)


def test_lora_on_a_network_without_adaptable_layers_is_an_error(target):
    X, y, _, _ = target
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv2d layer outside the head"):
        FineTuner(nn.Sequential(nn.Linear(64, 5)), strategy="lora", max_epochs=1).fit(X, y)


def test_failed_partial_fit_keeps_the_merged_model(pretrained, target):
    X, y, Xt, _ = target
    ft = FineTuner(pretrained, strategy="lora", max_epochs=2, random_state=0).fit(X, y)
    proba = ft.predict_proba(Xt)
    with pytest.raises(ValueError):
        ft.partial_fit(X[:, :10], y)
    assert not any(isinstance(m, LoRALayer) for m in ft.net_.module_.modules())
    np.testing.assert_array_equal(ft.predict_proba(Xt), proba)


def test_bitfit_has_no_parameters():
    assert BitFit().get_params() == {}
