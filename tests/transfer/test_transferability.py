"""Transferability scores: closed-form correctness, real data, rankings, scorers, errors."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.stats import multivariate_normal
from sklearn.covariance import ledoit_wolf
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from torch import nn

from sktransfer.transfer import (
    FineTuner,
    PretrainedFeatures,
    h_score,
    h_scorer,
    leep_score,
    leep_scorer,
    logme_score,
    logme_scorer,
    make_transferability_scorer,
    rank_pretrained,
)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


def mlp():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def small_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 16), nn.ReLU(), nn.Linear(16, 3))


@pytest.fixture(scope="module")
def trained(digits):
    """An MLP trained on the first 900 digits (all ten classes)."""
    X, y = digits
    return FineTuner(mlp, strategy="full", head="keep", lr=1e-2, max_epochs=15,
                     random_state=0).fit(X[:900], y[:900])


# ------------------------------------------------------------------ LogME
def _log_evidence(F, y, alpha, beta):
    """log p(y | F, alpha, beta) of Bayesian linear regression, from its Gaussian marginal."""
    n = len(F)
    cov = np.eye(n) / beta + F @ F.T / alpha
    return multivariate_normal(np.zeros(n), cov).logpdf(y)


def _brute_force_logme(F, y):
    """Mean over the one-hot columns of max over (alpha, beta) of the evidence, over n."""
    out = []
    for c in np.unique(y):
        t = (y == c).astype(float)
        best = -np.inf
        for start in ([0.0, 0.0], [3.0, 1.0], [-2.0, 2.0]):
            res = minimize(lambda p, t=t: -_log_evidence(F, t, *np.exp(p)), start,
                           method="Nelder-Mead",
                           options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 5000})
            best = max(best, -res.fun)
        out.append(best / len(F))
    return np.mean(out)


@pytest.mark.parametrize("n, d", [(40, 5), (12, 20)])
def test_logme_is_the_maximum_evidence(n, d):
    rng = np.random.RandomState(n)
    y = np.arange(n) % 3
    F = rng.randn(n, d) + np.eye(3)[y] @ rng.randn(3, d)
    fixed_point = logme_score(None, F, y, tol=1e-10, max_iter=1000)
    assert fixed_point == pytest.approx(_brute_force_logme(F, y), abs=1e-6)
    # the default tolerance is within 1e-5 of the maximum
    assert logme_score(None, F, y) == pytest.approx(fixed_point, abs=1e-5)


def test_logme_of_constant_zero_features_is_the_noise_only_evidence():
    y = np.array([0, 1, 1, 0, 1, 2])
    n = len(y)
    expected = []
    for c in range(3):
        beta = n / np.sum(y == c)  # 1 / the mean square of the 0/1 column
        expected.append(0.5 * (np.log(beta) - np.log(2 * np.pi) - 1))
    assert logme_score(None, np.zeros((n, 4)), y) == pytest.approx(np.mean(expected))


# ------------------------------------------------------------------ LEEP
def test_leep_by_hand():
    P = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.6, 0.1, 0.3]])
    y = np.array(["a", "b", "b", "a"])
    n, joint = len(y), np.zeros((2, 3))
    for i in range(n):
        joint[int(y[i] == "b")] += P[i] / n
    cond = joint / joint.sum(axis=0)
    expected = np.mean([np.log(sum(cond[int(y[i] == "b"), z] * P[i, z] for z in range(3)))
                        for i in range(n)])
    assert leep_score(None, P, y) == pytest.approx(expected)
    logits = np.log(P) + 2.0  # a softmax of logits gives the same probabilities
    assert leep_score(None, logits, y, output="logits") == pytest.approx(expected)


def test_leep_of_a_network_is_leep_of_its_softmax(trained, digits):
    X, y = digits
    logits = trained.net_.module_.eval()(torch.as_tensor(X[900:])).detach().double().numpy()
    assert leep_score(trained, X[900:], y[900:]) == pytest.approx(
        leep_score(None, logits, y[900:], output="logits"), rel=1e-6)


# ------------------------------------------------------------------ H-score
def test_h_score_direct_formula():
    rng = np.random.RandomState(0)
    y = rng.randint(0, 4, 200)
    F = rng.randn(200, 6) + np.eye(4)[y] @ rng.randn(4, 6)
    mu = F.mean(axis=0)
    cov_f = np.cov(F.T, bias=True)
    cov_g = sum(np.mean(y == c) * np.outer(F[y == c].mean(0) - mu, F[y == c].mean(0) - mu)
                for c in range(4))
    assert h_score(None, F, y, shrinkage=None) == pytest.approx(
        np.trace(np.linalg.inv(cov_f) @ cov_g))
    shrunk = 0.7 * cov_f + 0.3 * np.trace(cov_f) / 6 * np.eye(6)
    assert h_score(None, F, y, shrinkage=0.3) == pytest.approx(
        np.trace(np.linalg.inv(shrunk) @ (0.7 * cov_g)))
    delta = ledoit_wolf(F)[1]
    lw = (1 - delta) * cov_f + delta * np.trace(cov_f) / 6 * np.eye(6)
    assert h_score(None, F, y) == pytest.approx(
        np.trace(np.linalg.inv(lw) @ ((1 - delta) * cov_g)))
    auto = h_score(None, F, y)
    assert 0 < auto <= 3 + 1e-9  # at most min(C - 1, D)
    # invariant to an invertible linear map of the features (without shrinkage)
    A = rng.randn(6, 6)
    assert h_score(None, F @ A, y, shrinkage=None) == pytest.approx(
        h_score(None, F, y, shrinkage=None))


def test_h_score_with_more_features_than_samples_stays_in_range():
    rng = np.random.RandomState(0)
    y = np.arange(12) % 3
    F = rng.randn(12, 500) + 3 * np.eye(3)[y] @ rng.randn(3, 500)
    for shrinkage in ("auto", 0.5, None):
        assert 0 < h_score(None, F, y, shrinkage=shrinkage) <= 2 + 1e-9  # C - 1 = 2
    assert h_score(None, np.ones((12, 4)), y) == 0.0  # constant features explain nothing


# ------------------------------------------------------------------ real data
def test_trained_source_beats_random_init_on_digits(trained, digits):
    X, y = digits
    for score in (logme_score, leep_score, h_score):
        good = score(trained, X[900:], y[900:])
        bad = score(mlp, X[900:], y[900:], random_state=0)
        assert good > bad, score.__name__
    assert logme_score(trained, X[900:], y[900:]) > logme_score(
        mlp, X[900:], y[900:], random_state=0) + 0.1
    assert leep_score(trained, X[900:], y[900:]) > -0.5 > -2.0 > leep_score(
        mlp, X[900:], y[900:], random_state=0)


def test_every_source_form_gives_the_same_score(trained, digits, tmp_path):
    X, y = digits
    Xt, yt = X[900:1100], y[900:1100]
    module = trained.net_.module_
    path = tmp_path / "w.pt"
    torch.save(module.state_dict(), path)
    expected = logme_score(module, Xt, yt)
    pf = PretrainedFeatures(module).fit(Xt)
    for source in (trained, FrozenEstimator(trained), (mlp, path), pf, FrozenEstimator(pf),
                   PretrainedFeatures(module)):
        assert logme_score(source, Xt, yt) == pytest.approx(expected, rel=1e-6)
    F = pf.transform(Xt)
    assert logme_score(None, F, yt) == pytest.approx(expected, rel=1e-6)
    assert h_score(trained, Xt, yt) == pytest.approx(h_score(None, F, yt), rel=1e-6)
    assert leep_score(pf, Xt, yt) == pytest.approx(leep_score(module, Xt, yt))
    assert logme_score(PretrainedFeatures(module, layer="0"), Xt, yt) == pytest.approx(
        logme_score(module, Xt, yt, layer="0"), rel=1e-6)
    at_layer = PretrainedFeatures(module, layer="0").fit(Xt)  # LEEP reads the whole network
    assert leep_score(at_layer, Xt, yt) == pytest.approx(leep_score(module, Xt, yt))
    assert logme_score(at_layer, Xt, yt) == pytest.approx(
        logme_score(module, Xt, yt, layer="0"), rel=1e-6)
    # a factory is seeded by random_state
    assert logme_score(mlp, Xt, yt, random_state=1) == logme_score(mlp, Xt, yt, random_state=1)
    assert logme_score(mlp, Xt, yt, random_state=1) != logme_score(mlp, Xt, yt, random_state=2)


def test_fitted_sklearn_transformer_and_classifier_sources(digits):
    X, y = digits
    pca = PCA(8, random_state=0).fit(X[:900])
    assert logme_score(pca, X[900:], y[900:]) == pytest.approx(
        logme_score(None, pca.transform(X[900:]), y[900:]))
    clf = LogisticRegression(max_iter=500).fit(X[:900], y[:900])
    assert leep_score(clf, X[900:], y[900:]) == pytest.approx(
        leep_score(None, clf.predict_proba(X[900:]), y[900:]))
    with pytest.raises(TypeError, match="no transform"):
        logme_score(clf, X[900:], y[900:])
    with pytest.raises(TypeError, match="no predict_proba"):
        leep_score(pca, X[900:], y[900:])


def test_layer_option_scores_that_layer(trained, digits):
    X, y = digits
    module = trained.net_.module_
    with torch.no_grad():
        first = module[0](torch.as_tensor(X[900:])).double().numpy()
    assert logme_score(trained, X[900:], y[900:], layer="0") == pytest.approx(
        logme_score(None, first, y[900:]), rel=1e-6)


# ------------------------------------------------------------------ ranking
def test_rank_pretrained_table(trained, digits):
    X, y = digits
    table = rank_pretrained([mlp, trained], X[900:], y[900:], random_state=0)
    assert list(table.index) == ["1: FineTuner", "0: mlp"]  # best first
    assert list(table.columns) == ["logme", "leep", "h_score", "logme_seconds",
                                   "leep_seconds", "h_score_seconds"]
    assert table.loc["1: FineTuner", "logme"] == pytest.approx(
        logme_score(trained, X[900:], y[900:]))
    assert (table.filter(like="_seconds") > 0).all().all()
    kept = rank_pretrained({"random": mlp, "trained": trained}, X[900:], y[900:],
                           scores="h_score", sort_by=False, random_state=0)
    assert list(kept.index) == ["random", "trained"] and list(kept.columns) == [
        "h_score", "h_score_seconds"]


def test_rank_pretrained_per_layer_names_the_top_layers():
    rng = np.random.RandomState(0)
    y = np.arange(60) % 3
    X = (rng.rand(60, 1, 8, 8) + y[:, None, None, None]).astype(np.float32)
    table = rank_pretrained({"cnn": small_cnn}, X, y, per_layer=True, sort_by=False,
                            random_state=0)
    # conv+bn | conv | linear: their outputs after activation / pooling / flattening
    assert list(table["layer"]) == ["3", "7", "9"]
    assert list(table["n_layers"]) == [2, 1, 0]
    # the top row's features are what the head sees (the default layer)
    assert table["logme"].iloc[-1] == pytest.approx(
        logme_score(small_cnn, X, y, random_state=0), rel=1e-6)
    assert table["leep"].nunique() == 1  # LEEP scores the whole network
    named = rank_pretrained([small_cnn], X, y, layers=["3", "9"], sort_by=False,
                            scores=["logme"], random_state=0)
    assert list(named["layer"]) == ["3", "9"]
    assert named["logme"].iloc[1] == pytest.approx(table["logme"].iloc[-1])


def test_rank_pretrained_without_pandas(monkeypatch, digits):
    import sys

    X, y = digits
    monkeypatch.setitem(sys.modules, "pandas", None)
    table = rank_pretrained({"a": None}, X[:200], y[:200], scores=["logme", "h_score"])
    assert isinstance(table, dict) and list(table) == [
        "source", "logme", "h_score", "logme_seconds", "h_score_seconds"]
    assert table["logme"][0] == pytest.approx(logme_score(None, X[:200], y[:200]))


def test_rank_pretrained_leep_is_nan_for_a_feature_extractor(digits):
    X, y = digits
    trunk = nn.Sequential(nn.Linear(64, 8), nn.ReLU())
    table = rank_pretrained([trunk], X[:100], y[:100], scores=["leep", "logme"])
    assert np.isnan(table["leep"].iloc[0]) and np.isfinite(table["logme"].iloc[0])


# ------------------------------------------------------------------ scorers
def test_scorer_in_grid_search_ranks_without_fine_tuning(digits):
    X, y = digits
    X, y = X[:400], y[:400]

    def narrow():
        return nn.Sequential(nn.Linear(64, 4), nn.ReLU(), nn.Linear(4, 10))

    cv = StratifiedKFold(2)
    search = GridSearchCV(FineTuner(narrow, strategy="full", max_epochs=0, random_state=0),
                          {"pretrained": [narrow, mlp]}, cv=cv, refit=False,
                          scoring={"logme": logme_scorer, "h": h_scorer, "leep": leep_scorer})
    search.fit(X, y)
    assert search.cv_results_["rank_test_logme"].tolist() == [2, 1]
    # the score of the unfitted candidate on the held-out fold, seeded by random_state
    _, test = next(cv.split(X, y))
    assert search.cv_results_["split0_test_logme"][1] == pytest.approx(
        logme_score(mlp, X[test], y[test], random_state=0))
    scorer = make_transferability_scorer("h_score", shrinkage=None)
    assert "shrinkage=None" in repr(scorer)
    ft = FineTuner(mlp, max_epochs=0, random_state=0)
    assert scorer(ft, X, y) == pytest.approx(h_score(mlp, X, y, shrinkage=None, random_state=0))
    # in a pipeline: the pretrained= of the step that has one
    pipe = make_pipeline(PretrainedFeatures(mlp, random_state=3), LogisticRegression())
    assert logme_scorer(pipe, X, y) == pytest.approx(logme_score(mlp, X, y, random_state=3))


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("score", [logme_score, leep_score, h_score])
def test_bad_labels(score):
    P = np.full((6, 2), 0.5)
    with pytest.raises(ValueError, match="different lengths"):
        score(None, P, [0, 1, 0, 1, 0])
    with pytest.raises(ValueError, match="single class"):
        score(None, P, np.zeros(6))
    with pytest.raises(ValueError, match="class labels"):
        score(None, P, np.linspace(0, 1, 6))
    with pytest.raises(ValueError, match="y is required"):
        score(None, P, None)


def test_non_finite_features_and_outputs(digits):
    X, y = digits
    F = np.random.RandomState(0).randn(10, 3)
    F[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        logme_score(None, F, np.arange(10) % 2)

    broken = nn.Sequential(nn.Linear(64, 3))
    with torch.no_grad():
        broken[0].weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN or infinity"):
        leep_score(broken, X[:20], y[:20])
    with pytest.raises(ValueError, match="NaN or infinity"):
        h_score(broken, X[:20], y[:20], layer="0")
    Xn = X[:20].copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        logme_score(mlp, Xn, y[:20])


def test_other_errors(digits, trained):
    X, y = digits
    with pytest.raises(ValueError, match="unknown transferability score 'logm'"):
        make_transferability_scorer("logm")
    with pytest.raises(ValueError, match="unknown transferability score"):
        rank_pretrained([mlp], X[:50], y[:50], scores=["logme", "nce"])
    with pytest.raises(TypeError, match="unexpected keyword"):
        make_transferability_scorer("logme", shrinkage=0.1)
    with pytest.raises(TypeError, match="unexpected keyword"):
        rank_pretrained([mlp], X[:50], y[:50], scores=["logme"], shrinkage=0.1)
    with pytest.raises(ValueError, match="not probabilities"):
        leep_score(None, np.ones((4, 2)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="output layer"):
        leep_score(nn.Sequential(nn.Linear(64, 8), nn.ReLU()), X[:20], y[:20])
    with pytest.raises(ValueError, match="not fitted"):
        logme_score(FineTuner(mlp), X[:20], y[:20])
    with pytest.raises(ValueError, match="not a submodule"):
        logme_score(trained, X[:20], y[:20], layer="nope")
    with pytest.raises(ValueError, match="shrinkage"):
        h_score(None, X[:20], y[:20], shrinkage=2.0)
    with pytest.raises(ValueError, match="layer= needs a source network"):
        logme_score(None, X[:20], y[:20], layer="0")
    with pytest.raises(ValueError, match="not both"):
        rank_pretrained([mlp], X[:20], y[:20], layers=["0"], per_layer=True)
    with pytest.raises(ValueError, match="at least 2 samples"):
        logme_score(None, X[:1], y[:1])
    with pytest.raises(TypeError, match="no pretrained parameter"):
        logme_scorer(LogisticRegression().fit(X[:50], y[:50]), X[:50], y[:50])
    with pytest.raises(ValueError, match="tol"):
        logme_score(None, X[:20], y[:20], tol=0)
