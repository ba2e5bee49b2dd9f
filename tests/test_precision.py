"""``precision="bf16"``: bfloat16 mixed precision for the skorch-trained estimators.

The forward passes must really run in bfloat16 (checked with a hook), the
weights, losses and outputs stay float32, learning matches float32 within a
small margin, and the parameter clones, pickles, grid-searches and rejects bad
values like any other.
"""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, KFold
from torch import nn

from sktransfer import (
    ContinualClassifier,
    EWCContinualClassifier,
    FineTuner,
    FineTunerRegressor,
    MultiTaskClassifier,
    MultiTaskRegressor,
    ProgressiveNetworkClassifier,
)
from sktransfer.base import AutocastMixin
from sktransfer.multitask import WEIGHTINGS


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


def _linear_dtypes(module, training_only=True):
    """Record the output dtype of every Linear layer's forward (while training)."""
    seen = set()

    def hook(mod, args, out):
        if mod.training or not training_only:
            seen.add(out.dtype)

    for m in module.modules():
        if isinstance(m, nn.Linear):
            m.register_forward_hook(hook)
    return seen


class RecordingMLP(nn.Module):
    """A trunk that records the dtype its layer computes in while training."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(64, 32)
        self.seen = set()

    def forward(self, X):
        out = self.linear(X)
        if self.training:
            self.seen.add(out.dtype)
        return torch.relu(out)


def _source():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def _multitask_y(y):
    return np.stack([y % 2, (y > 4).astype(int)], axis=1)


CASES = {
    "multitask": lambda p: MultiTaskClassifier(module=RecordingMLP(), max_epochs=4,
                                               random_state=0, precision=p),
    "continual": lambda p: ContinualClassifier(module=RecordingMLP(), strategy="ewc", lr=1e-2,
                                               max_epochs=6, random_state=0, precision=p),
    "ewc": lambda p: EWCContinualClassifier(module=RecordingMLP(), lr=1e-2, max_epochs=6,
                                            random_state=0, precision=p),
    "finetuner": lambda p: FineTuner(_source(), strategy="full", lr=1e-2, max_epochs=4,
                                     random_state=0, precision=p),
}


def _fit(name, est, X, y):
    if name == "multitask":
        return est.fit(X, _multitask_y(y))
    return est.fit(X, y)


def _score(name, est, X, y):
    return est.score(X, _multitask_y(y) if name == "multitask" else y)


def _trained_dtypes(est):
    """Dtypes the RecordingMLP trunk computed in while training (None: no such trunk)."""
    trunks = [m for m in est.net_.module_.modules() if isinstance(m, RecordingMLP)]
    return trunks[0].seen if trunks else None


@pytest.mark.parametrize("name", CASES)
def test_bf16_forward_runs_in_bfloat16_and_learns(name, digits):
    X, y = digits
    Xtr, ytr, Xte, yte = X[:1200], y[:1200], X[1200:], y[1200:]
    fp32 = _fit(name, CASES[name]("fp32"), Xtr, ytr)
    bf16 = _fit(name, CASES[name]("bf16"), Xtr, ytr)
    if name != "finetuner":  # training ran in bfloat16, float32 stayed float32
        assert _trained_dtypes(bf16) == {torch.bfloat16}
        assert _trained_dtypes(fp32) == {torch.float32}
    seen = _linear_dtypes(bf16.net_.module_, training_only=False)
    proba = bf16.predict_proba(Xte[:5])
    assert seen == {torch.bfloat16}  # and so does prediction
    # weights stay float32, outputs are float32 probabilities
    assert all(p.dtype == torch.float32 for p in bf16.net_.module_.parameters())
    proba = proba[0] if isinstance(proba, list) else proba
    assert proba.dtype == np.float32 and np.allclose(proba.sum(1), 1, atol=1e-3)
    a32, a16 = _score(name, fp32, Xte, yte), _score(name, bf16, Xte, yte)
    assert a16 > 0.5 and abs(a16 - a32) < 0.05, (a32, a16)


@pytest.mark.parametrize("weighting", sorted(set(WEIGHTINGS) - {"static"}))
def test_every_weighting_trains_in_bf16(weighting, digits):
    X, y = digits
    clf = MultiTaskClassifier(weighting=weighting, hidden_layer_sizes=(32,), max_epochs=2,
                              batch_size=128, random_state=0, precision="bf16")
    clf.fit(X[:600], _multitask_y(y[:600]))
    losses = np.asarray(clf.net_.history[:, "train_loss"])
    assert np.isfinite(losses).all()
    assert clf.score(X[600:900], _multitask_y(y[600:900])) > 0.6


def test_bf16_regression_and_progressive(digits):
    X, y = digits
    reg = MultiTaskRegressor(hidden_layer_sizes=(32,), max_epochs=5, random_state=0,
                             precision="bf16")
    Y = np.stack([y, y % 3], axis=1).astype(np.float32)
    reg.fit(X[:1000], Y[:1000])
    pred = reg.predict(X[1000:])
    assert pred.shape == (797, 2) and np.isfinite(pred).all()
    assert reg.score(X[1000:], Y[1000:]) > 0.3
    ft = FineTunerRegressor(_source(), strategy="full", lr=1e-2, max_epochs=5, random_state=0,
                            precision="bf16").fit(X[:1000], y[:1000].astype(np.float32))
    assert ft.score(X[1000:], y[1000:].astype(np.float32)) > 0.3
    pnn = ProgressiveNetworkClassifier(hidden_layer_sizes=(16,), max_epochs=3, random_state=0,
                                       precision="bf16")
    t = (y >= 5).astype(int)
    pnn.fit(X[:1200], y[:1200], task_ids=t[:1200])
    # 5 classes per task (chance 0.2) after 3 epochs of a 16-unit column: seeds 0-5 give
    # 0.39-0.66 in fp32 and the same to 0.01 in bf16
    assert pnn.score(X[1200:], y[1200:], task_ids=t[1200:]) > 0.4


def test_bf16_is_reproducible_clones_and_pickles(digits):
    X, y = digits
    Y = _multitask_y(y[:600])
    est = MultiTaskClassifier(hidden_layer_sizes=(16,), max_epochs=2, random_state=3,
                              precision="bf16")
    a = est.fit(X[:600], Y).predict_proba(X[:50])
    b = clone(est).fit(X[:600], Y).predict_proba(X[:50])
    np.testing.assert_array_equal(a[0], b[0])
    restored = pickle.loads(pickle.dumps(est))
    assert restored.precision == "bf16" and restored.net_.precision == "bf16"
    np.testing.assert_array_equal(restored.predict_proba(X[:50])[0], a[0])


def test_precision_is_a_searchable_hyperparameter(digits):
    X, y = digits
    search = GridSearchCV(
        MultiTaskClassifier(hidden_layer_sizes=(16,), max_epochs=2, random_state=0),
        {"precision": ["fp32", "bf16"]}, cv=KFold(2))
    search.fit(X[:400], _multitask_y(y[:400]))
    assert search.cv_results_["params"] == [{"precision": "fp32"}, {"precision": "bf16"}]
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


@pytest.mark.parametrize("bad", ["fp16", "16", "float32", None, 16])
def test_bad_precision_is_a_clear_error_and_leaves_no_state(bad, digits):
    X, y = digits
    clf = MultiTaskClassifier(max_epochs=1, precision=bad)
    with pytest.raises(ValueError, match="The 'precision' parameter of MultiTaskClassifier must "
                       "be a str among"):
        clf.fit(X[:100], _multitask_y(y[:100]))
    assert not hasattr(clf, "net_")
    with pytest.raises(ValueError, match="precision"):
        EWCContinualClassifier(max_epochs=1, precision=bad).fit(X[:100], y[:100])


def test_autocast_mixin_casts_outputs_back_to_float32():
    from skorch import NeuralNet

    class Net(AutocastMixin, NeuralNet):
        pass

    net = Net(nn.Linear(4, 3), criterion=nn.MSELoss, precision="bf16", max_epochs=0)
    net.initialize()
    out = net.infer(torch.ones(2, 4))
    assert out.dtype == torch.float32
    with net.autocast():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.is_autocast_enabled("cpu")
    net.set_params(precision="fp32")
    with net.autocast():
        assert not torch.is_autocast_enabled("cpu")
