"""SimpleShotClassifier: nearest centroid on centred, L2-normalised features."""


import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from sktransfer.meta import BaselineFewShotClassifier, SimpleShotClassifier
from sktransfer.metrics import few_shot_score
from tests._data import needs_omniglot


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    return SimpleShotClassifier(max_epochs=5, random_state=0).fit(X[y < 5], y[y < 5])


def _embed(est, X):
    module = est.net_.module_.eval()
    with torch.no_grad():
        return module.embed(torch.as_tensor(X)).double().numpy()


@pytest.mark.parametrize("normalization", ["cl2n", "l2n", "none"])
def test_centroids_and_predictions_match_numpy(fitted, digits, normalization):
    X, y = digits
    est = fitted.set_params(normalization=normalization)
    base = _embed(est, X[y < 5])
    mean = base.mean(0)
    np.testing.assert_allclose(est.feature_mean_, mean, rtol=1e-4, atol=1e-5)

    def transform(f):
        if normalization == "cl2n":
            f = f - mean
        if normalization != "none":
            f = f / np.linalg.norm(f, axis=1, keepdims=True)
        return f

    Xs, ys = X[y >= 5][:25], y[y >= 5][:25]
    Xq = X[y >= 5][25:]
    adapted = est.adapt(Xs, ys)
    zs, zq = transform(_embed(est, Xs)), transform(_embed(est, Xq))
    classes = np.unique(ys)
    centroids = np.stack([zs[ys == c].mean(0) for c in classes])
    np.testing.assert_allclose(adapted.adapted_state_["centroids"].numpy(), centroids,
                               rtol=1e-4, atol=1e-5)
    d2 = ((zq[:, None, :] - centroids[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(adapted.predict(Xq), classes[d2.argmin(1)])
    proba = adapted.predict_proba(Xq)
    np.testing.assert_allclose(proba, np.exp(-d2 - (-d2).max(1, keepdims=True))
                               / np.exp(-d2 - (-d2).max(1, keepdims=True)).sum(1, keepdims=True),
                               rtol=1e-3, atol=1e-5)
    fitted.set_params(normalization="cl2n")


def test_trains_like_baseline(digits):
    """The same training: the trunk equals Baseline's with the same seed."""
    X, y = digits
    kw = dict(max_epochs=2, random_state=0)
    simple = SimpleShotClassifier(**kw).fit(X[y < 5], y[y < 5])
    base = BaselineFewShotClassifier(**kw).fit(X[y < 5], y[y < 5])
    for a, b in zip(simple.net_.module_.trunk.parameters(), base.net_.module_.trunk.parameters()):
        assert torch.equal(a, b)


def test_predict_after_fit_uses_base_centroids(fitted, digits):
    X, y = digits
    assert list(fitted.classes_) == [0, 1, 2, 3, 4]
    assert fitted.adapted_state_["centroids"].shape[0] == 5
    assert fitted.score(X[y < 5], y[y < 5]) > 0.9


def test_sample_weight_weighs_the_mean(digits):
    X, y = digits
    X, y = X[y < 3][:60], y[y < 3][:60]
    w = np.ones(len(y))
    w[y == 0] = 3.0
    est = SimpleShotClassifier(max_epochs=1, random_state=0).fit(X, y, sample_weight=w)
    f = _embed(est, X)
    np.testing.assert_allclose(est.feature_mean_, (w[:, None] * f).sum(0) / w.sum(),
                               rtol=1e-4, atol=1e-5)


def test_learns_new_digits(fitted, digits):
    X, y = digits
    mean, _ = few_shot_score(fitted, X[y >= 5], y[y >= 5], n_way=5, k_shot=5, n_query=10,
                             n_episodes=20, random_state=0)
    assert mean > 0.6, mean  # chance 0.2


def test_bad_input(fitted, digits):
    X, y = digits
    with pytest.raises(ValueError, match="normalization"):
        SimpleShotClassifier(normalization="l1").fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="64 features"):
        fitted.adapt(X[:10, :10], y[:10])
    with pytest.raises(ValueError, match="at least 2 classes"):
        fitted.adapt(X[y == 5][:5], y[y == 5][:5])
    with pytest.raises(TypeError):
        fitted.adapt(X[:10], y[:10], X_query=X[:5])




@needs_omniglot
def test_simpleshot_on_real_omniglot():
    from sktransfer.datasets import load_omniglot
    from sktransfer.modules import Conv4

    data = load_omniglot("background_small1")
    X, y, groups = data.data, data.target, data.groups
    train = np.isin(groups, np.unique(groups)[:4])
    est = SimpleShotClassifier(max_epochs=3, module=lambda: Conv4(hidden_channels=16),
                               random_state=0).fit(X[train], y[train])
    mean, ci = few_shot_score(est, X[~train], y[~train], n_way=5, k_shot=1, n_query=5,
                              n_episodes=30, random_state=0)
    assert mean > 0.5, (mean, ci)  # chance 0.2
