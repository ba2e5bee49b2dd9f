"""FineTuner's defaults for small data: resolved rates and epochs, the probe of "last",
and the batch-norm rule (``bn="auto"``).

benchmarks/bench_finetuner_defaults.py measures the defaults against the linear
probe; these tests pin the behaviour on scikit-learn's 8x8 digits.
"""

import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from torch import nn

from sktransfer.modules import BatchNorm2d
from sktransfer.transfer import FineTuner, FineTunerRegressor, PretrainedFeatures
from sktransfer.transfer._finetuner import DEFAULT_RATES, MIN_EPOCHS, MIN_STEPS
from sktransfer.transfer._layers import untrained_batch_norm
from sktransfer.transfer._strategies import TransferPlan


def mlp(bn=False):
    layers = [nn.Linear(64, 32)]
    if bn:
        layers.append(nn.BatchNorm1d(32))
    layers += [nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5)]
    return nn.Sequential(*layers)


def mlp_bn():
    return mlp(bn=True)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


@pytest.fixture(scope="module")
def source(digits):
    """An MLP with batch norm pretrained on the digits 0-4 (trained statistics)."""
    X, y = digits
    return FineTuner(mlp_bn, strategy="full", head="keep", bn="train", lr=1e-2,
                     max_epochs=30, random_state=0).fit(X[y < 5], y[y < 5])


@pytest.fixture(scope="module")
def target(digits):
    X, y = digits
    keep = y >= 5
    return X[keep], y[keep]


