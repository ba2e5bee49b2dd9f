"""Transferability scores: rank pretrained networks for a target task without fine-tuning.

Each score looks at a frozen source network on the *target* data once (one
forward pass) and says how well it is likely to transfer; higher is better.

* :func:`logme_score`: LogME (You et al., 2021), the log maximum evidence of
  a Bayesian linear model on the features;
* :func:`leep_score`: LEEP (Nguyen et al., 2020), from the source head's
  label distribution;
* :func:`h_score`: H-score (Bao et al., 2019), ``tr(cov(f)^-1 cov(E[f|y]))``;
* :func:`rank_pretrained`: every score of several candidates (optionally
  per layer), with the time each took, as a table;
* :func:`make_transferability_scorer` and the scorers :data:`logme_scorer`,
  :data:`leep_scorer`, :data:`h_scorer`: ``scoring=`` for ``GridSearchCV``
  over ``FineTuner(pretrained=...)``.

``source`` takes every form ``FineTuner(pretrained=...)`` takes, a fitted
estimator (wrapped in ``FrozenEstimator`` or not: nothing is cloned here), a
fitted scikit-learn transformer / classifier (its ``transform`` gives the
features, its ``predict_proba`` the source label distribution), or ``None``:
``X`` is then already the features (the source probabilities for LEEP).
"""

import numbers
import time

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.utils import check_array
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from ._features import PretrainedFeatures, embed
from ._layers import _dry_run, find_output_layer, layer_groups
from ._pretrained import _is_estimator, resolve_pretrained

__all__ = [
    "h_score",
    "h_scorer",
    "leep_score",
    "leep_scorer",
    "logme_score",
    "logme_scorer",
    "make_transferability_scorer",
    "rank_pretrained",
]


# ------------------------------------------------------------------ inputs
def _check_labels(y, n_samples):
    """Labels as (classes, integer codes); a clear error for what no score can use."""
    if y is None:
        raise ValueError("y is required: transferability scores need the target labels")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D class labels; got an array of shape {y.shape}")
    if len(y) != n_samples:
        raise ValueError(f"X and y have different lengths: {n_samples} samples but "
                         f"{len(y)} labels")
    kind = type_of_target(y)
    if kind not in ("binary", "multiclass"):
        raise ValueError(f"transferability scores need class labels (binary or multiclass); "
                         f"y is {kind!r}")
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"y has a single class ({classes[0]!r}): a transferability score "
                         f"needs at least 2 classes")
    return classes, codes


def _check_features(F, what="features"):
    F = np.asarray(F, dtype=np.float64)
    if F.ndim == 1:
        raise ValueError(f"the {what} must be 2-D (n_samples, n_features); got a 1-D array")
    if F.ndim > 2:
        F = F.reshape(len(F), -1)
    if len(F) < 2:
        raise ValueError(f"a transferability score needs at least 2 samples; got {len(F)}")
    if not np.all(np.isfinite(F)):
        raise ValueError(f"the {what} contain NaN or infinity ({int((~np.isfinite(F)).sum())} "
                         f"values): the source network produces non-finite values on X")
    return F


def _fitted_state(est):
    """Whether ``est`` is fitted (scikit-learn's test, without raising)."""
    try:
        check_is_fitted(est)
    except Exception:  # NotFittedError, or an estimator check_is_fitted cannot judge
        return False
    return True


def _unwrap(source):
    """(kind, object): "array", "torch" (a PretrainedFeatures ``pretrained``), "features"
    (a fitted PretrainedFeatures), or "sklearn" (a fitted non-torch estimator)."""
    from skorch import NeuralNet

    if source is None:
        return "array", None
    est = source.estimator if isinstance(source, FrozenEstimator) else source
    if isinstance(est, PretrainedFeatures):
        if hasattr(est, "module_"):
            return "features", est
        return "torch", est.pretrained  # an unfitted one: the candidate it holds
    if _is_estimator(est):
        if isinstance(est, NeuralNet) or hasattr(est, "net_"):
            return "torch", FrozenEstimator(est)  # the fitted network, never cloned here
        if type(est).__module__.startswith("sktransfer") and not _fitted_state(est):
            raise ValueError(
                f"the {type(est).__name__} source is not fitted: fit it first, or pass the "
                f"network it would start from (for a FineTuner, its pretrained=...)")
        if not _fitted_state(est):
            raise ValueError(f"the {type(est).__name__} source is not fitted")
        return "sklearn", est
    return "torch", source


def _extractor(obj, layer, batch_size, device, random_state):
    return PretrainedFeatures(obj, layer=layer, batch_size=batch_size, device=device,
                              random_state=random_state)


