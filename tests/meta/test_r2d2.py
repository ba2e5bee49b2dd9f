"""R2D2Classifier: the closed-form ridge head, meta-trained through the episodic skeleton."""


import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import Ridge

from sktransfer.meta import R2D2Classifier
from sktransfer.meta._r2d2 import ridge_weights
from sktransfer.metrics import few_shot_score
from tests._data import needs_omniglot


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    return R2D2Classifier(max_epochs=3, random_state=0).fit(X[y < 5], y[y < 5])


def test_woodbury_head_equals_ridge():
    rng = np.random.RandomState(0)
    fs = rng.randn(12, 30)          # n < d: the case the Woodbury form is for
    ys = np.repeat(np.arange(4), 3)
    lam = 0.7
    W = ridge_weights(torch.as_tensor(fs), torch.as_tensor(ys), 4,
                      torch.tensor(lam, dtype=torch.float64)).numpy()
    Y = np.eye(4)[ys]
    ridge = Ridge(alpha=lam, fit_intercept=False).fit(fs, Y)
    np.testing.assert_allclose(W, ridge.coef_.T, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(W, np.linalg.solve(fs.T @ fs + lam * np.eye(30), fs.T @ Y),
                               rtol=1e-8, atol=1e-10)


def test_adapted_head_is_ridge_on_the_support_embeddings(fitted, digits):
    X, y = digits
    module = fitted.net_.module_
    Xs, ys = X[y >= 5][:25], y[y >= 5][:25]
    Xq = X[y >= 5][25:60]
    adapted = fitted.adapt(Xs, ys)
    module.eval()
    with torch.no_grad():
        fs = module.embed(torch.as_tensor(Xs)).double().numpy()
        fq = module.embed(torch.as_tensor(Xq)).double().numpy()
    lam = float(module.log_lambda.detach().exp())
    classes, ys_enc = np.unique(ys, return_inverse=True)
    ridge = Ridge(alpha=lam, fit_intercept=False).fit(fs, np.eye(len(classes))[ys_enc])
    np.testing.assert_allclose(adapted.adapted_state_["weights"].numpy(), ridge.coef_.T,
                               rtol=1e-3, atol=1e-4)
    scale, bias = float(module.log_scale.detach().exp()), float(module.bias.detach())
    logits = scale * ridge.predict(fq) + bias
    np.testing.assert_array_equal(adapted.predict(Xq), classes[logits.argmax(1)])


def test_lambda_scale_and_bias_are_meta_learned(fitted):
    module = fitted.net_.module_
    assert module.log_lambda.requires_grad and module.log_scale.requires_grad
    assert float(module.log_lambda.detach()) != 0.0 and float(module.log_scale.detach()) != 0.0
    assert float(module.bias.detach()) != 0.0
    assert np.isfinite(fitted.net_.history[-1, "train_loss"])


def test_initial_values(digits):
    X, y = digits
    est = R2D2Classifier(ridge_lambda=0.1, scale=5.0, max_epochs=1, episodes_per_epoch=1,
                         lr=1e-12, random_state=0).fit(X[y < 5], y[y < 5])
    module = est.net_.module_
    assert float(module.log_lambda.detach().exp()) == pytest.approx(0.1, rel=1e-4)
    assert float(module.log_scale.detach().exp()) == pytest.approx(5.0, rel=1e-4)


def test_learns_new_digits(fitted, digits):
    X, y = digits
    mean, _ = few_shot_score(fitted, X[y >= 5], y[y >= 5], n_way=5, k_shot=5, n_query=10,
                             n_episodes=20, random_state=0)
    assert mean > 0.6, mean  # chance 0.2


def test_bad_input(fitted, digits):
    X, y = digits
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="ridge_lambda"):
            R2D2Classifier(ridge_lambda=bad).fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="scale"):
        R2D2Classifier(scale=0).fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="64 features"):
        fitted.adapt(X[:10, :10], y[:10])
    with pytest.raises(ValueError, match="at least 2 classes"):
        fitted.adapt(X[y == 5][:5], y[y == 5][:5])




@needs_omniglot
def test_r2d2_on_real_omniglot():
    from sktransfer.datasets import load_omniglot
    from sktransfer.modules import Conv4

    data = load_omniglot("background_small1")
    X, y, groups = data.data, data.target, data.groups
    train = np.isin(groups, np.unique(groups)[:4])
    est = R2D2Classifier(n_way=5, k_shot=1, n_query=5, max_epochs=2, episodes_per_epoch=50,
                         module=lambda: Conv4(hidden_channels=16), random_state=0)
    est.fit(X[train], y[train], groups=groups[train])
    mean, ci = few_shot_score(est, X[~train], y[~train], n_way=5, k_shot=1, n_query=5,
                              n_episodes=30, random_state=0)
    assert mean > 0.5, (mean, ci)  # chance 0.2
