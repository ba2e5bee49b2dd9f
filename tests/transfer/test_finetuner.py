"""FineTuner, FineTunerRegressor and PretrainedFeatures: behaviour, invariants, errors.

Small networks on scikit-learn's 8x8 digits; the real source-to-target
experiments are in test_real_data.py.
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
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer
from torch import nn

from sktransfer.multitask import MultiTaskClassifier
from sktransfer.transfer import FineTuner, FineTunerRegressor, PretrainedFeatures


def make_source(out=5, bn=False):
    layers = [nn.Linear(64, 32)]
    if bn:
        layers.append(nn.BatchNorm1d(32))
    layers += [nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, out)]
    return nn.Sequential(*layers)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


@pytest.fixture(scope="module")
def source(digits):
    """A small MLP pretrained on digits 0-4."""
    X, y = digits
    torch.manual_seed(0)
    ft = FineTuner(make_source(bn=True), strategy="full", head="keep", bn="train", lr=1e-2,
                   max_epochs=30, random_state=0).fit(X[y < 5], y[y < 5])
    return ft


@pytest.fixture(scope="module")
def target(digits):
    X, y = digits
    keep = y >= 5
    return X[keep][:300], y[keep][:300], X[keep][300:], y[keep][300:]


def state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a, b, prefix):
    return all(torch.equal(a[k], b[k]) for k in a if k.startswith(prefix))


# --------------------------------------------------------------------- pretrained
def test_module_instance_is_never_modified_and_clone_starts_from_it(source, target):
    Xtr, ytr, Xte, yte = target
    net = source.net_.module_
    before = state(net)
    ft = FineTuner(net, strategy="last", lr=1e-2, max_epochs=5, random_state=0).fit(Xtr, ytr)
    assert same(before, state(net), "")
    # strategy="last": the backbone is the pretrained one, the head is new.
    after = state(ft.net_.module_)
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("5."))
    # a clone fitted again starts from the pretrained weights, not from ft's
    ft2 = clone(ft).set_params(strategy="full").fit(Xtr, ytr)
    ft3 = FineTuner(net, strategy="full", lr=1e-2, max_epochs=5, random_state=0).fit(Xtr, ytr)
    np.testing.assert_allclose(ft2.predict_proba(Xte), ft3.predict_proba(Xte), atol=1e-6)


def test_frozen_estimator_survives_clone(source, target):
    Xtr, ytr, Xte, _ = target
    before = state(source.net_.module_)
    ft = FineTuner(FrozenEstimator(source), strategy="full", lr=1e-2, max_epochs=5,
                   random_state=0)
    a = clone(ft).fit(Xtr, ytr).predict_proba(Xte)
    b = clone(clone(ft)).fit(Xtr, ytr).predict_proba(Xte)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert same(before, state(source.net_.module_), "")
    assert hasattr(clone(ft).pretrained.estimator, "net_")  # still fitted


def test_bare_fitted_estimator_is_rejected(source, target):
    Xtr, ytr, _, _ = target
    with pytest.raises(TypeError, match="FrozenEstimator"):
        FineTuner(source).fit(Xtr, ytr)
    with pytest.raises(TypeError, match="FrozenEstimator"):
        PretrainedFeatures(source).fit(Xtr)
    with pytest.raises(ValueError, match="not fitted"):
        FineTuner(FrozenEstimator(FineTuner(make_source()))).fit(Xtr, ytr)
    with pytest.raises(TypeError, match="pretrained must be"):
        FineTuner(None).fit(Xtr, ytr)
    with pytest.raises(TypeError, match=r"\(factory, path\)"):
        FineTuner("weights.safetensors").fit(Xtr, ytr)


def test_factory_and_weights_files(source, target, tmp_path):
    Xtr, ytr, Xte, _ = target
    expected = state(source.net_.module_)
    for name in ("w.safetensors", "w.pt"):
        source.save_weights(tmp_path / name)
        ft = FineTuner((lambda: make_source(bn=True), tmp_path / name), head="keep",
                       strategy="full", max_epochs=0).fit(Xtr, ytr)
        assert same(expected, state(ft.net_.module_), "")
    # a factory is called under the seed: reproducible
    a = FineTuner(make_source, max_epochs=2, random_state=3).fit(Xtr, ytr).predict(Xte)
    b = FineTuner(make_source, max_epochs=2, random_state=3).fit(Xtr, ytr).predict(Xte)
    np.testing.assert_array_equal(a, b)


def test_weights_file_that_does_not_match(source, target, tmp_path):
    Xtr, ytr, _, _ = target
    source.save_weights(tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="do not match the architecture"):
        FineTuner((make_source, tmp_path / "w.safetensors")).fit(Xtr, ytr)  # no batch norm


class _Exploit:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_only_file_is_never_unpickled(target, tmp_path):
    Xtr, ytr, _, _ = target
    marker = tmp_path / "pwned"
    weights = tmp_path / "evil.pt"
    with open(weights, "wb") as f:
        pickle.dump({"0.weight": _Exploit(str(marker))}, f)
    for est in (FineTuner((make_source, weights)), PretrainedFeatures((make_source, weights))):
        with pytest.raises(ValueError, match="never unpickled"):
            est.fit(Xtr, ytr)
    assert not marker.exists()


def test_frozen_multitask_and_skorch_sources(digits, target):
    from skorch import NeuralNetClassifier

    X, y = digits
    Xtr, ytr, Xte, yte = target
    mtc = MultiTaskClassifier(hidden_layer_sizes=(32,), max_epochs=10, lr=1e-2,
                              random_state=0).fit(X[y < 5], y[y < 5])
    ft = FineTuner(FrozenEstimator(mtc), strategy="last", lr=1e-2, max_epochs=20,
                   random_state=0).fit(Xtr, ytr)
    assert ft.head_name_ == "head"  # a head was added on the trunk
    assert ft.score(Xte, yte) > 0.6
    feats = PretrainedFeatures(FrozenEstimator(mtc)).fit_transform(Xte)
    assert feats.shape == (len(Xte), 32)

    torch.manual_seed(0)
    sk = NeuralNetClassifier(make_source(), criterion=nn.CrossEntropyLoss, max_epochs=3,
                             lr=0.1, train_split=None, verbose=0)
    sk.fit(X[y < 5], y[y < 5])
    ft = FineTuner(FrozenEstimator(sk), strategy="full", max_epochs=5, lr=1e-2,
                   random_state=0).fit(Xtr, ytr)
    assert ft.head_name_ == "4"


# ------------------------------------------------------------------- strategies
def _changed(ft, pretrained):
    after = state(ft.net_.module_)
    return {g[0].split(".")[0]: not same(pretrained, after, g[0].rsplit(".", 1)[0])
            for g in ft.layer_groups_[:-1]}


def test_layer_groups_follow_the_structure(source):
    assert source.layer_groups_ == [
        ["0.weight", "0.bias", "1.weight", "1.bias"],  # Linear + its BatchNorm
        ["3.weight", "3.bias"],
        ["5.weight", "5.bias"],  # the head
    ]


@pytest.mark.parametrize("strategy, kwargs, expected", [
    ("last", {}, {"0": False, "3": False}),
    ("top", {"n_layers": 1}, {"0": False, "3": True}),
    ("top", {"n_layers": 5}, {"0": True, "3": True}),
    ("full", {}, {"0": True, "3": True}),
    ("full", {"trainable": "0.*"}, {"0": True, "3": False}),
    ("gradual", {"unfreeze_every": 3}, {"0": False, "3": True}),  # 4 epochs: 1 group opened
])
def test_strategies_train_the_right_groups(source, target, strategy, kwargs, expected):
    Xtr, ytr, _, _ = target
    ft = FineTuner(source.net_.module_, strategy=strategy, max_epochs=4, bn="train",
                   random_state=0, **kwargs).fit(Xtr, ytr)
    assert _changed(ft, state(source.net_.module_)) == expected


def test_gradual_unfreezing_schedule(source, target):
    Xtr, ytr, _, _ = target
    ft = FineTuner(source.net_.module_, strategy="gradual", unfreeze_every=2, max_epochs=7,
                   random_state=0).fit(Xtr, ytr)
    assert ft.net_.history[:, "trainable_groups"] == [0, 0, 1, 1, 2, 2, 2]
    n = ft.net_.history[:, "trainable_params"]
    assert n[0] < n[2] < n[4]
    ft.partial_fit(Xtr, ytr)  # the schedule continues
    assert ft.net_.history[-1, "trainable_groups"] == 2


def test_lp_ft_probes_the_head_to_convergence_first(source, target):
    Xtr, ytr, Xte, yte = target
    net = source.net_.module_
    probe = FineTuner(net, strategy="lp_ft", max_epochs=0, random_state=0).fit(Xtr, ytr)
    assert same(state(net), state(probe.net_.module_), "0.")  # backbone untouched
    lin = make_pipeline(PretrainedFeatures(net), LogisticRegression(C=100, max_iter=2000))
    assert probe.score(Xte, yte) > lin.fit(Xtr, ytr).score(Xte, yte) - 0.05
    ft = FineTuner(net, strategy="lp_ft", max_epochs=5, random_state=0).fit(Xtr, ytr)
    groups = ft.net_.optimizer_.param_groups
    # the default rates of lp_ft: the head 1e-2, the backbone ten times lower
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-3, 1e-2])
    assert _changed(ft, state(net)) == {"0": True, "3": True}


def test_discriminative_learning_rates(source, target):
    Xtr, ytr, _, _ = target
    ft = FineTuner(source.net_.module_, strategy="full", lr=0.01, backbone_lr=0.004,
                   layer_lr_decay=0.5, max_epochs=1, random_state=0).fit(Xtr, ytr)
    lrs = [g["lr"] for g in ft.net_.optimizer_.param_groups]
    assert lrs == pytest.approx([0.002, 0.004, 0.01])


def test_l2sp_keeps_the_backbone_near_the_pretrained_weights(source, target):
    Xtr, ytr, _, _ = target
    net = source.net_.module_
    w0 = net[3].weight.detach()

    def drift(alpha):
        ft = FineTuner(net, strategy="full", lr=1e-2, l2sp_alpha=alpha, max_epochs=10,
                       random_state=0).fit(Xtr, ytr)
        return float((ft.net_.module_[3].weight.detach() - w0).norm())

    assert drift(10.0) < 0.5 * drift(0.0)


def test_l2sp_penalty_value():
    from sktransfer.transfer._penalty import L2SP

    w = nn.Parameter(torch.ones(3))
    h = nn.Parameter(torch.full((2,), 2.0))
    pen = L2SP(0.5, 0.1, {"w": torch.zeros(3)}, ["h"])
    value = pen({"w": w, "h": h})
    assert value.item() == pytest.approx(0.5 / 2 * 3 + 0.1 / 2 * 8)
    value.backward()
    torch.testing.assert_close(w.grad, torch.full((3,), 0.5))


def test_batch_norm_frozen_or_trained(source, target):
    Xtr, ytr, _, _ = target
    net = source.net_.module_
    mean0 = net[1].running_mean.clone()
    frozen = FineTuner(net, strategy="full", max_epochs=2, random_state=0).fit(Xtr, ytr)
    assert torch.equal(frozen.net_.module_[1].running_mean, mean0)
    assert torch.equal(frozen.net_.module_[1].weight, net[1].weight)
    trained = FineTuner(net, strategy="full", bn="train", max_epochs=2,
                        random_state=0).fit(Xtr, ytr)
    assert not torch.equal(trained.net_.module_[1].running_mean, mean0)


# ------------------------------------------------------------------------ heads
def test_head_keep_add_and_errors(source, digits, target):
    X, y = digits
    Xtr, ytr, _, _ = target
    net = source.net_.module_
    keep = FineTuner(net, head="keep", strategy="last", max_epochs=1).fit(X[y < 5], y[y < 5])
    assert keep.net_.module_[5].weight.shape == (5, 16)
    with pytest.raises(ValueError, match="head='keep' needs"):
        FineTuner(net, head="keep").fit(X[:50], y[:50])  # 10 classes, 5 outputs
    added = FineTuner(net, head="add", strategy="last", max_epochs=1).fit(Xtr, ytr)
    assert added.head_name_ == "head" and added.layer_groups_[-1] == ["head.weight",
                                                                      "head.bias"]
    # no nn.Linear at all
    conv = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 4, 3), nn.Flatten())
    with pytest.raises(ValueError, match="output layer .* cannot be found"):
        FineTuner(conv).fit(Xtr, ytr)
    assert FineTuner(conv, head="add", max_epochs=1).fit(Xtr, ytr).predict(Xtr[:3]).shape == (3,)
    # something after the last Linear
    soft = nn.Sequential(make_source(), nn.Softmax(dim=1))
    with pytest.raises(ValueError, match="not what the network returns"):
        FineTuner(soft).fit(Xtr, ytr)
    with pytest.raises(ValueError, match="not a submodule"):
        FineTuner(net, head_name="nope").fit(Xtr, ytr)
    named = FineTuner(net, head_name="5", max_epochs=1).fit(Xtr, ytr)
    assert named.head_name_ == "5"


@pytest.mark.parametrize("params, err", [
    ({"strategy": "everything"}, ValueError),
    ({"head": "new"}, ValueError),
    ({"bn": "eval"}, ValueError),
    ({"n_layers": -1}, ValueError),
    ({"n_layers": 1.5}, TypeError),
    ({"unfreeze_every": 0}, ValueError),
    ({"backbone_lr": -1.0}, ValueError),
    ({"l2sp_alpha": -1.0}, ValueError),
    ({"trainable": 3}, TypeError),
    ({"trainable": "nothing.*"}, ValueError),
    ({"lr": 0}, ValueError),
    ({"net_params": {"optimizer__param_groups": []}}, ValueError),
])
def test_bad_parameters_raise_errors(source, target, params, err):
    Xtr, ytr, _, _ = target
    with pytest.raises(err):
        FineTuner(source.net_.module_, max_epochs=1, **params).fit(Xtr, ytr)


def test_failed_fit_leaves_the_fitted_model(source, target):
    Xtr, ytr, Xte, _ = target
    ft = FineTuner(source.net_.module_, max_epochs=2, random_state=0).fit(Xtr, ytr)
    before = ft.predict_proba(Xte)
    with pytest.raises(ValueError):
        ft.set_params(strategy="bad").fit(Xtr, ytr)
    with pytest.raises(ValueError):
        ft.set_params(strategy="full").fit(Xtr[:, :10], ytr)
    np.testing.assert_array_equal(ft.predict_proba(Xte), before)


# ---------------------------------------------------------- fit / partial_fit / io
def test_partial_fit_continues(source, target):
    Xtr, ytr, Xte, yte = target
    ft = FineTuner(source.net_.module_, strategy="full", lr=1e-2, max_epochs=2, random_state=0)
    ft.partial_fit(Xtr[:100], ytr[:100], classes=np.arange(5, 10))
    w1 = state(ft.net_.module_)
    ft.partial_fit(Xtr[100:], ytr[100:])
    assert len(ft.net_.history) == 4
    assert not same(w1, state(ft.net_.module_), "")
    with pytest.raises(ValueError, match="not in classes"):
        ft.partial_fit(Xtr[:10], np.zeros(10, dtype=int))
    with pytest.raises(ValueError, match="sample shape|features"):
        ft.partial_fit(Xtr[:10, :5], ytr[:10])
    assert ft.score(Xte, yte) > 0.8


def test_pickle_round_trip(source, target):
    Xtr, ytr, Xte, _ = target
    ft = FineTuner(source.net_.module_, strategy="gradual", l2sp_alpha=0.1, max_epochs=3,
                   random_state=0).fit(Xtr, ytr)
    ft2 = pickle.loads(pickle.dumps(ft))
    np.testing.assert_array_equal(ft2.predict_proba(Xte), ft.predict_proba(Xte))
    ft.partial_fit(Xtr, ytr)
    ft2.partial_fit(Xtr, ytr)
    np.testing.assert_allclose(ft2.predict_proba(Xte), ft.predict_proba(Xte), atol=1e-6)


def test_reproducible_and_global_rng_untouched(source, target):
    Xtr, ytr, Xte, _ = target
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a = FineTuner(source.net_.module_, strategy="full", max_epochs=2,
                  random_state=7).fit(Xtr, ytr).predict_proba(Xte)
    assert torch.equal(torch.rand(1), expected)
    b = FineTuner(source.net_.module_, strategy="full", max_epochs=2,
                  random_state=7).fit(Xtr, ytr).predict_proba(Xte)
    np.testing.assert_array_equal(a, b)


def test_regressor_learns_a_two_output_linear_target(digits):
    X, _ = digits
    rng = np.random.RandomState(0)
    coef = rng.randn(64, 2).astype(np.float32)
    Y = X @ coef
    torch.manual_seed(0)
    src = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))
    reg = FineTunerRegressor(src, strategy="full", lr=1e-2, max_epochs=60, random_state=0)
    reg.fit(X[:1200], Y[:1200])
    assert reg.predict(X[1200:]).shape == (len(X) - 1200, 2)
    assert reg.score(X[1200:], Y[1200:]) > 0.8
    one = clone(reg).set_params(head="keep", strategy="lp_ft", max_epochs=5)
    with pytest.raises(ValueError, match="head='keep' needs"):
        one.fit(X, Y[:, 0])
    one.set_params(head="replace").fit(X[:1200], Y[:1200, 0])
    assert one.predict(X[:3]).shape == (3,)
    assert one.score(X[1200:], Y[1200:, 0]) > 0.8


# --------------------------------------------------------------- PretrainedFeatures
def test_pretrained_features_equal_the_frozen_layers_outputs(source, target):
    Xtr, ytr, Xte, yte = target
    net = source.net_.module_
    pf = PretrainedFeatures(net, batch_size=7).fit(Xtr)
    Z = pf.transform(Xte)
    assert Z.shape == (len(Xte), 16) and Z.dtype == np.float32
    with torch.no_grad():
        ref = net.eval()[:5](torch.as_tensor(Xte)).numpy()
    np.testing.assert_allclose(Z, ref, atol=1e-5)
    assert PretrainedFeatures(net, layer="1").fit_transform(Xte).shape == (len(Xte), 32)
    assert list(pf.get_feature_names_out())[:2] == ["pretrainedfeatures0", "pretrainedfeatures1"]
    with pytest.raises(ValueError, match="not a submodule"):
        PretrainedFeatures(net, layer="9").fit(Xtr)
    conv = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 4, 3), nn.Flatten())
    with pytest.raises(ValueError, match="pass layer="):
        PretrainedFeatures(conv).fit(Xtr)
    probe = make_pipeline(PretrainedFeatures(net), LogisticRegression(max_iter=2000))
    assert probe.fit(Xtr, ytr).score(Xte, yte) > 0.75
    pf2 = pickle.loads(pickle.dumps(pf))
    np.testing.assert_array_equal(pf2.transform(Xte), Z)
    assert all(not p.requires_grad for p in pf.module_.parameters())
    assert all(p.requires_grad for p in copy.deepcopy(net).parameters())


def test_grid_search_over_strategy_and_lr(source, target):
    Xtr, ytr, Xte, yte = target
    pipe = Pipeline([
        ("scale", FunctionTransformer(lambda X: X.astype(np.float32))),
        ("ft", FineTuner(FrozenEstimator(source), max_epochs=5, random_state=0)),
    ])
    search = GridSearchCV(pipe, {"ft__strategy": ["last", "full", "lp_ft"],
                                 "ft__lr": [1e-3, 1e-2]}, cv=2)
    search.fit(Xtr, ytr)
    assert len(search.cv_results_["params"]) == 6
    assert search.best_params_["ft__strategy"] in ("last", "full", "lp_ft")
    assert search.score(Xte, yte) > 0.8


def test_transfer_plan_schedule_and_batch_norm_layers():
    from sktransfer.transfer._strategies import TransferPlan

    groups = [["a.w", "bn1.weight"], ["b.w", "bn2.weight"], ["c.w"], ["head.w"]]
    bn_layers = [("bn1", 0), ("bn2", 1)]

    def plan(strategy, bn="train", trainable=None, **kw):
        kw = {"n_layers": 1, "unfreeze_every": 2, **kw}
        return TransferPlan(groups, bn_layers, strategy, kw["n_layers"], kw["unfreeze_every"],
                            trainable, bn, 0.5, 0.1)

    assert plan("last").trainable_names(5) == {"head.w"}
    assert plan("top").trainable_names(0) == {"c.w", "head.w"}
    assert plan("top", n_layers=2).trainable_names(0) == {"b.w", "bn2.weight", "c.w", "head.w"}
    gradual = plan("gradual")
    assert [gradual.n_open(e) for e in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert gradual.eval_layers(0) == ["bn1", "bn2"]
    assert gradual.eval_layers(4) == ["bn1"]
    assert gradual.eval_layers(6) == []
    assert plan("full", bn="freeze").eval_layers(0) == ["bn1", "bn2"]
    assert "bn1.weight" not in plan("full", bn="freeze").trainable_names(0)
    assert plan("full", trainable=["a.*"]).trainable_names(0) == {"a.w", "head.w"}
    assert plan("gradual", trainable=["a.*", "c.*"]).trainable_names(2) == {"c.w", "head.w"}
    # head 1, top group 0.5, then x0.1 per group down
    assert plan("full").lr_scales == pytest.approx([0.005, 0.05, 0.5, 1.0])
    with pytest.raises(ValueError, match="match no backbone parameter"):
        plan("full", trainable=["z*"])


# ------------------------------------------------------------ strategy objects
def _digits_small():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32)[:200], y[:200]


def _mlp_source():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                         nn.Linear(16, 5))


@pytest.mark.parametrize("name, obj", [
    ("last", "LastLayer()"), ("top", "TopLayers(n_layers=2)"), ("full", "FullFineTuning()"),
    ("gradual", "GradualUnfreezing(unfreeze_every=2)"), ("lp_ft", "LPFT()")])
def test_a_strategy_object_trains_as_its_name(name, obj):
    from sktransfer import transfer

    X, y = _digits_small()
    kw = dict(max_epochs=4, random_state=0)
    by_name = FineTuner(_mlp_source, strategy=name, n_layers=2, unfreeze_every=2, **kw)
    by_object = FineTuner(_mlp_source, strategy=eval(obj, vars(transfer)), **kw)
    a, b = by_name.fit(X, y), by_object.fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.net_.history[:, "trainable_groups"] == b.net_.history[:, "trainable_groups"]
    assert type(a.strategy_) is type(b.strategy_)
    assert b.strategy_ is not b.strategy  # a fitted copy, not the hyperparameter


def test_a_custom_strategy_plugs_in_and_is_searchable():
    from sklearn.model_selection import GridSearchCV

    from sktransfer.transfer import TopLayers, TransferStrategy

    class EveryOtherEpoch(TransferStrategy):
        """The whole backbone trains in odd epochs, only the head in even ones."""

        def n_open(self, epoch, n_groups):
            return n_groups if epoch % 2 else 0

    X, y = _digits_small()
    ft = FineTuner(_mlp_source, strategy=EveryOtherEpoch(), max_epochs=4, random_state=0)
    ft.fit(X, y)
    assert ft.net_.history[:, "trainable_groups"] == [0, 2, 0, 2]
    assert ft.lr_ == EveryOtherEpoch.default_rates[0]
    search = GridSearchCV(FineTuner(_mlp_source, strategy=TopLayers(), max_epochs=3,
                                    random_state=0),
                          {"strategy__n_layers": [0, 2]}, cv=2).fit(X, y)
    assert sorted(search.cv_results_["param_strategy__n_layers"]) == [0, 2]
    with pytest.raises(ValueError, match="n_layers"):
        FineTuner(_mlp_source, strategy=TopLayers(n_layers=-1)).fit(X, y)


def test_transfer_strategies_registry_and_old_plans():
    from sktransfer.transfer import STRATEGIES, TransferStrategy
    from sktransfer.transfer._plan import TransferPlan

    assert sorted(STRATEGIES) == ["bitfit", "full", "gradual", "last", "lora", "lp_ft", "top"]
    assert all(issubclass(cls, TransferStrategy) for cls in STRATEGIES.values())
    groups = [["a.w"], ["b.w"], ["head.w"]]
    plan = TransferPlan(groups, [], "gradual", 1, 2, None, "freeze", 1.0, 1.0)
    plan.strategy = "gradual"  # as a plan pickled before the strategy objects
    assert [plan.n_open(e) for e in range(5)] == [0, 0, 1, 1, 2]
    # the old module path of the plan still resolves for old pickles
    from sktransfer.transfer import _strategies

    assert _strategies.TransferPlan is TransferPlan


def test_estimators_hand_over_their_backbone_through_a_public_method():
    from sklearn.frozen import FrozenEstimator

    from sktransfer import MultiTaskClassifier
    from sktransfer.continual import ContinualClassifier

    X, y = _digits_small()
    Y = np.column_stack([y, y % 2])
    mt = MultiTaskClassifier(hidden_layer_sizes=(16,), max_epochs=2, random_state=0).fit(X, Y)
    trunk, has_output = mt.get_pretrained_module()
    assert has_output is False and trunk is not mt.net_.module_.model.trunk
    assert trunk(torch.as_tensor(X[:3])).shape == (3, 16)
    ft = FineTuner(FrozenEstimator(mt), strategy="last", random_state=0).fit(X, y)
    assert ft.score(X, y) > 0.5
    cross = MultiTaskClassifier(architecture="cross_stitch", hidden_layer_sizes=(16,),
                                max_epochs=1, random_state=0).fit(X, Y)
    with pytest.raises(ValueError, match="architecture='hard'"):
        cross.get_pretrained_module()
    cl = ContinualClassifier(hidden_layer_sizes=(16,), max_epochs=1, random_state=0).fit(X, y)
    module, has_output = cl.get_pretrained_module()
    assert has_output and module is not cl.net_.module_


def test_pretrained_features_saves_and_loads_its_weights(tmp_path):
    X, _ = _digits_small()
    a = PretrainedFeatures(_mlp_source, random_state=0).fit(X)
    b = PretrainedFeatures(_mlp_source, random_state=1).fit(X)
    assert not np.allclose(a.transform(X), b.transform(X))
    a.save_weights(tmp_path / "features.safetensors")
    b.load_weights(tmp_path / "features.safetensors")
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    assert a.get_pretrained_module()[1] is True