def _features(source, X, layer=None, batch_size=256, device="cpu", random_state=None):
    """The features of ``X`` under ``source`` (float64, 2-D), as in the module docstring."""
    inner = source.estimator if isinstance(source, FrozenEstimator) else source
    if isinstance(inner, PretrainedFeatures) and layer is None:
        layer = inner.layer  # an unfitted PretrainedFeatures embeds where it says
    kind, obj = _unwrap(source)
    if kind == "array":
        if layer is not None:
            raise ValueError("layer= needs a source network; with source=None, X is already "
                             "the features")
        return _check_features(check_array(X, dtype=np.float64, ensure_all_finite=False,
                                           allow_nd=True))
    if kind == "features":
        if layer is None or layer == obj.layer_:
            Z = obj.transform(X)
        else:
            Z = _extractor(obj.module_, layer, batch_size, device, random_state).fit_transform(X)
    elif kind == "sklearn":
        if layer is not None:
            raise ValueError(f"layer= needs a PyTorch source; the {type(obj).__name__} source "
                             f"gives its features by transform()")
        if not hasattr(obj, "transform"):
            raise TypeError(f"the {type(obj).__name__} source has no transform(): pass a "
                            f"network, a fitted transformer, or source=None with features")
        Z = obj.transform(X)
    else:
        Z = _extractor(obj, layer, batch_size, device, random_state).fit_transform(X)
    return _check_features(Z)


def _softmax(Z):
    Z = Z - Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=1, keepdims=True)
    return Z