def shots(y, k, seed):
    rng = np.random.RandomState(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        train.append(idx[:k])
        test.append(idx[k:])
    return np.concatenate(train), np.concatenate(test)


# ------------------------------------------------------------ the reported case
@pytest.mark.filterwarnings("ignore:The number of unique classes")
def test_last_with_defaults_matches_the_linear_probe_on_five_shots(source, target):
    """The new user's report: 5 examples per class, "last" with its defaults."""
    X, y = target
    net = FrozenEstimator(source)
    last, lin, old = [], [], []
    for seed in range(3):
        tr, te = shots(y, 5, seed)
        last.append(FineTuner(net, strategy="last", random_state=seed)
                    .fit(X[tr], y[tr]).score(X[te], y[te]))
        probe = make_pipeline(PretrainedFeatures(net), LogisticRegression(max_iter=2000))
        lin.append(probe.fit(X[tr], y[tr]).score(X[te], y[te]))
        # the old defaults: the head alone by Adam at 1e-3 for 20 epochs (20 steps)
        old.append(FineTuner(net, strategy="top", n_layers=0, lr=1e-3, max_epochs=20,
                             random_state=seed).fit(X[tr], y[tr]).score(X[te], y[te]))
    # measured: last 0.70, linear probe 0.70, the old defaults 0.26
    assert np.mean(last) >= np.mean(lin) - 0.03, (last, lin)
    assert np.mean(last) >= np.mean(old) + 0.2, (last, old)


def test_last_starts_from_the_linear_probe(source, target):
    X, y = target
    tr, te = shots(y, 5, 0)
    net = source.net_.module_
    last = FineTuner(net, strategy="last", max_epochs=0, random_state=0).fit(X[tr], y[tr])
    lp = FineTuner(net, strategy="lp_ft", max_epochs=0, random_state=0).fit(X[tr], y[tr])
    np.testing.assert_allclose(last.predict_proba(X[te]), lp.predict_proba(X[te]), atol=1e-6)
    # "top" with n_layers=0 trains the head by gradient descent alone: no probe
    sgd = FineTuner(net, strategy="top", n_layers=0, max_epochs=0, random_state=0)
    assert sgd.fit(X[tr], y[tr]).score(X[te], y[te]) < last.score(X[te], y[te]) - 0.2
    # later partial_fit calls train the head; they do not probe again
    last.set_params(max_epochs=2).partial_fit(X[tr], y[tr])
    assert len(last.net_.history) == 2


# ------------------------------------------------------------- resolved defaults
@pytest.mark.parametrize("n, batch_size, epochs", [
    (25, 32, MIN_STEPS),  # one batch per epoch: 200 epochs
    (250, 32, 25),  # 8 batches per epoch
    (1000, 32, MIN_EPOCHS),  # 32 batches per epoch: the floor of 20 epochs
    (250, -1, MIN_STEPS),  # full batch
])
def test_max_epochs_none_gives_enough_steps(target, n, batch_size, epochs):
    X, y = target
    ft = FineTuner(mlp, strategy="last", batch_size=batch_size, random_state=0)
    ft.fit(X[:n], y[:n])
    assert ft.max_epochs_ == epochs
    assert len(ft.net_.history) == epochs
    assert ft.get_params()["max_epochs"] is None  # the parameter is left as it was


@pytest.mark.parametrize("strategy", sorted(DEFAULT_RATES))
def test_lr_none_resolves_per_strategy(source, target, strategy):
    X, y = target
    ft = FineTuner(source.net_.module_, strategy=strategy, max_epochs=1, random_state=0)
    ft.fit(X[:50], y[:50])
    head, backbone = DEFAULT_RATES[strategy]
    assert (ft.lr_, ft.backbone_lr_) == pytest.approx((head, backbone))
    lrs = [g["lr"] for g in ft.net_.optimizer_.param_groups]
    assert lrs == pytest.approx([backbone, backbone, head])
    assert ft.bn_modes_ == {"1": "freeze"}  # pretrained statistics are kept
    assert ft.get_params()["lr"] is None and ft.get_params()["backbone_lr"] is None


@pytest.mark.parametrize("strategy, backbone_lr, expected", [
    ("full", None, 0.02),  # a given lr: the backbone learns at lr, as before
    ("lp_ft", None, 0.002),  # ... lp_ft at lr / 10
    ("top", 0.005, 0.005),
])
def test_given_rates_are_used_as_given(source, target, strategy, backbone_lr, expected):
    X, y = target
    ft = FineTuner(source.net_.module_, strategy=strategy, lr=0.02, backbone_lr=backbone_lr,
                   layer_lr_decay=0.5, max_epochs=3, random_state=0).fit(X[:50], y[:50])
    assert ft.lr_ == 0.02 and ft.backbone_lr_ == pytest.approx(expected)
    assert ft.max_epochs_ == 3
    lrs = [g["lr"] for g in ft.net_.optimizer_.param_groups]
    assert lrs == pytest.approx([expected / 2, expected, 0.02])


def test_backbone_lr_with_default_lr(source, target):
    X, y = target
    ft = FineTuner(source.net_.module_, strategy="full", backbone_lr=1e-4, max_epochs=1,
                   random_state=0).fit(X[:50], y[:50])
    assert (ft.lr_, ft.backbone_lr_) == pytest.approx((1e-2, 1e-4))


def test_partial_fit_resolves_epochs_per_call(source, target):
    X, y = target
    ft = FineTuner(source.net_.module_, strategy="full", random_state=0)
    ft.partial_fit(X[:20], y[:20], classes=np.arange(5, 10))
    assert ft.max_epochs_ == MIN_STEPS
    ft.partial_fit(X[:500], y[:500])  # 16 batches: 20 epochs
    assert ft.max_epochs_ == MIN_EPOCHS
    assert len(ft.net_.history) == MIN_STEPS + MIN_EPOCHS
    ft.set_params(max_epochs=2).partial_fit(X[:20], y[:20])
    assert ft.max_epochs_ == 2 and len(ft.net_.history) == MIN_STEPS + MIN_EPOCHS + 2


def test_defaults_survive_clone_pickle_and_grid_search(source, target):
    X, y = target
    ft = FineTuner(FrozenEstimator(source), strategy="last", random_state=0)
    params = clone(ft).get_params(deep=False)
    assert params["lr"] is None and params["max_epochs"] is None and params["bn"] == "auto"
    ft.fit(X[:25], y[:25])
    again = pickle.loads(pickle.dumps(ft))
    assert (again.lr_, again.max_epochs_, again.bn_modes_) == (ft.lr_, ft.max_epochs_,
                                                               ft.bn_modes_)
    search = GridSearchCV(FineTuner(FrozenEstimator(source), strategy="last", max_epochs=2,
                                    random_state=0), {"lr": [None, 1e-3]}, cv=2)
    search.fit(X[:60], y[:60])
    assert [p["lr"] for p in search.cv_results_["params"]] == [None, 1e-3]


def test_regressor_resolves_the_same_defaults(source, digits):
    from sklearn.linear_model import Ridge

    X, y = digits
    Y = (y == 0) + 2.0 * (y == 1)  # a target the source's features know
    net = source.net_.module_
    reg = FineTunerRegressor(net, strategy="last", random_state=0).fit(X[:30], Y[:30])
    assert (reg.lr_, reg.max_epochs_) == (DEFAULT_RATES["last"][0], MIN_STEPS)
    # the probe fits a least-squares head: measured 0.56, as ridge on the features;
    # the old defaults (the head alone by Adam, 20 steps at 1e-3) reached -1.75
    ridge = make_pipeline(PretrainedFeatures(net), Ridge(alpha=1e-2)).fit(X[:30], Y[:30])
    assert reg.score(X[30:], Y[30:]) > ridge.score(X[30:], Y[30:]) - 0.05


@pytest.mark.parametrize("params", [{"lr": 0}, {"max_epochs": -1}, {"bn": "eval"},
                                    {"max_epochs": 1.5}])
def test_bad_values_of_the_new_defaults(target, params):
    X, y = target
    with pytest.raises((ValueError, TypeError)):
        FineTuner(mlp, **params).fit(X[:20], y[:20])


# --------------------------------------------------------------------- batch norm
def test_untrained_batch_norm_detection():
    fresh1, fresh2 = nn.BatchNorm1d(4), BatchNorm2d(4)
    trained = nn.BatchNorm1d(4).train()
    trained(torch.randn(8, 4))
    counted = nn.BatchNorm1d(4)
    counted.num_batches_tracked += 1  # statistics at their initial values, yet updated
    no_stats = nn.BatchNorm1d(4, track_running_stats=False)
    loaded = nn.BatchNorm1d(4)
    loaded.running_mean += 0.5  # statistics loaded from a file, no batch counted
    net = nn.Sequential(fresh1, trained, counted, no_stats, loaded, fresh2)
    layers = [(str(i), 0) for i in range(6)]
    assert untrained_batch_norm(net, layers) == ["0", "5"]


def test_auto_keeps_pretrained_statistics(source, target):
    X, y = target
    net = source.net_.module_
    mean0, w0 = net[1].running_mean.clone(), net[1].weight.detach().clone()
    ft = FineTuner(net, strategy="full", max_epochs=3, random_state=0).fit(X[:100], y[:100])
    assert ft.bn_modes_ == {"1": "freeze"}
    assert torch.equal(ft.net_.module_[1].running_mean, mean0)
    assert torch.equal(ft.net_.module_[1].weight.detach(), w0)


def test_auto_trains_batch_norm_of_a_network_built_from_scratch(target):
    X, y = target
    ft = FineTuner(mlp_bn, strategy="full", max_epochs=3, random_state=0).fit(X[:100], y[:100])
    assert ft.bn_modes_ == {"1": "train"}
    bn = ft.net_.module_[1]
    assert not torch.equal(bn.running_mean, torch.zeros(32))
    assert not torch.equal(bn.weight.detach(), torch.ones(32))
    # the same as bn="train"
    trained = FineTuner(mlp_bn, strategy="full", bn="train", max_epochs=3,
                        random_state=0).fit(X[:100], y[:100])
    np.testing.assert_array_equal(ft.predict_proba(X[100:]), trained.predict_proba(X[100:]))
    # bn="freeze" still freezes it
    frozen = FineTuner(mlp_bn, strategy="full", bn="freeze", max_epochs=3,
                       random_state=0).fit(X[:100], y[:100])
    assert frozen.bn_modes_ == {"1": "freeze"}
    assert torch.equal(frozen.net_.module_[1].running_mean, torch.zeros(32))


def test_auto_batch_norm_follows_its_group(target):
    """An untrained layer in a group that stays frozen is not updated (eval mode)."""
    X, y = target
    last = FineTuner(mlp_bn, strategy="last", max_epochs=3, random_state=0).fit(X[:60], y[:60])
    assert last.bn_modes_ == {"1": "train"}
    assert torch.equal(last.net_.module_[1].running_mean, torch.zeros(32))
    gradual = FineTuner(mlp_bn, strategy="gradual", unfreeze_every=2, max_epochs=3,
                        random_state=0).fit(X[:60], y[:60])  # the BN group never opens
    assert torch.equal(gradual.net_.module_[1].running_mean, torch.zeros(32))


def test_mixed_pretrained_and_untrained_batch_norm(source, target):
    """A pretrained network with one new batch-norm layer: only that one trains."""
    X, y = target
    net = copy.deepcopy(source.net_.module_)
    net[3] = nn.Sequential(nn.Linear(32, 16), nn.BatchNorm1d(16))  # a new block on top
    ft = FineTuner(net, strategy="full", max_epochs=3, random_state=0).fit(X[:100], y[:100])
    assert ft.bn_modes_ == {"1": "freeze", "3.1": "train"}
    assert torch.equal(ft.net_.module_[1].running_mean, net[1].running_mean)
    assert not torch.equal(ft.net_.module_[3][1].running_mean, torch.zeros(16))


def test_transfer_plan_auto_batch_norm():
    groups = [["a.w", "bn1.weight"], ["b.w", "bn2.weight"], ["head.w"]]
    bn_layers = [("bn1", 0), ("bn2", 1)]
    plan = TransferPlan(groups, bn_layers, "gradual", 1, 1, None, "auto", 0.1, 1.0,
                        bn_train=["bn2"])
    assert plan.bn_modes() == {"bn1": "freeze", "bn2": "train"}
    assert plan.eval_layers(0) == ["bn1", "bn2"]  # bn2's group is still frozen
    assert plan.eval_layers(1) == ["bn1"]
    assert plan.trainable_names(5) == {"a.w", "b.w", "bn2.weight", "head.w"}
    # bn="auto" without a list of untrained layers freezes them all
    plain = TransferPlan(groups, bn_layers, "full", 1, 1, None, "auto", 0.1, 1.0)
    assert plain.eval_layers(0) == ["bn1", "bn2"]
    # a plan pickled before per-layer batch norm still answers
    old = TransferPlan(groups, bn_layers, "full", 1, 1, None, "train", 0.1, 1.0)
    del old.bn_train, old.bn_frozen_params
    assert old.eval_layers(0) == [] and "bn1.weight" in old.trainable_names(0)
    assert old.bn_modes() == {"bn1": "train", "bn2": "train"}


def test_last_keeps_a_kept_pretrained_head_instead_of_refitting_it():
    """head="keep": the pretrained head already answers the target's classes; "last"
    starts from it (no probe), while a new head is fitted by the probe."""
    from sklearn.datasets import load_digits
    from torch import nn

    X, y = load_digits(n_class=5, return_X_y=True)
    X = (X / 16).astype(np.float32)
    torch.manual_seed(0)
    source = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 5))
    kept = FineTuner(source, strategy="last", head="keep", max_epochs=0,
                     random_state=0).fit(X[:25], y[:25])
    head = kept.net_.module_.get_submodule(kept.head_name_)
    assert torch.equal(head.weight, source[2].weight)
    replaced = FineTuner(source, strategy="last", max_epochs=0, random_state=0).fit(X[:25], y[:25])
    assert replaced.score(X[:25], y[:25]) > 0.9  # the probe fitted the new head
