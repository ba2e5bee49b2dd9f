"""The sktransfer demo: ``python -m sktransfer`` (or the ``sktransfer`` command).

It needs no download: on scikit-learn's handwritten digits it builds a
real multi-task problem (which digit, is it odd, is it 5 or more) with 30%
of the labels missing, searches architectures and task-weighting schemes
with ``GridSearchCV`` in a scikit-learn pipeline, and prints the results.
"""

import argparse
import sys
import time

import numpy as np


def _digit_tasks(random_state=0):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    Y = np.column_stack([y, y % 2, y >= 5]).astype(float)
    rng = np.random.RandomState(random_state)
    Y[rng.rand(*Y.shape) < 0.3] = np.nan  # each task sees 70% of the labels
    return X, Y, ["digit", "odd", "high"]


def multitask_demo(quick=False, out=sys.stdout):
    """Grid-search weighting schemes for a multi-task model; print a table."""
    from sklearn.model_selection import GridSearchCV, KFold, train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sktransfer import MultiTaskClassifier
    from sktransfer.multitask import StaticWeighting

    X, Y, names = _digit_tasks()
    X_tr, X_te, Y_tr, Y_te = train_test_split(X, Y, test_size=0.3, random_state=0)
    pipe = make_pipeline(
        StandardScaler(),
        MultiTaskClassifier(hidden_layer_sizes=(64,), max_epochs=10 if quick else 30,
                            lr=2e-3, random_state=0),
    )
    grid = {
        "multitaskclassifier__architecture": ["hard", "conditioned"],
        "multitaskclassifier__weighting": ["equal", "uncertainty",
                                           StaticWeighting([2.0, 1.0, 1.0])],
    }
    print("Multi-task learning on scikit-learn's digits: 3 tasks (digit, odd, high), "
          f"30% of labels missing; {len(X_tr)} training rows, {len(X_te)} test rows.", file=out)
    start = time.perf_counter()
    # An explicit splitter: with an integer cv, scikit-learn inspects a classifier's
    # target for stratification and rejects the NaN that mark missing labels.
    cv = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(pipe, grid, cv=cv).fit(X_tr, Y_tr)
    elapsed = time.perf_counter() - start
    res = search.cv_results_
    print(f"\nGridSearchCV, 3-fold, {len(res['params'])} settings, {elapsed:.1f} s:", file=out)
    print(f"  {'architecture':<13}{'weighting':<42}{'CV score':>9}{'fit s':>8}", file=out)
    for i in np.argsort(res["rank_test_score"]):
        p = res["params"][i]
        w = p["multitaskclassifier__weighting"]
        w = w if isinstance(w, str) else repr(w)
        print(f"  {p['multitaskclassifier__architecture']:<13}{w:<42}"
              f"{res['mean_test_score'][i]:>9.3f}{res['mean_fit_time'][i]:>8.2f}", file=out)
    best = search.best_estimator_
    pred = best.predict(X_te)
    print("\nBest setting on the held-out rows (accuracy on labelled entries):", file=out)
    for k, name in enumerate(names):
        keep = ~np.isnan(Y_te[:, k])
        print(f"  {name:<6} {np.mean(pred[keep, k] == Y_te[keep, k]):.3f}", file=out)
    weights = best[-1].net_.history[-1, "train_task_weights"]
    print("  task weights in the last epoch: "
          + ", ".join(f"{n}={w:.2f}" for n, w in zip(names, weights)), file=out)
    return search


def main(argv=None):
    """Entry point of ``python -m sktransfer`` and the ``sktransfer`` command."""
    parser = argparse.ArgumentParser(prog="sktransfer", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="demo", choices=["demo"],
                        help="what to run (default: demo)")
    parser.add_argument("--quick", action="store_true", help="fewer epochs, for a smoke test")
    args = parser.parse_args(argv)
    if args.command == "demo":
        multitask_demo(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
