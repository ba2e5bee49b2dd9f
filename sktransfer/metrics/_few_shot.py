"""Few-shot evaluation the way papers report it: accuracy over many episodes, with a 95% CI."""

from numbers import Integral

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import validate_params
from sklearn.utils.validation import check_is_fitted

from ..datasets._validation import NumberInterval, positive_int

__all__ = ["FewShotScorer", "few_shot_score", "make_few_shot_scorer", "score_one_shot_runs"]


def few_shot_score(estimator, X, y, n_way=5, k_shot=1, n_query=15, n_episodes=100,
                   random_state=None, groups=None, return_accuracies=False):
    """Mean accuracy and 95% confidence interval over N-way K-shot episodes.

    Every episode draws ``n_way`` classes of ``y`` (within one group when
    ``groups`` is given), ``k_shot`` support and ``n_query`` query examples
    of each; the estimator is adapted to the support set with
    ``estimator.adapt(X_support, y_support)`` (the fitted estimator itself is
    never changed) and scored on the query set. Evaluate on classes that were
    not seen in ``fit``.

    Parameters
    ----------
    estimator : fitted estimator with ``adapt``
    X : array-like of shape (n_samples, ...)
    y : array-like of shape (n_samples,)
    n_way, k_shot, n_query : int, default=5, 1, 15
    n_episodes : int, default=100
    random_state : int, RandomState or None, default=None
        Fixes the episodes (and any randomness of ``adapt``).
    groups : array-like or None, default=None
        Draw each episode's classes from one group (e.g. one alphabet).
    return_accuracies : bool, default=False
        Also return the accuracy of every episode.

    Returns
    -------
    mean : float
        Mean query accuracy over the episodes.
    ci95 : float
        Half-width of the 95% confidence interval of the mean,
        ``1.96 * std / sqrt(n_episodes)``.
    accuracies : ndarray of shape (n_episodes,)
        Only with ``return_accuracies=True``.

    Raises
    ------
    ValueError
        If ``n_way`` exceeds the number of classes, or fewer than ``n_way``
        classes have ``k_shot + n_query`` examples.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.meta import PrototypicalClassifier
    >>> from sktransfer.metrics import few_shot_score
    >>> X, y = load_digits(return_X_y=True)
    >>> proto = PrototypicalClassifier(max_epochs=2, random_state=0).fit(X[y < 5] / 16,
    ...                                                                  y[y < 5])
    >>> mean, ci = few_shot_score(proto, X[y >= 5] / 16, y[y >= 5], n_way=5, k_shot=1,
    ...                           n_query=5, n_episodes=20, random_state=0)
    >>> 0.2 < mean <= 1 and ci > 0
    True
    """
    from ..meta._episodes import EpisodeSampler, _check_positive_int

    if not hasattr(estimator, "adapt"):
        raise TypeError(f"{type(estimator).__name__} has no adapt method; few_shot_score "
                        "needs a few-shot estimator such as sktransfer.meta.MAMLClassifier")
    check_is_fitted(estimator)
    n_episodes = _check_positive_int(n_episodes, "n_episodes", 1)
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {y.shape}")
    if hasattr(X, "iloc"):
        X = X.to_numpy()
    X = np.asarray(X)
    if X.ndim == 0:
        raise ValueError(f"X must be an array with one row per sample, got the scalar {X!r}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise ValueError(f"y holds {int(np.isnan(y).sum())} NaN labels; few-shot episodes "
                         "need a class for every sample (drop the unlabelled rows first)")
    n_classes = len(np.unique(y))
    if isinstance(n_way, (int, np.integer)) and not isinstance(n_way, bool) and \
            n_way > n_classes:
        raise ValueError(f"n_way={n_way} is larger than the number of classes in y "
                         f"({n_classes})")
    rng = check_random_state(random_state)
    sampler = EpisodeSampler(y, n_way, k_shot, n_query, groups=groups, random_state=rng)
    accs = np.empty(n_episodes)
    for i in range(n_episodes):
        ep = sampler.sample()
        labels = ep.classes
        adapted = _adapt(estimator, X[ep.support_index], labels[ep.support_labels], rng)
        pred = np.asarray(adapted.predict(X[ep.query_index]))
        if pred.shape != ep.query_labels.shape:
            raise ValueError(f"{type(adapted).__name__}.predict returned shape {pred.shape} "
                             f"for {len(ep.query_index)} query samples; expected "
                             f"({len(ep.query_index)},)")
        accs[i] = np.mean(pred == labels[ep.query_labels])
    mean = float(accs.mean())
    ci95 = float(1.96 * accs.std(ddof=1) / np.sqrt(n_episodes)) if n_episodes > 1 else 0.0
    if return_accuracies:
        return mean, ci95, accs
    return mean, ci95


def _adapt(estimator, Xs, ys, rng):
    """Adapt with a seed drawn from ``rng``, so episodes are reproducible as a whole."""
    if hasattr(estimator, "random_state"):
        import copy

        estimator = copy.copy(estimator)
        estimator.random_state = int(rng.randint(np.iinfo(np.int32).max))
    return estimator.adapt(Xs, ys)


