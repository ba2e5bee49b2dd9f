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


# ---------------------------------------------------------------- BSS, DELTA
from sktransfer.transfer import BSS, DELTA  # noqa: E402
from sktransfer.transfer._regularizers import Capture  # noqa: E402


def test_bss_penalty_is_the_smallest_singular_values(pretrained):
    torch.manual_seed(0)
    feats = torch.randn(16, 32)
    penalty = BSS(eta=0.5, k=2).build(pretrained, "4")
    assert penalty.watch() == [("4", "input")]
    s = np.linalg.svd(feats.numpy(), compute_uv=False)
    expected = 0.5 * (s[-1] ** 2 + s[-2] ** 2)
    value = penalty.penalty({("4", "input"): feats}, None)
    np.testing.assert_allclose(float(value), expected, rtol=1e-5)


def test_bss_shrinks_the_small_singular_values(pretrained, target):
    X, y, Xt, yt = target

    def smallest(ft):
        # the 8 smallest squared singular values of a batch of 32, as a share of all
        with Capture(ft.net_.module_, [("4", "input")]) as seen, torch.no_grad():
            ft.net_.module_.eval()(torch.as_tensor(X[:32]))
        s2 = np.linalg.svd(seen[("4", "input")].numpy(), compute_uv=False) ** 2
        return s2[-8:].sum() / s2.sum()

    plain = FineTuner(pretrained, strategy="full", max_epochs=20, random_state=0).fit(X, y)
    bss = FineTuner(pretrained, strategy="full", regularizer=BSS(eta=1.0, k=8), max_epochs=20,
                    random_state=0).fit(X, y)
    assert smallest(bss) < 0.5 * smallest(plain)
    # at the paper's strength it learns as well as without
    paper = FineTuner(pretrained, strategy="full", regularizer=BSS(), max_epochs=20,
                      random_state=0).fit(X, y)
    assert paper.score(Xt, yt) > plain.score(Xt, yt) - 0.03 > 0.8


def test_delta_penalty_against_a_hand_computation(pretrained):
    net = copy.deepcopy(pretrained)
    penalty = DELTA(alpha=0.3, layers=["0", "2"], attention=False).build(net, "4")
    X = torch.rand(8, 64)
    penalty.setup(net, X, torch.zeros(8, dtype=torch.long), None, 4, "cpu")
    with torch.no_grad():
        net[0].weight.add_(0.05)
        with Capture(net, penalty.watch()) as seen:
            net(X)
        value = penalty.penalty(dict(seen), X)
        ref0, ref2 = pretrained[0](X), pretrained[2](torch.relu(pretrained[0](X)))
    expected = 0.3 * sum(((seen[(n, "output")] - r) ** 2).mean(0).mean()
                         for n, r in (("0", ref0), ("2", ref2)))
    np.testing.assert_allclose(float(value), float(expected), rtol=1e-5)


def test_delta_attention_weighs_the_channels_that_matter(digits):
    X, y = digits
    torch.manual_seed(0)
    net = make_mlp(out=10)
    with torch.no_grad():
        net[2].weight[:, 5:] = 0          # channels 5.. of layer 0 reach nothing
    penalty = DELTA(layers=["0"]).build(net, "4")
    Xt = torch.as_tensor(X[:200])
    yt = torch.as_tensor(y[:200])
    penalty.setup(net, Xt, yt, torch.nn.functional.cross_entropy, 64, "cpu")
    w = penalty.weights[0]
    assert w.shape == (32,) and abs(float(w.sum()) - 1) < 1e-6
    # zeroing a dead channel changes no loss: all of them weigh the same, the least
    dead = w[5:]
    torch.testing.assert_close(dead, torch.full_like(dead, float(dead[0])))
    assert float(w[:5].max()) >= float(dead[0])


def test_delta_keeps_the_features_close_and_learns(pretrained, target):
    X, y, Xt, yt = target

    def drift(ft):
        with torch.no_grad():
            a = ft.net_.module_[:3].eval()(torch.as_tensor(X))
            b = pretrained[:3].eval()(torch.as_tensor(X))
        return float((a - b).pow(2).mean())

    plain = FineTuner(pretrained, strategy="full", max_epochs=20, random_state=0).fit(X, y)
    strong = FineTuner(pretrained, strategy="full", regularizer=DELTA(alpha=10.0),
                       max_epochs=20, random_state=0).fit(X, y)
    assert drift(strong) < 0.5 * drift(plain)
    delta = FineTuner(pretrained, strategy="full", regularizer=DELTA(), max_epochs=20,
                      random_state=0).fit(X, y)
    assert delta.score(Xt, yt) > 0.8
    restored = pickle.loads(pickle.dumps(delta))
    np.testing.assert_allclose(restored.predict_proba(Xt), delta.predict_proba(Xt), atol=1e-6)
    restored.partial_fit(X, y)   # the regulariser keeps working after unpickling


def test_regularizer_errors(pretrained, target):
    X, y, _, _ = target
    with pytest.raises(InvalidParameterError, match="eta"):
        FineTuner(pretrained, regularizer=BSS(eta=-1), max_epochs=1).fit(X, y)
    with pytest.raises(ValueError, match=r"DELTA layers \['nope'\] are not submodules"):
        FineTuner(pretrained, regularizer=DELTA(layers=["nope"]), max_epochs=1).fit(X, y)
    with pytest.raises(TypeError, match="regularizer must be a TransferRegularizer"):
        FineTuner(pretrained, regularizer=["bss"], max_epochs=1).fit(X, y)


def test_regularizers_combine_and_search(pretrained, target):
    X, y, _, _ = target
    ft = FineTuner(pretrained, strategy="full", regularizer=[BSS(), DELTA(attention=False)],
                   max_epochs=2, random_state=0).fit(X, y)
    assert len(ft.net_.regularizers) == 2
    search = GridSearchCV(FineTuner(pretrained, strategy="full", regularizer=BSS(),
                                    max_epochs=2, random_state=0),
                          {"regularizer__eta": [1e-3, 1e-1]}, cv=2).fit(X, y)
    assert search.best_params_["regularizer__eta"] in (1e-3, 1e-1)
