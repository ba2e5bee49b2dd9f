"""Every sktransfer estimator on the GPU: predictions against the CPU fit, and time per epoch.

For each public estimator this fits one small configuration on
scikit-learn's digits (or sinusoid tasks for ``MAMLRegressor``) twice, with
``device="cpu"`` and ``device="cuda"`` and the same ``random_state``, and
compares the two fitted models on held-out rows:

* classifiers: the share of identical predicted labels and the largest
  absolute difference between the two ``predict_proba`` arrays;
* regressors: the largest absolute difference between the predictions,
  relative to the spread of the targets.

CPU and GPU kernels add numbers in different orders, so the two fits are
close, not bit-identical; a row is flagged ``CHECK`` when fewer than 90% of
the labels agree or a regressor's relative difference exceeds 0.1. It also
checks ``device="auto"`` (which must pick CUDA), that a GPU-fitted model
pickles, that its weights saved with ``save_weights`` load into a CPU
estimator (fitted with ``max_epochs=0``) with the same predictions, and that
the pickled GPU models unpickle and predict in a child process that sees no
GPU (``CUDA_VISIBLE_DEVICES=""``).

For the estimators with a ``precision`` parameter (multi-task, transfer,
continual) it also fits ``precision="bf16"`` on the GPU and reports its time
per epoch and the agreement of its labels with the float32 GPU fit
(``bf16 agree``; a regressor's column is the relative difference).

Time per epoch is the wall time of ``fit`` divided by the epochs recorded in
``net_.history`` (for continual learners, epochs over all tasks; for meta
learners, epochs of ``episodes_per_epoch`` episodes). A first, untimed GPU
fit warms up CUDA. The networks are small, so the GPU is not expected to win
here; the column shows the per-epoch overhead on each device.

Run ``python benchmarks/gpu_smoke.py`` on a machine with CUDA (``--quick``
for fewer epochs). ``--cpu-only`` runs the CPU half alone (to check the
script on a machine without a GPU); without it the script exits with a
message when CUDA is not available.
"""

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time
import warnings