class FewShotScorer:
    """A scorer ``scorer(estimator, X, y)`` returning :func:`few_shot_score`'s mean accuracy.

    Build it with :func:`make_few_shot_scorer`. Use it as ``scoring=`` of
    ``GridSearchCV`` / ``cross_validate`` with a class-disjoint splitter
    (:class:`sktransfer.model_selection.ClassDisjointSplit`), so that every
    test fold holds classes the model did not see in ``fit``.

    Parameters
    ----------
    n_way : int, default=5
        Classes per episode (at least 2, checked by
        :func:`make_few_shot_scorer`).
    k_shot : int, default=1
        Support examples per class.
    n_query : int, default=15
        Query examples per class.
    n_episodes : int, default=100
        Episodes per score.
    random_state : int, RandomState or None, default=0
        Draws the episodes (and seeds ``adapt``); the default 0 scores every
        candidate of a search on the same episodes.
    """

    def __init__(self, n_way=5, k_shot=1, n_query=15, n_episodes=100, random_state=0):
        self.n_way = n_way
        self.k_shot = k_shot
        self.n_query = n_query
        self.n_episodes = n_episodes
        self.random_state = random_state

    def __repr__(self):
        return (f"FewShotScorer(n_way={self.n_way}, k_shot={self.k_shot}, "
                f"n_query={self.n_query}, n_episodes={self.n_episodes})")

    def __call__(self, estimator, X, y, **kwargs):
        if kwargs:
            raise TypeError(f"{self!r} got unexpected arguments {sorted(kwargs)}")
        return few_shot_score(estimator, X, y, n_way=self.n_way, k_shot=self.k_shot,
                              n_query=self.n_query, n_episodes=self.n_episodes,
                              random_state=self.random_state)[0]


@validate_params(
    {
        "n_way": [NumberInterval(Integral, 2, None, closed="left")],
        "k_shot": [positive_int()],
        "n_query": [positive_int()],
        "n_episodes": [positive_int()],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_few_shot_scorer(n_way=5, k_shot=1, n_query=15, n_episodes=100, random_state=0):
    """A scorer for model selection with few-shot episodes (see :func:`few_shot_score`).

    ``random_state`` defaults to 0 so that every candidate of a search is
    scored on the same episodes. The parameters are checked here, so that a
    bad value fails before a search fits anything.

    Parameters
    ----------
    n_way : int, default=5
        Classes per episode (at least 2).
    k_shot : int, default=1
        Support examples per class.
    n_query : int, default=15
        Query examples per class.
    n_episodes : int, default=100
        Episodes per score.
    random_state : int, RandomState or None, default=0
        Draws the episodes (and seeds ``adapt``); the default 0 scores every
        candidate of a search on the same episodes.

    Returns
    -------
    FewShotScorer
        ``scorer(estimator, X, y)``: the mean query accuracy of
        :func:`few_shot_score` with these parameters.

    Examples
    --------
    >>> from sktransfer.metrics import make_few_shot_scorer
    >>> make_few_shot_scorer(n_way=5, k_shot=1)
    FewShotScorer(n_way=5, k_shot=1, n_query=15, n_episodes=100)
    """
    return FewShotScorer(n_way=n_way, k_shot=k_shot, n_query=n_query,
                         n_episodes=n_episodes, random_state=random_state)


def score_one_shot_runs(estimator, runs):
    """Error rate of a few-shot estimator on one-shot runs (Lake et al.'s protocol).

    For each run the fitted estimator adapts to the run's training set (one
    image per character; the estimator itself is never changed) and
    classifies its test set. Lake et al. report the mean error over their
    20 runs: humans 4.5%, Bayesian program learning 3.3%, Siamese nets 8.0%.

    Parameters
    ----------
    estimator : fitted estimator with ``adapt``
        A few-shot classifier of :mod:`sktransfer.meta`.
    runs : list of Bunch
        Runs with ``X_train``, ``y_train``, ``X_test``, ``y_test``, as
        :func:`sktransfer.datasets.make_one_shot_runs` builds them.

    Returns
    -------
    dict
        ``"mean_error"`` (the mean over the runs of each run's error rate),
        ``"std_error"`` (their standard deviation across runs) and
        ``"errors"`` (one error rate per run, an ndarray).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.datasets import make_one_shot_runs
    >>> from sktransfer.meta import PrototypicalClassifier
    >>> from sktransfer.metrics import score_one_shot_runs
    >>> X, y = load_digits(return_X_y=True)
    >>> X = (X / 16).astype("float32")
    >>> proto = PrototypicalClassifier(n_way=5, max_epochs=2, episodes_per_epoch=20,
    ...                                random_state=0).fit(X[y < 5], y[y < 5])
    >>> runs = make_one_shot_runs(X[y >= 5], y[y >= 5], groups=(y[y >= 5] * 0), n_runs=3,
    ...                           n_way=5, random_state=0)
    >>> result = score_one_shot_runs(proto, runs)
    >>> sorted(result), 0 <= result["mean_error"] < 0.8
    (['errors', 'mean_error', 'std_error'], True)
    """
    if not hasattr(estimator, "adapt"):
        raise TypeError(f"{type(estimator).__name__} has no adapt method; one-shot runs score "
                        "a few-shot estimator of sktransfer.meta")
    check_is_fitted(estimator)
    runs = list(runs)
    if not runs:
        raise ValueError("runs is empty; build them with sktransfer.datasets.make_one_shot_runs")
    errors = []
    for k, run in enumerate(runs):
        try:
            X_train, y_train, X_test, y_test = (run["X_train"], run["y_train"], run["X_test"],
                                                run["y_test"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"runs[{k}] must have X_train, y_train, X_test and y_test") from exc
        adapted = estimator.adapt(X_train, y_train)
        errors.append(float(np.mean(adapted.predict(X_test) != np.asarray(y_test))))
    errors = np.asarray(errors)
    return {"mean_error": float(errors.mean()), "std_error": float(errors.std()),
            "errors": errors}
