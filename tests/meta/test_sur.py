"""SURClassifier: per-task selection weights over several frozen feature extractors."""


import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.frozen import FrozenEstimator
from torch import nn

from sktransfer.meta import BaselineFewShotClassifier, PrototypicalClassifier, SURClassifier
from sktransfer.metrics import few_shot_score
from tests._data import needs_omniglot


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


class Noise(nn.Module):
    """Pseudo-random features of each row, unrelated to its class (a fixed table
    indexed by a hash of the row)."""

    def __init__(self, dim=2, size=1009):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("table", torch.randn(size, dim, generator=g))
        self.size = size

    def forward(self, X):
        return self.table[(X.flatten(1).sum(1) * 1e4).long() % self.size]


def _cosine_nearest_centroid(F_s, ys, F_q):
    F_s = F_s / np.linalg.norm(F_s, axis=1, keepdims=True)
    F_q = F_q / np.linalg.norm(F_q, axis=1, keepdims=True)
    classes = np.unique(ys)
    c = np.stack([F_s[ys == k].mean(0) for k in classes])
    c = c / np.linalg.norm(c, axis=1, keepdims=True)
    return classes[(F_q @ c.T).argmax(1)], F_q @ c.T


def test_one_extractor_is_cosine_nearest_centroid(digits):
    X, y = digits
    proj = nn.Linear(64, 16)
    sur = SURClassifier(extractors=[proj], random_state=0).fit(X[y < 5], y[y < 5])
    assert sur.n_extractors_ == 1 and len(sur.domains_) == 0
    Xs, ys, Xq = X[y >= 5][:25], y[y >= 5][:25], X[y >= 5][25:]
    adapted = sur.adapt(Xs, ys)
    with torch.no_grad():
        F_s, F_q = proj(torch.as_tensor(Xs)).double().numpy(), proj(
            torch.as_tensor(Xq)).double().numpy()
    pred, cos = _cosine_nearest_centroid(F_s, ys, F_q)
    np.testing.assert_array_equal(adapted.predict(Xq), pred)
    proba = np.exp(10 * cos)
    np.testing.assert_allclose(adapted.predict_proba(Xq), proba / proba.sum(1, keepdims=True),
                               rtol=1e-4, atol=1e-5)
    # the user's module is copied, not trained or changed
    assert all(p.requires_grad for p in proj.parameters())


def test_noise_extractor_is_down_weighted(digits):
    X, y = digits
    sur = SURClassifier(extractors=[nn.Flatten(), Noise()], random_state=0).fit(X[y < 5],
                                                                                y[y < 5])
    adapted = sur.adapt(X[y >= 5][:50], y[y >= 5][:50])
    signal, noise = adapted.adapted_state_["lambdas"].tolist()
    assert signal > 0.7 and noise < 0.3, (signal, noise)
    selected, _ = few_shot_score(sur, X[y >= 5], y[y >= 5], n_way=5, k_shot=5, n_query=10,
                                 n_episodes=10, random_state=0)
    fixed, _ = few_shot_score(sur.set_params(selection_steps=0), X[y >= 5], y[y >= 5],
                              n_way=5, k_shot=5, n_query=10, n_episodes=10, random_state=0)
    assert selected > fixed + 0.2, (selected, fixed)


def test_trains_one_extractor_per_domain_and_takes_fitted_ones(digits):
    X, y = digits
    base = X[y < 6], y[y < 6]
    proto = PrototypicalClassifier(max_epochs=1, episodes_per_epoch=5, random_state=0).fit(
        *base)
    sur = SURClassifier(extractors=[FrozenEstimator(proto)], max_epochs=2, random_state=0)
    sur.fit(*base, groups=base[1] // 3)
    assert sur.n_extractors_ == 3 and sur.domains_.tolist() == [0, 1]
    # the given extractor is the fitted network's embedding, unchanged
    with torch.no_grad():
        expected = proto.net_.module_.eval().embed(torch.as_tensor(X[:5]))
        got = sur.net_.module_.extractors[0].eval()(torch.as_tensor(X[:5]))
    torch.testing.assert_close(got, expected)
    # a domain extractor is the trunk of a Baseline++ fitted on that domain's rows
    again = clone(sur).fit(*base, groups=base[1] // 3)
    for a, b in zip(sur.net_.module_.parameters(), again.net_.module_.parameters()):
        assert torch.equal(a, b)
    assert clone(sur).extractors[0] is sur.extractors[0]  # FrozenEstimator survives clone
    mean, _ = few_shot_score(sur, X[y >= 6], y[y >= 6], n_way=4, k_shot=5, n_query=10,
                             n_episodes=10, random_state=0)
    assert mean > 0.6, mean  # chance 0.25


def test_bad_input(digits):
    X, y = digits
    fitted = BaselineFewShotClassifier(max_epochs=1, random_state=0).fit(X[:100], y[:100])
    with pytest.raises(TypeError, match="FrozenEstimator"):
        SURClassifier(extractors=[fitted]).fit(X[:100], y[:100])
    with pytest.raises(TypeError, match=r"extractors\[0\] must be an nn.Module"):
        SURClassifier(extractors=["resnet"]).fit(X[:100], y[:100])
    with pytest.raises(ValueError, match="not fitted"):
        SURClassifier(extractors=[FrozenEstimator(BaselineFewShotClassifier())]).fit(
            X[:100], y[:100])
    with pytest.raises(ValueError, match=r"extractor 0 does not fit.*\(64,\)"):
        SURClassifier(extractors=[nn.Linear(10, 4)]).fit(X[:100], y[:100])
    with pytest.raises(ValueError, match="fewer than 2 classes"):
        SURClassifier(max_epochs=1).fit(X[:100], y[:100], groups=(y[:100] == 0))
    with pytest.raises(ValueError, match="init_lambda"):
        SURClassifier(init_lambda=1.0).fit(X[:100], y[:100])
    with pytest.raises(ValueError, match="at least 2 classes"):
        SURClassifier(max_epochs=1).fit(X[:100], np.zeros(100))




@needs_omniglot
def test_sur_on_real_omniglot():
    from sktransfer.datasets import load_omniglot
    from sktransfer.modules import Conv4

    data = load_omniglot("background_small1")
    X, y, groups = data.data, data.target, data.groups
    alphabets = np.unique(groups)
    train = np.isin(groups, alphabets[:4])
    domains = np.searchsorted(alphabets, groups) // 2  # two domains of two alphabets
    sur = SURClassifier(max_epochs=2, module=lambda: Conv4(hidden_channels=16),
                        random_state=0).fit(X[train], y[train], groups=domains[train])
    assert sur.n_extractors_ == 2
    mean, ci = few_shot_score(sur, X[~train], y[~train], n_way=5, k_shot=1, n_query=5,
                              n_episodes=30, random_state=0)
    assert mean > 0.5, (mean, ci)  # chance 0.2