os.environ.setdefault("SKTRANSFER_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import sktransfer  # noqa: E402
from sktransfer.datasets import make_permuted_tasks, make_sinusoid_tasks  # noqa: E402


def _source_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def make_cases(epochs):
    """(name, estimator, fit args, fit kwargs, X_test, adapt support or None)."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    tr, te = slice(0, 1200), slice(1200, None)
    task = (np.arange(len(y)) % 2)
    y2 = np.where(task == 0, y, y % 3)
    Xt = np.column_stack([X, task.astype(np.float32)])
    Xs, ys, ts = make_permuted_tasks(X[:600], y[:600], n_tasks=2, random_state=0)
    rng = np.random.RandomState(0)
    Xr = rng.randn(600, 8).astype(np.float32)
    Yr = np.column_stack([Xr[:, 0] + Xr[:, 1], Xr[:, 2] - Xr[:, 3]])
    base, new = y < 5, y >= 5
    Xn, yn = X[new], y[new]
    meta = dict(max_epochs=epochs, random_state=0)
    cases = [
        ("MultiTaskClassifier", sktransfer.MultiTaskClassifier(
            task_column=-1, max_epochs=epochs, random_state=0), (Xt[tr], y2[tr]), {}, Xt[te],
         None),
        ("MultiTaskRegressor", sktransfer.MultiTaskRegressor(
            max_epochs=epochs, lr=1e-2, random_state=0), (Xr[:400], Yr[:400]), {}, Xr[400:],
         None),
        ("FineTuner", sktransfer.FineTuner(
            _source_net(), strategy="lp_ft", max_epochs=epochs, lr=1e-2, random_state=0),
         (X[tr], y[tr]), {}, X[te], None),
        ("FineTunerRegressor", sktransfer.FineTunerRegressor(
            torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)),
            strategy="full", max_epochs=epochs, lr=1e-2, random_state=0),
         (Xr[:400], Yr[:400, 0]), {}, Xr[400:], None),
        ("ContinualClassifier", sktransfer.ContinualClassifier(
            strategy="replay", scenario="domain", max_epochs=max(1, epochs // 2),
            random_state=0), (Xs, ys), {"task_ids": ts}, X[600:], None),
        ("EWCContinualClassifier", sktransfer.EWCContinualClassifier(
            ewc_lambda=1000.0, scenario="domain", max_epochs=max(1, epochs // 2),
            random_state=0), (Xs, ys), {"task_ids": ts}, X[600:], None),
        ("ProgressiveNetworkClassifier", sktransfer.ProgressiveNetworkClassifier(
            hidden_layer_sizes=(32,), max_epochs=max(1, epochs // 2), random_state=0),
         (Xs, ys), {"task_ids": ts}, None, None),
        ("MAMLClassifier", sktransfer.MAMLClassifier(
            n_way=5, k_shot=5, inner_lr=0.5, episodes_per_epoch=50, **meta),
         (X[base], y[base]), {}, Xn[50:], (Xn[:50], yn[:50])),
        ("ReptileClassifier", sktransfer.ReptileClassifier(
            n_way=5, episodes_per_epoch=50, **meta), (X[base], y[base]), {}, Xn[50:],
         (Xn[:50], yn[:50])),
        ("PrototypicalClassifier", sktransfer.PrototypicalClassifier(
            episodes_per_epoch=50, **meta), (X[base], y[base]), {}, Xn[50:], (Xn[:50], yn[:50])),
        ("MatchingClassifier", sktransfer.MatchingClassifier(
            episodes_per_epoch=50, **meta), (X[base], y[base]), {}, Xn[50:], (Xn[:50], yn[:50])),
        ("RelationClassifier", sktransfer.RelationClassifier(
            episodes_per_epoch=50, **meta), (X[base], y[base]), {}, Xn[50:], (Xn[:50], yn[:50])),
        ("BlackBoxMetaClassifier", sktransfer.BlackBoxMetaClassifier(
            episodes_per_epoch=50, **meta), (X[base], y[base]), {}, Xn[50:], (Xn[:50], yn[:50])),
        ("BaselineFewShotClassifier", sktransfer.BaselineFewShotClassifier(
            head="cosine", **meta), (X[base], y[base]), {}, Xn[50:], (Xn[:50], yn[:50])),
    ]
    Xm, ym, gm = make_sinusoid_tasks(n_tasks=100, random_state=0)
    Xq, yq, _ = make_sinusoid_tasks(n_tasks=1, n_samples_per_task=60, random_state=1)
    cases.append(("MAMLRegressor", sktransfer.MAMLRegressor(episodes_per_epoch=50, **meta),
                  (Xm, ym), {"groups": gm}, Xq[10:], (Xq[:10], yq[:10])))
    return cases


def outputs(est, X_test, support, fit_kwargs):
    """Predictions (and probabilities for classifiers) of a fitted estimator."""
    model = est.adapt(*support) if support is not None else est
    kwargs = {}
    if X_test is None:  # task-incremental: answer every training row with its task
        X_test, kwargs = est._smoke_X, {"task_ids": fit_kwargs["task_ids"]}
    pred = np.asarray(model.predict(X_test, **kwargs))
    proba = model.predict_proba(X_test, **kwargs) if hasattr(model, "predict_proba") else None
    return pred, proba


def timed_fit(est, args, fit_kwargs):
    sync = str(est.get_params().get("device", "cpu")).startswith("cuda")
    if sync:
        torch.cuda.synchronize()
    start = time.perf_counter()
    est.fit(*args, **fit_kwargs)
    if sync:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    est._smoke_X = args[0]
    return seconds / max(1, len(est.net_.history))


def compare(a, b, is_classifier, y_spread):
    """(agreement or None, max |diff| of probabilities or relative diff of predictions)."""
    (pa, qa), (pb, qb) = a, b
    if is_classifier:
        agree = float(np.mean(pa == pb))
        diff = float(np.max(np.abs(qa - qb))) if qa is not None else float("nan")
        return agree, diff
    return None, float(np.max(np.abs(pa.astype(float) - pb.astype(float)))) / y_spread


def weights_to_cpu(est, args, fit_kwargs, X_test, support):
    """Save a (GPU-)fitted estimator's weights, load them into a CPU estimator."""
    cpu = clone(est).set_params(device="cpu", max_epochs=0).fit(*args, **fit_kwargs)
    cpu._smoke_X = args[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "weights.safetensors")
        est.save_weights(path)
        cpu.load_weights(path)
    return outputs(cpu, X_test, support, fit_kwargs)


def unpickle_on_cpu(models):
    """Unpickle fitted models in a process that sees no GPU; return their predictions.

    ``models`` maps a name to ``(pickled estimator, X_test, support, fit_kwargs)``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "models.pkl"), os.path.join(tmp, "preds.pkl")
        with open(src, "wb") as f:
            pickle.dump(models, f)
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
        subprocess.run([sys.executable, os.path.abspath(__file__), "--predict-pickled", src,
                        dst], env=env, check=True)
        with open(dst, "rb") as f:
            return pickle.load(f)


def predict_pickled(src, dst):
    """The child of :func:`unpickle_on_cpu`: load every model, predict, save."""
    warnings.simplefilter("ignore")
    assert not torch.cuda.is_available()
    with open(src, "rb") as f:
        models = pickle.load(f)
    preds = {}
    for name, (blob, X_test, support, fit_kwargs) in models.items():
        try:
            preds[name] = outputs(pickle.loads(blob), X_test, support, fit_kwargs)
        except Exception as exc:
            preds[name] = f"{type(exc).__name__}: {exc}"
    with open(dst, "wb") as f:
        pickle.dump(preds, f)


def agrees(a, b, is_classifier, spread, tol):
    agree, diff = compare(a, b, is_classifier, spread)
    return agree >= tol if is_classifier else diff <= 1 - tol


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs")
    parser.add_argument("--cpu-only", action="store_true",
                        help="run the CPU half only (no CUDA needed)")
    parser.add_argument("--device", default="cuda",
                        help="the device compared with the CPU (default cuda; 'cpu' runs every "
                             "check CPU against CPU, to test this script without a GPU)")
    parser.add_argument("--predict-pickled", nargs=2, metavar=("SRC", "DST"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.predict_pickled:
        predict_pickled(*args.predict_pickled)
        return 0
    cuda = torch.cuda.is_available()
    if not cuda and not args.cpu_only and args.device != "cpu":
        print("gpu_smoke: no CUDA device is available (torch.cuda.is_available() is False). "
              "Run it on a machine with a GPU, or pass --cpu-only to check the CPU half.")
        return 2
    warnings.simplefilter("ignore", UserWarning)
    epochs = 2 if args.quick else 6
    other = args.device
    runs = [("cpu", "cpu")] if args.cpu_only else [("cpu", "cpu"), ("other", other)]
    auto_expected = "cuda" if cuda else "cpu"
    where = torch.cuda.get_device_name(0) if cuda and not args.cpu_only else "CPU only"
    print(f"sktransfer {sktransfer.__version__}, torch {torch.__version__}, {where}, "
          f"{epochs} epochs (continual: half per task)")
    header = f"{'estimator':<29}{'cpu s/ep':>9}"
    if not args.cpu_only:
        header += f"{other[:5] + ' s/ep':>10}{'ratio':>7}{'agree':>7}{'max diff':>10}{'auto':>6}"
        header += f"{'pickle':>8}{'weights':>9}{'bf16 s/ep':>10}{'bf16 agree':>11}"
    print(header, flush=True)
    failures, pickled, expected = [], {}, {}
    for name, est, fit_args, fit_kwargs, X_test, support in make_cases(epochs):
        is_clf = hasattr(est, "predict_proba")
        spread = float(np.std(fit_args[1])) if not is_clf else 1.0
        fitted, per_epoch = {}, {}
        try:
            for key, device in runs:
                model = clone(est).set_params(device=device)
                # Untimed warm-up: lazy initialisation, and the CUDA context and kernels.
                clone(model).fit(*fit_args, **fit_kwargs)
                per_epoch[key] = timed_fit(model, fit_args, fit_kwargs)
                fitted[key] = model
            row = f"{name:<29}{per_epoch['cpu']:>9.3f}"
            ref = outputs(fitted["cpu"], X_test, support, fit_kwargs)
            if ref[0].shape[0] == 0 or not np.all(np.isfinite(ref[0].astype(float))):
                raise AssertionError("empty or non-finite CPU predictions")
            if not args.cpu_only:
                gpu = fitted["other"]
                out = outputs(gpu, X_test, support, fit_kwargs)
                agree, diff = compare(ref, out, is_clf, spread)
                auto = clone(est).set_params(device="auto").fit(*fit_args, **fit_kwargs)
                auto_ok = str(auto.net_.device).startswith(auto_expected)
                blob = pickle.dumps(gpu)
                pickle_ok = np.array_equal(
                    outputs(pickle.loads(blob), X_test, support, fit_kwargs)[0], out[0])
                moved = weights_to_cpu(gpu, fit_args, fit_kwargs, X_test, support)
                weights_ok = agrees(out, moved, is_clf, spread, 0.99)
                ok = agrees(ref, out, is_clf, spread, 0.9) and auto_ok and pickle_ok \
                    and weights_ok
                row += (f"{per_epoch['other']:>10.3f}{per_epoch['cpu'] / per_epoch['other']:>7.2f}"
                        f"{'' if agree is None else f'{agree:.2f}':>7}{diff:>10.2e}"
                        f"{'ok' if auto_ok else 'NO':>6}{'ok' if pickle_ok else 'NO':>8}"
                        f"{'ok' if weights_ok else 'NO':>9}")
                if "precision" in est.get_params():
                    half = clone(est).set_params(device=other, precision="bf16")
                    half_epoch = timed_fit(half, fit_args, fit_kwargs)
                    half_out = outputs(half, X_test, support, fit_kwargs)
                    half_agree, half_diff = compare(out, half_out, is_clf, spread)
                    ok = ok and agrees(out, half_out, is_clf, spread, 0.9)
                    shown = half_agree if half_agree is not None else half_diff
                    row += f"{half_epoch:>10.3f}{shown:>11.2f}"
                else:
                    row += f"{'-':>10}{'-':>11}"
                if not ok:
                    row += "  CHECK"
                    failures.append(name)
                pickled[name] = (blob, X_test, support, fit_kwargs)
                expected[name] = (out, is_clf, spread)
            print(row, flush=True)
        except Exception as exc:  # report every estimator, then fail at the end
            print(f"{name:<29}FAILED: {type(exc).__name__}: {exc}", flush=True)
            failures.append(name)
    if not args.cpu_only:
        # PretrainedFeatures trains nothing: compare the features it extracts.
        X = (load_digits().data / 16).astype(np.float32)
        feats = {key: sktransfer.PretrainedFeatures(_source_net(), device=device).fit_transform(X)
                 for key, device in runs}
        diff = float(np.max(np.abs(feats["cpu"] - feats["other"])))
        print(f"{'PretrainedFeatures':<29}transform max |diff| {diff:.2e}", flush=True)
        if not diff <= 1e-3:
            failures.append("PretrainedFeatures")
    if pickled:
        # The contract: a model trained on the GPU unpickles and predicts on a machine without one.
        print(f"\nfitted on {other}, unpickled in a process without CUDA "
              "(CUDA_VISIBLE_DEVICES=''):")
        for name, pred in unpickle_on_cpu(pickled).items():
            out, is_clf, spread = expected[name]
            ok = not isinstance(pred, str) and agrees(out, pred, is_clf, spread, 0.99)
            print(f"  {name:<29}{'ok' if ok else 'FAILED: ' + str(pred)}", flush=True)
            if not ok:
                failures.append(name + " (unpickle on CPU)")
    if failures:
        print(f"\n{len(failures)} estimator(s) need a look: {', '.join(failures)}")
        return 1
    print("\nall estimators OK" + (" (CPU half only)" if args.cpu_only else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