def _check_probabilities(P):
    if np.any(P < 0) or not np.allclose(P.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("the source outputs are not probabilities (non-negative rows that "
                         "sum to 1); pass output='logits' to apply a softmax first")
    return P


def _source_probabilities(source, X, output=None, batch_size=256, device="cpu",
                          random_state=None):
    """The source model's label distribution on ``X``, shape (n_samples, n_source_classes)."""
    if output not in (None, "logits", "probabilities"):
        raise ValueError(f"output must be None, 'logits' or 'probabilities'; got {output!r}")
    kind, obj = _unwrap(source)
    if kind == "array":
        P = _check_features(check_array(X, dtype=np.float64, ensure_all_finite=False),
                            "source outputs")
        return _softmax(P) if output == "logits" else _check_probabilities(P)
    if kind == "sklearn":
        if not hasattr(obj, "predict_proba"):
            raise TypeError(f"LEEP needs the source's label distribution: the "
                            f"{type(obj).__name__} source has no predict_proba()")
        P = _check_features(obj.predict_proba(X), "source outputs")
        return _softmax(P) if output == "logits" else _check_probabilities(P)
    if kind == "features":  # the whole network, whatever layer it embeds at
        obj = obj.module_
    pf = _extractor(obj, None, batch_size, device, random_state)
    try:
        pf.fit(X)
    except ValueError as exc:
        if "no nn.Linear output layer" not in str(exc):
            raise
        raise ValueError("LEEP needs the source's output layer (its classifier head); this "
                         "source network has no nn.Linear output layer") from exc
    if pf._mode != "input":
        raise ValueError("LEEP needs the source's output layer (its classifier head); this "
                         "source is a feature extractor without one (e.g. a multi-task "
                         "trunk): use logme_score or h_score")
    Xv = pf._validate_X(X, reset=False)
    if output != "probabilities":
        out, _, head_out = _dry_run(pf.module_, pf.layer_, torch.as_tensor(Xv[:2]).to(device))
        if not (isinstance(out, torch.Tensor) and isinstance(head_out, torch.Tensor)
                and out.shape == head_out.shape
                and torch.equal(out.nan_to_num(), head_out.nan_to_num())):
            raise ValueError(
                f"LEEP needs the source's classifier outputs, but what the source returns is "
                f"not the output of its output layer {pf.layer_!r} (the last nn.Linear): "
                f"something is applied after it, or the source is a feature extractor. If it "
                f"returns probabilities, pass output='probabilities'")
    with pf._torch_context(device=device):
        Z = embed(pf.module_, Xv, None, "output", batch_size, device)
    Z = _check_features(Z.double().cpu().numpy(), "source outputs")
    return _check_probabilities(Z) if output == "probabilities" else _softmax(Z)


# ------------------------------------------------------------------ scores
def _logme_column(s, z2_rest, z, n, tol, max_iter):
    """LogME of one target column: the evidence at the fixed point of (alpha, beta), over n.

    ``s`` are the nonzero eigenvalues of F^T F, ``z = U^T y`` and
    ``z2_rest = ||y||^2 - ||z||^2`` (the part of y outside the column space).
    """
    tiny = np.finfo(np.float64).tiny
    if len(s) == 0:  # no feature varies: y ~ N(0, 1/beta), beta at its maximum
        beta = n / max(z2_rest, tiny)
        return 0.5 * (np.log(beta) - np.log(2 * np.pi) - 1.0)
    alpha, beta = 1.0, 1.0
    z2 = z * z
    for _ in range(max_iter):
        lam = alpha / beta
        gamma = np.sum(s / (s + lam))
        m2 = np.sum(s * z2 / (s + lam) ** 2)                 # ||m||^2
        res = np.sum(lam ** 2 * z2 / (s + lam) ** 2) + z2_rest  # ||y - F m||^2
        alpha = gamma / max(m2, tiny)
        beta = max(n - gamma, tiny) / max(res, tiny)
        if abs(alpha / beta - lam) <= tol * lam:
            break
    lam = alpha / beta
    m2 = np.sum(s * z2 / (s + lam) ** 2)
    res = np.sum(lam ** 2 * z2 / (s + lam) ** 2) + z2_rest
    # D/2 log a + n/2 log b - 1/2 log|aI + b F^T F| - b/2 res - a/2 m2 - n/2 log 2pi; the
    # D - k zero eigenvalues contribute log a each to log|A| and cancel D/2 log a.
    evidence = (0.5 * n * np.log(beta) - 0.5 * np.sum(np.log1p(s / lam))
                - 0.5 * beta * res - 0.5 * alpha * m2 - 0.5 * n * np.log(2 * np.pi))
    return evidence / n


def _logme(F, codes, n_classes, tol=1e-4, max_iter=100):
    n, d = F.shape
    Y = np.zeros((n, n_classes))
    Y[np.arange(n), codes] = 1.0
    # the eigendecomposition of the smaller Gram matrix (F^T F or F F^T) is the SVD of F
    s, W = np.linalg.eigh(F.T @ F if d <= n else F @ F.T)
    keep = s > max(s.max(initial=0.0), 0.0) * max(n, d) * 1e-12
    s, W = s[keep], W[:, keep]
    Z = (W.T @ (F.T @ Y)) / np.sqrt(s)[:, None] if d <= n else W.T @ Y  # U^T Y
    rest = np.maximum(Y.sum(axis=0) - (Z * Z).sum(axis=0), 0.0)  # ||y||^2 = class count
    return float(np.mean([_logme_column(s, rest[c], Z[:, c], n, tol, max_iter)
                          for c in range(n_classes)]))


def _leep(P, codes, n_classes):
    n = len(P)
    joint = np.zeros((n_classes, P.shape[1]))
    np.add.at(joint, codes, P)
    joint /= n                                                  # P^(y, z)
    marginal = joint.sum(axis=0)                                # P^(z)
    cond = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    eep = np.einsum("iz,iz->i", P, cond[codes])                 # sum_z P^(y_i|z) theta_z(x_i)
    return float(np.mean(np.log(np.maximum(eep, np.finfo(np.float64).tiny))))


def _h_score(F, codes, n_classes, shrinkage="auto"):
    """tr(cov_d^+ (1 - d) cov(E[f|y])), cov_d = (1 - d) cov(f) + d mu I, in the SVD basis."""
    from sklearn.covariance import ledoit_wolf_shrinkage

    n, d = F.shape
    Fc = F - F.mean(axis=0)
    # cov(f) = V diag(sv^2 / n) V^T; the class means lie in the span of V, so the inverse
    # is only needed there: O(n d min(n, d)) whatever the number of features
    _, sv, Vt = np.linalg.svd(Fc, full_matrices=False)
    ev = sv ** 2 / n
    if shrinkage == "auto":
        delta = float(ledoit_wolf_shrinkage(Fc, assume_centered=True)) if ev.any() else 0.0
    else:
        delta = float(shrinkage or 0.0)
    denom = (1 - delta) * ev + delta * ev.sum() / d
    keep = denom > 1e-6 * denom.max(initial=0.0)
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    means = np.zeros((n_classes, d))
    np.add.at(means, codes, Fc)
    means /= counts[:, None]                                    # E[f | y] - E[f]
    proj = means @ Vt[keep].T                                   # in the eigenbasis
    return float((1 - delta) * np.sum(counts[:, None] / n * proj ** 2 / denom[keep]))


def _check_shrinkage(shrinkage):
    if shrinkage is None or shrinkage == "auto":
        return shrinkage
    if (isinstance(shrinkage, numbers.Real) and not isinstance(shrinkage, bool)
            and 0 <= shrinkage <= 1):
        return float(shrinkage)
    raise ValueError(f"shrinkage must be 'auto', None or a float in [0, 1]; got {shrinkage!r}")


def _check_int(value, name, low):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")


def logme_score(source, X, y, *, layer=None, tol=1e-4, max_iter=100, batch_size=256,
                device="cpu", random_state=None):
    r"""LogME: the log maximum evidence of a linear model on the source's features.

    You et al. (2021) fit, for each one-hot label column :math:`y` of the
    target classes, a Bayesian linear regression :math:`y = F w + \epsilon`
    on the features :math:`F` (:math:`n \times D`), with the prior
    :math:`w \sim \mathcal N(0, \alpha^{-1} I)` and the noise
    :math:`\epsilon \sim \mathcal N(0, \beta^{-1} I)`, and maximise the
    evidence :math:`\log p(y \mid F, \alpha, \beta)` over
    :math:`\alpha, \beta` by the paper's fixed-point iteration in the
    eigenbasis of :math:`F^\top F` (one eigendecomposition of the smaller of
    :math:`F^\top F` and :math:`F F^\top`, i.e. the SVD of ``F``; then each
    iteration costs :math:`O(\min(n, D))`). The score is that maximum, divided by
    :math:`n` and averaged over the label columns. Higher is better; it is
    comparable across sources on the same target data.

    Parameters
    ----------
    source : nn.Module, factory, (factory, path), estimator, FrozenEstimator or None
        The source network (any form ``FineTuner(pretrained=...)`` accepts),
        a fitted estimator (sktransfer or skorch, with or without
        ``FrozenEstimator``; a fitted :class:`PretrainedFeatures` embeds as
        it was fitted to), a fitted scikit-learn transformer (its
        ``transform`` gives the features), or ``None``: ``X`` is then the
        features themselves.
    X : array-like of shape (n_samples, ...)
        Target samples (the features when ``source`` is None).
    y : array-like of shape (n_samples,)
        Target class labels, at least 2 classes.
    layer : str or None, default=None
        The features: ``None`` is the input of the source's output layer (what
        a new head would see), a name the output of that submodule, as in
        :class:`PretrainedFeatures`.
    tol : float, default=1e-4
        The iteration stops when :math:`\alpha / \beta` changes by less than
        this fraction (the paper stops at 0.01, after at most 11 steps; the
        tighter default costs nothing noticeable and reaches the maximum to
        about six digits).
    max_iter : int, default=100
    batch_size : int, default=256
        Samples per forward pass.
    device : {"cpu", "cuda", "auto"}, default="cpu"
    random_state : int or None, default=None
        Seeds a factory that builds a random network (and lazy modules).

    Returns
    -------
    float
        The mean over the classes of the maximum log evidence per sample
        (a log-density of the 0/1 label column, so it can be positive;
        higher is better).

    See Also
    --------
    rank_pretrained : Every score of several candidates, as a table.
    make_transferability_scorer : The score as ``scoring=`` for a search.

    References
    ----------
    You, K., Liu, Y., Wang, J. and Long, M. (2021). LogME: practical
    assessment of pre-trained models for transfer learning. ICML.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.transfer import logme_score
    >>> rng = np.random.RandomState(0)
    >>> y = rng.randint(0, 3, 200)
    >>> informative = np.eye(3)[y] + 0.3 * rng.randn(200, 3)
    >>> noise = rng.randn(200, 3)
    >>> logme_score(None, informative, y) > logme_score(None, noise, y)
    True
    """
    F = _features(source, X, layer, batch_size, device, random_state)
    classes, codes = _check_labels(y, len(F))
    if not (isinstance(tol, numbers.Real) and tol > 0):
        raise ValueError(f"tol must be a positive float; got {tol!r}")
    _check_int(max_iter, "max_iter", 1)
    return _logme(F, codes, len(classes), tol, max_iter)


def leep_score(source, X, y, *, output=None, batch_size=256, device="cpu", random_state=None):
    r"""LEEP: the log expected empirical prediction of the source head on the target.

    Nguyen et al. (2020): with :math:`\theta(x)` the source model's
    distribution over its own labels :math:`z` (the softmax of its outputs),
    the empirical joint distribution of target and source labels is
    :math:`\hat P(y, z) = \frac1n \sum_{i: y_i = y} \theta(x_i)_z`, the
    conditional :math:`\hat P(y \mid z) = \hat P(y, z) / \sum_{y'} \hat P(y', z)`,
    and

    .. math::

        \mathrm{LEEP} = \frac1n \sum_{i=1}^n
        \log \sum_z \hat P(y_i \mid z)\, \theta(x_i)_z ,

    the average log-likelihood of the classifier that maps the source
    prediction to the target labels through :math:`\hat P(y \mid z)`. It is
    at most 0; higher is better. It needs the source's *output layer* (a
    classifier head), so a feature extractor without one is an error.

    Parameters
    ----------
    source : nn.Module, factory, (factory, path), estimator, FrozenEstimator or None
        As in :func:`logme_score`; a fitted scikit-learn classifier gives
        :math:`\theta` by ``predict_proba``. ``None``: ``X`` is :math:`\theta`
        itself, shape (n_samples, n_source_classes).
    X : array-like of shape (n_samples, ...)
    y : array-like of shape (n_samples,)
        Target class labels.
    output : {None, "logits", "probabilities"}, default=None
        What the source returns: ``None`` means logits for a network (a
        softmax is applied) and probabilities for ``predict_proba`` and for
        ``source=None``.
    batch_size : int, default=256
    device : {"cpu", "cuda", "auto"}, default="cpu"
    random_state : int or None, default=None

    Returns
    -------
    float

    References
    ----------
    Nguyen, C., Hassner, T., Seeger, M. and Archambeau, C. (2020). LEEP: a new
    measure to evaluate transferability of learned representations. ICML.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.transfer import leep_score
    >>> y = np.array([0, 0, 1, 1])
    >>> sharp = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8]])
    >>> flat = np.full((4, 2), 0.5)
    >>> round(leep_score(None, flat, y), 4)            # log(1/2): no information
    -0.6931
    >>> leep_score(None, sharp, y) > leep_score(None, flat, y)
    True
    """
    P = _source_probabilities(source, X, output, batch_size, device, random_state)
    classes, codes = _check_labels(y, len(P))
    return _leep(P, codes, len(classes))


def h_score(source, X, y, *, layer=None, shrinkage="auto", batch_size=256, device="cpu",
            random_state=None):
    r"""H-score: how much of the features' variance the class means explain.

    Bao et al. (2019):

    .. math::

        H(f) = \operatorname{tr}\left(\operatorname{cov}(f)^{-1}
        \operatorname{cov}(\mathbb E[f \mid y])\right),

    with :math:`\operatorname{cov}(\mathbb E[f \mid y]) = \sum_y \hat p(y)
    (\mu_y - \mu)(\mu_y - \mu)^\top` over the class means :math:`\mu_y`. It
    is the Fisher-discriminant objective of the features: large when the
    classes are far apart relative to the spread of the features. It lies in
    :math:`[0, \min(C - 1, D)]` (:math:`C` classes, :math:`D` features);
    higher is better.

    Parameters
    ----------
    source : nn.Module, factory, (factory, path), estimator, FrozenEstimator or None
        As in :func:`logme_score`.
    X : array-like of shape (n_samples, ...)
    y : array-like of shape (n_samples,)
    layer : str or None, default=None
        As in :func:`logme_score`.
    shrinkage : "auto", float in [0, 1] or None, default="auto"
        How :math:`\operatorname{cov}(f)` is estimated before it is inverted.
        With a shrinkage :math:`\delta`, the score is
        :math:`\operatorname{tr}(\Sigma_\delta^{+} (1 - \delta)
        \operatorname{cov}(\mathbb E[f \mid y]))` with :math:`\Sigma_\delta =
        (1 - \delta)\operatorname{cov}(f) + \delta \mu I` (:math:`\mu` the
        mean variance): both covariances shrink alike, which keeps the score
        in :math:`[0, C - 1]`. ``"auto"``: the Ledoit-Wolf :math:`\delta`,
        stable when there are few samples per feature (shrinkage is proposed
        for the H-score by Ibrahim et al., 2022); a float: that
        :math:`\delta`; ``None`` or 0: the empirical covariance, Bao et al.'s
        original. The inverse is a pseudo-inverse (eigenvalues below ``1e-6``
        times the largest count as zero), computed in the span of the
        centred features, so thousands of features cost little.
    batch_size : int, default=256
    device : {"cpu", "cuda", "auto"}, default="cpu"
    random_state : int or None, default=None

    Returns
    -------
    float

    References
    ----------
    Bao, Y., Li, Y., Huang, S.-L., Zhang, L., Zheng, L., Zamir, A. and Guibas,
    L. (2019). An information-theoretic approach to transferability in task
    transfer learning. ICIP.

    Ibrahim, S., Ponomareva, N. and Mazumder, R. (2022). Newer is not always
    better: rethinking transferability metrics, their peculiarities,
    stability and performance. ECML PKDD.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.transfer import h_score
    >>> rng = np.random.RandomState(0)
    >>> y = rng.randint(0, 3, 300)
    >>> separated = np.eye(3)[y] * 5 + rng.randn(300, 3)
    >>> round(h_score(None, separated, y), 1)    # close to the maximum C - 1 = 2
    1.8
    >>> h_score(None, rng.randn(300, 3), y) < 0.1
    True
    """
    shrinkage = _check_shrinkage(shrinkage)
    F = _features(source, X, layer, batch_size, device, random_state)
    classes, codes = _check_labels(y, len(F))
    return _h_score(F, codes, len(classes), shrinkage)


#: name -> (score function, whether it scores features (True) or source outputs)
SCORES = {"logme": (logme_score, True), "leep": (leep_score, False),
          "h_score": (h_score, True)}

_OPTIONS = {"logme": ("tol", "max_iter"), "leep": ("output",), "h_score": ("shrinkage",)}


def _check_score_name(name):
    if name not in SCORES:
        raise ValueError(f"unknown transferability score {name!r}; choose from "
                         f"{sorted(SCORES)}")
    return name


# ------------------------------------------------------------------ ranking
def _source_module(source, random_state):
    """The source network (for listing its layers)."""
    kind, obj = _unwrap(source)
    if kind == "features":
        return obj.module_
    if kind != "torch":
        raise ValueError("per_layer=True needs PyTorch sources")
    with torch.random.fork_rng():  # only the layer names are used; keep the global RNG
        torch.manual_seed(0 if random_state is None else int(random_state))
        return resolve_pretrained(obj)[0]


def _candidate_layers(module):
    """(layer name, n_layers) of the output of every backbone layer group, bottom to top.

    The output of a group is the output of the last leaf module registered
    before the next group's first layer (so it includes the activation and
    pooling that follow a convolution); ``n_layers`` is the number of
    backbone groups above it, the ``FineTuner(strategy="top", n_layers=...)``
    that trains exactly the layers above these features.
    """
    try:
        head = find_output_layer(module)
    except ValueError:
        head = None
    if head is None:
        raise ValueError(f"per_layer=True needs a source with an nn.Linear output layer; "
                         f"the {type(module).__name__} has none (pass layers=[...])")
    groups, _ = layer_groups(module, head)
    backbone = groups[:-1]
    leaves = [name for name, m in module.named_modules()
              if name and not any(True for _ in m.children())]
    owner = {}
    for g, params in enumerate(backbone):
        for p in params:
            owner.setdefault(p.rpartition(".")[0], g)
    first = {}
    for name in leaves:
        if name in owner:
            first.setdefault(owner[name], name)
    first[len(backbone)] = head
    out = []
    for g in range(len(backbone)):
        nxt = first.get(g + 1)
        stop = leaves.index(nxt) if nxt in leaves else len(leaves)
        out.append((leaves[stop - 1], len(backbone) - 1 - g))
    return out


def _names(sources):
    if isinstance(sources, dict):
        return list(sources), list(sources.values())
    sources = list(sources)
    names = []
    for i, s in enumerate(sources):
        if s is None:
            names.append(f"{i}: features")
            continue
        obj = s.estimator if isinstance(s, FrozenEstimator) else s
        if isinstance(obj, tuple):
            obj = obj[0]
        label = getattr(obj, "__name__", None) or type(obj).__name__
        names.append(f"{i}: {label}")
    return names, sources


def rank_pretrained(sources, X, y, *, scores=("logme", "leep", "h_score"), layers=None,
                    per_layer=False, sort_by=None, batch_size=256, device="cpu",
                    random_state=None, **score_params):
    """Score several candidate sources (or layers) on the target data, with the time taken.

    The cheap way to choose a pretrained network before fine-tuning: one
    forward pass per candidate, no training. Features are computed once per
    candidate and layer and shared by the feature scores (LogME, H-score).

    Parameters
    ----------
    sources : list or dict
        Candidates, in any form :func:`logme_score` accepts (a dict names
        them by its keys; a list by position and type).
    X : array-like of shape (n_samples, ...)
        Target samples (held-out ones are best, but the scores use no
        training, so the training set is fine too).
    y : array-like of shape (n_samples,)
        Target class labels.
    scores : str or sequence of str, default=("logme", "leep", "h_score")
        Names among ``"logme"``, ``"leep"``, ``"h_score"``. A source
        without an output layer gets NaN for LEEP.
    layers : list of str or None, default=None
        Score the features of each of these layers (see :func:`logme_score`)
        of every source: one row per source and layer.
    per_layer : bool, default=False
        One row per backbone layer group of every source (its output, after
        the activation and pooling that follow it), bottom to top, with the
        column ``n_layers``: how many backbone groups lie above those
        features, the ``FineTuner(strategy="top", n_layers=...)`` that freezes
        exactly up to them. LEEP, which scores the head, is computed on the
        whole network and repeated on every row of a source.
    sort_by : str or None, default=None
        Sort the rows by this score, best first (default: the first of
        ``scores``); ``False`` keeps the order of ``sources``.
    batch_size, device, random_state
        As in :func:`logme_score`.
    **score_params
        Options of the scores: ``tol``, ``max_iter`` (LogME), ``output``
        (LEEP), ``shrinkage`` (H-score).

    Returns
    -------
    pandas.DataFrame or dict of numpy arrays
        A DataFrame, or without pandas a dict of arrays.
        One row per candidate (and layer): ``source`` (the name), ``layer``
        and ``n_layers`` (with ``layers=`` or ``per_layer=True``), one column
        per score, and ``<score>_seconds``: the wall time that score takes
        on its own (its forward pass plus its computation; a pass shared by
        two scores is counted in both). Like ``cv_results_``, the dict form
        converts with ``pandas.DataFrame(table)``.

    Examples
    --------
    >>> from torch import nn
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.transfer import FineTuner, rank_pretrained
    >>> X, y = load_digits(return_X_y=True)
    >>> X = (X / 16).astype("float32")
    >>> def mlp():
    ...     return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 5))
    >>> trained = FineTuner(mlp, strategy="full", head="keep", lr=1e-2, max_epochs=5,
    ...                     random_state=0).fit(X[y < 5], y[y < 5])
    >>> table = rank_pretrained({"trained": trained, "random": mlp}, X[y >= 5], y[y >= 5],
    ...                         random_state=0)
    >>> list(table.index if hasattr(table, "index") else table["source"])
    ['trained', 'random']
    >>> list(table.columns)
    ['logme', 'leep', 'h_score', 'logme_seconds', 'leep_seconds', 'h_score_seconds']
    """
    if isinstance(scores, str):
        scores = [scores]
    scores = [_check_score_name(s) for s in scores]
    if not scores:
        raise ValueError("scores is empty: name at least one of " + str(sorted(SCORES)))
    allowed = {o for s in scores for o in _OPTIONS[s]}
    unknown = set(score_params) - allowed
    if unknown:
        raise TypeError(f"unexpected keyword(s) {sorted(unknown)}: the options of the scores "
                        f"{scores} are {sorted(allowed)}")
    if layers is not None and per_layer:
        raise ValueError("give either layers=[...] or per_layer=True, not both")
    if layers is not None:
        layers = [layers] if isinstance(layers, str) else list(layers)
    names, sources = _names(sources)
    if not sources:
        raise ValueError("sources is empty: give at least one candidate")
    if sort_by is None:
        sort_by = scores[0]
    elif sort_by is not False and sort_by not in scores:
        raise ValueError(f"sort_by={sort_by!r} is not one of the computed scores {scores}")
    common = dict(batch_size=batch_size, device=device, random_state=random_state)
    opts = {s: {k: v for k, v in score_params.items() if k in _OPTIONS[s]} for s in scores}
    rows = []
    for name, source in zip(names, sources):
        if per_layer:
            cands = _candidate_layers(_source_module(source, random_state))
        elif layers is not None:
            cands = [(layer, None) for layer in layers]
        else:
            cands = [(None, None)]
        leep = None
        for layer, n_layers in cands:
            row = {"source": name}
            if layers is not None or per_layer:
                row["layer"] = layer
            if per_layer:
                row["n_layers"] = n_layers
            F = t_feat = None
            for s in scores:
                if SCORES[s][1]:
                    if F is None:
                        t = time.perf_counter()
                        F = _features(source, X, layer, **common)
                        t_feat = time.perf_counter() - t
                        classes, codes = _check_labels(y, len(F))
                    t = time.perf_counter()
                    if s == "logme":
                        value = _logme(F, codes, len(classes), opts[s].get("tol", 1e-4),
                                       opts[s].get("max_iter", 100))
                    else:
                        value = _h_score(F, codes, len(classes),
                                         _check_shrinkage(opts[s].get("shrinkage", "auto")))
                    row[s], row[f"{s}_seconds"] = value, t_feat + time.perf_counter() - t
                else:
                    if leep is None:
                        t = time.perf_counter()
                        try:
                            value = leep_score(source, X, y, **opts[s], **common)
                        except ValueError as exc:
                            if "output layer" not in str(exc):
                                raise
                            value = np.nan
                        leep = (value, time.perf_counter() - t)
                    row[s], row[f"{s}_seconds"] = leep
            rows.append(row)
    keys = [k for k in ("source", "layer", "n_layers") if k in rows[0]]
    keys += scores + [f"{s}_seconds" for s in scores]
    if sort_by is not False:
        order = sorted(range(len(rows)), key=lambda i: (-np.nan_to_num(rows[i][sort_by],
                                                                       nan=-np.inf), i))
        rows = [rows[i] for i in order]
    table = {k: np.asarray([r[k] for r in rows], dtype=object if k in ("source", "layer")
                           else None) for k in keys}
    try:
        import pandas as pd
    except ImportError:
        return table
    return pd.DataFrame(table).set_index("source")


# ------------------------------------------------------------------ scorers
def _pretrained_of(estimator):
    """The ``pretrained`` candidate of an estimator, or of the pipeline step that has one."""
    if "pretrained" in getattr(estimator, "get_params", lambda deep=False: {})(deep=False):
        return estimator.pretrained, getattr(estimator, "random_state", None)
    for _, step in getattr(estimator, "steps", []):
        if hasattr(step, "get_params") and "pretrained" in step.get_params(deep=False):
            return step.pretrained, getattr(step, "random_state", None)
    raise TypeError(f"a transferability scorer scores an estimator's pretrained= candidate; "
                    f"{type(estimator).__name__} has no pretrained parameter (nor a pipeline "
                    f"step with one)")


class _TransferabilityScorer:
    """Scorer ``(estimator, X, y) -> score`` of ``estimator.pretrained`` on ``(X, y)``."""

    def __init__(self, score, kwargs):
        self.score = score
        self.kwargs = kwargs

    def __call__(self, estimator, X, y, **ignored):
        source, seed = _pretrained_of(estimator)
        kwargs = dict(self.kwargs)
        if kwargs.get("random_state") is None and isinstance(seed, numbers.Integral):
            kwargs["random_state"] = seed
        return SCORES[self.score][0](source, X, y, **kwargs)

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"make_transferability_scorer({self.score!r}{extra})"


def make_transferability_scorer(score="logme", **kwargs):
    """A scorer of the candidate network, for ``GridSearchCV(..., scoring=...)``.

    The scorer, called as ``scorer(estimator, X, y)``, scores
    ``estimator.pretrained`` (the *unfitted* candidate, not the fitted
    estimator: fine-tuned weights would have seen the training folds) on
    ``(X, y)``, the held-out fold in a search; for a pipeline, the
    ``pretrained`` of the step that has one. A factory is seeded with the
    estimator's ``random_state``.

    ``GridSearchCV`` fits every candidate before scoring it; the scorer does
    not need that fit, so make it cheap: ``FineTuner(..., strategy="full",
    max_epochs=0)`` only builds the network (no training step, no linear
    probe), and ``refit=False`` skips the final fit. :func:`rank_pretrained`
    does the same without a search.

    Parameters
    ----------
    score : {"logme", "leep", "h_score"}, default="logme"
    **kwargs
        Keyword arguments of the score function (``layer``, ``tol``,
        ``output``, ``shrinkage``, ``batch_size``, ``device``,
        ``random_state``).

    Returns
    -------
    callable

    Examples
    --------
    >>> from torch import nn
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sktransfer.transfer import FineTuner, make_transferability_scorer
    >>> X, y = load_digits(return_X_y=True)
    >>> X = (X / 16).astype("float32")
    >>> def narrow():
    ...     return nn.Sequential(nn.Linear(64, 4), nn.ReLU(), nn.Linear(4, 10))
    >>> def wide():
    ...     return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    >>> search = GridSearchCV(FineTuner(narrow, strategy="full", max_epochs=0, random_state=0),
    ...                       {"pretrained": [narrow, wide]}, cv=2, refit=False,
    ...                       scoring=make_transferability_scorer("logme"))
    >>> search.fit(X[:300], y[:300]).best_params_["pretrained"].__name__
    'wide'
    """
    _check_score_name(score)
    fn = SCORES[score][0]
    import inspect

    allowed = [p for p, v in inspect.signature(fn).parameters.items()
               if v.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = set(kwargs) - set(allowed)
    if unknown:
        raise TypeError(f"unexpected keyword(s) {sorted(unknown)} for {score}; its options "
                        f"are {allowed}")
    return _TransferabilityScorer(score, kwargs)


#: ``scoring=`` that scores the ``pretrained`` candidate by LogME.
logme_scorer = make_transferability_scorer("logme")
#: ``scoring=`` that scores the ``pretrained`` candidate by LEEP.
leep_scorer = make_transferability_scorer("leep")
#: ``scoring=`` that scores the ``pretrained`` candidate by the H-score.
h_scorer = make_transferability_scorer("h_score")

