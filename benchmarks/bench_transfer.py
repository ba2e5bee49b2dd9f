"""Transfer learning: accuracy of every fine-tuning strategy against training from scratch.

Three source-to-target settings, each with k labelled examples per target class:

1. **MNIST digits 0-4 -> 5-9** (k = 1, 5, 10, 50): a small CNN pretrained on
   the digits 0-4 of the MNIST test split; the target classes are new digits.
2. **Omniglot, held-out alphabet** (k = 1, 5, 10): the same CNN pretrained on
   four alphabets of ``background_small1`` (112 characters); the target is
   the 24-way classification of the fifth alphabet (Greek), tested on the
   remaining drawers. 20 drawers per character, so k = 50 does not exist.
3. **Domain shift, MNIST -> 8x8 digits** (k = 1, 5, 10): the MNIST 0-4
   network adapted to scikit-learn's 8x8 digits 0-4, upsampled to 20x20 and
   padded to 28x28; the label set is the same, so the head can be kept.

Methods: scratch training of the same architecture, the linear probe
(``PretrainedFeatures`` + ``LogisticRegression``), and ``FineTuner`` with
``last``, ``top``, ``full``, ``gradual`` and ``lp_ft``, each of the last
four also with L2-SP, the parameter-efficient ``LoRA`` (rank 4 and 2) and
``bitfit``, and ``full`` with the BSS and DELTA feature regularisers; for
those, a second table gives the trainable parameters and seconds per epoch
against ``full``. Every cell is the mean (and standard deviation) test
accuracy over the seeds; the seed draws the k-shot training set and the
network's randomness. Hyperparameters are fixed across settings (no
per-setting tuning); see ``METHODS``.

Usage::

    python benchmarks/bench_transfer.py            # 3 seeds, every k (about 10 min)
    python benchmarks/bench_transfer.py --quick    # 1 seed, fewer k
    python benchmarks/bench_transfer.py --methods full "lora r=4" bitfit --settings omniglot

Needs ``SKTRANSFER_DATA`` pointing at the MNIST and Omniglot files.
"""

import argparse
import os
import time
import warnings

os.environ.setdefault("SKTRANSFER_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.frozen import FrozenEstimator  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from torch import nn  # noqa: E402

from sktransfer.datasets import load_mnist, load_omniglot  # noqa: E402
from sktransfer.transfer import (  # noqa: E402
    BSS,
    DELTA,
    FineTuner,
    LoRA,
    PretrainedFeatures,
)

EPOCHS = 50
L2SP_ALPHA = 0.1


def small_cnn(n_out=5):
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 9, 64), nn.ReLU(), nn.Linear(64, n_out))


def _ft(source, seed, head="replace", **kw):
    return FineTuner(FrozenEstimator(source), head=head, max_epochs=EPOCHS, random_state=seed,
                     **kw)


#: name -> builder(source, seed, head)
METHODS = {
    "scratch": lambda s, seed, head: FineTuner(small_cnn, strategy="full", bn="train", lr=1e-3,
                                               max_epochs=EPOCHS, random_state=seed),
    "linear probe": lambda s, seed, head: make_pipeline(
        PretrainedFeatures(FrozenEstimator(s)), LogisticRegression(max_iter=2000)),
    "last": lambda s, seed, head: _ft(s, seed, head, strategy="last", lr=1e-2),
    "top": lambda s, seed, head: _ft(s, seed, head, strategy="top", lr=1e-2, backbone_lr=1e-3),
    "full": lambda s, seed, head: _ft(s, seed, head, strategy="full", lr=1e-2,
                                      backbone_lr=1e-3),
    "gradual": lambda s, seed, head: _ft(s, seed, head, strategy="gradual", unfreeze_every=10,
                                         lr=1e-2, backbone_lr=1e-3),
    "lp_ft": lambda s, seed, head: _ft(s, seed, head, strategy="lp_ft", lr=1e-3),
}
for _name in ("top", "full", "gradual", "lp_ft"):
    METHODS[f"{_name} + L2-SP"] = (
        lambda name: lambda s, seed, head: METHODS[name](s, seed, head).set_params(
            l2sp_alpha=L2SP_ALPHA))(_name)
# parameter-efficient strategies and feature regularisers, against "full"
METHODS.update({
    "lora r=4": lambda s, seed, head: _ft(s, seed, head, strategy=LoRA(rank=4), lr=1e-2),
    "lora r=2": lambda s, seed, head: _ft(s, seed, head, strategy=LoRA(rank=2), lr=1e-2),
    "bitfit": lambda s, seed, head: _ft(s, seed, head, strategy="bitfit", lr=1e-2),
    "full + BSS": lambda s, seed, head: METHODS["full"](s, seed, head).set_params(
        regularizer=BSS()),
    "full + DELTA": lambda s, seed, head: METHODS["full"](s, seed, head).set_params(
        regularizer=DELTA()),
})
#: the rows of the cost table: trainable parameters and seconds per epoch
EFFICIENCY = ["full", "lora r=4", "lora r=2", "bitfit", "full + BSS", "full + DELTA"]


def shots(y, classes, k, seed, n_test=None):
    rng = np.random.RandomState(seed)
    train, test = [], []
    for c in classes:
        idx = rng.permutation(np.flatnonzero(y == c))
        train.append(idx[:k])
        test.append(idx[k:])
    test = np.concatenate(test)
    if n_test is not None:
        test = rng.permutation(test)[:n_test]
    return np.concatenate(train), test


def run_setting(title, source, X, y, classes, ks, seeds, methods, head="replace", n_test=None):
    print(f"\n## {title}\n", flush=True)
    results = {m: {k: [] for k in ks} for m in methods}
    costs = {m: {"params": [], "epoch_s": []} for m in methods}
    t0 = time.perf_counter()
    for k in ks:
        for seed in seeds:
            tr, te = shots(y, classes, k, seed, n_test)
            for m in methods:
                model = METHODS[m](source, seed, head)
                t = time.perf_counter()
                model.fit(X[tr], y[tr])
                elapsed = time.perf_counter() - t
                results[m][k].append(model.score(X[te], y[te]))
                if isinstance(model, FineTuner):
                    costs[m]["params"].append(model.n_trainable_params_)
                    costs[m]["epoch_s"].append(elapsed / max(model.max_epochs_, 1))
    header = f"| {'method':<18} | " + " | ".join(f"k={k:<11}" for k in ks) + " |"
    print(header)
    print("|" + "-" * 20 + "|" + "|".join("-" * 15 for _ in ks) + "|")
    for m in methods:
        cells = [f"{np.mean(results[m][k]):.3f} ± {np.std(results[m][k]):.3f}" for k in ks]
        print(f"| {m:<18} | " + " | ".join(f"{c:<13}" for c in cells) + " |")
    fine = [m for m in methods if m not in ("scratch", "linear probe")]
    print()
    for k in ks:
        scratch = np.mean(results["scratch"][k])
        best = max(fine, key=lambda m: np.mean(results[m][k]))
        lp = np.mean(results["lp_ft"][k]) if "lp_ft" in results else np.nan
        print(f"k={k}: best fine-tuning ({best}) {np.mean(results[best][k]):.3f} vs scratch "
              f"{scratch:.3f}: {np.mean(results[best][k]) - scratch:+.3f}; "
              f"lp_ft {lp - scratch:+.3f}")
    rows = [m for m in EFFICIENCY if m in methods and costs[m]["params"]]
    if "full" in rows and len(rows) > 1:
        full_params = np.mean(costs["full"]["params"])
        full_s = np.mean(costs["full"]["epoch_s"])
        print("\n| method             | trainable params | vs full | s / epoch | vs full | "
              + " | ".join(f"acc - full, k={k}" for k in ks) + " |")
        print("|" + "|".join("-" * w for w in [20, 18, 9, 11, 9] + [20] * len(ks)) + "|")
        for m in rows:
            p, sec = np.mean(costs[m]["params"]), np.mean(costs[m]["epoch_s"])
            gaps = [np.mean(results[m][k]) - np.mean(results["full"][k]) for k in ks]
            print(f"| {m:<18} | {p:>16,.0f} | {p / full_params:>6.1%} | {sec:>9.4f} | "
                  f"{sec / full_s:>6.2f}x | " + " | ".join(f"{g:>+18.3f}" for g in gaps) + " |")
        print("(seconds per epoch: the whole fit, linear probe and DELTA's attention "
              "included, over the epochs)")
    print(f"({len(seeds)} seeds, {time.perf_counter() - t0:.0f} s)", flush=True)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed and fewer k")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), metavar="METHOD",
                        help="only these methods (with scratch); default: all")
    parser.add_argument("--settings", nargs="+", choices=["mnist", "omniglot", "domain"],
                        default=["mnist", "omniglot", "domain"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    # LogisticRegression warns when there are few examples per class: expected here.
    warnings.filterwarnings("ignore", message="The number of unique classes is greater")
    seeds = [0] if args.quick else [0, 1, 2]
    all_methods = list(METHODS)
    if args.methods:
        all_methods = ["scratch"] + [m for m in args.methods if m != "scratch"]

    X, y = load_mnist("test", return_X_y=True)
    t = time.perf_counter()
    mnist_src = FineTuner(small_cnn, strategy="full", head="keep", bn="train", lr=2e-3,
                          max_epochs=3, batch_size=64, random_state=0).fit(X[y < 5], y[y < 5])
    print(f"MNIST 0-4 source: pretrained in {time.perf_counter() - t:.0f} s")
    if "mnist" in args.settings:
        run_setting("MNIST digits 0-4 -> 5-9 (5-way, accuracy on 2,000 held-out images)",
                    mnist_src, X, y, range(5, 10), [1, 10] if args.quick else [1, 5, 10, 50],
                    seeds, all_methods, n_test=2000)

    if "omniglot" in args.settings:
        run_omniglot(args, seeds, all_methods)
    if "domain" in args.settings:
        run_domain(args, seeds, all_methods, mnist_src)


def run_omniglot(args, seeds, all_methods):
    om = load_omniglot("background_small1")
    greek = list(om.group_names).index("Greek")
    src = om.groups != greek
    t = time.perf_counter()
    om_src = FineTuner(small_cnn, strategy="full", bn="train", lr=2e-3, max_epochs=10,
                       batch_size=32, random_state=0).fit(om.data[src], om.target[src])
    print(f"\nOmniglot source (4 alphabets, {len(np.unique(om.target[src]))} characters): "
          f"pretrained in {time.perf_counter() - t:.0f} s")
    Xo, yo = om.data[~src], om.target[~src]
    run_setting("Omniglot, held-out alphabet (Greek, 24-way, accuracy on the other drawers)",
                om_src, Xo, yo, np.unique(yo), [1, 5] if args.quick else [1, 5, 10], seeds,
                all_methods)



def run_domain(args, seeds, all_methods, mnist_src):
    d = load_digits()
    images = torch.as_tensor(d.images[:, None] / 16.0, dtype=torch.float32)
    images = nn.functional.interpolate(images, size=(20, 20), mode="bilinear",
                                       align_corners=False)
    Xd = nn.functional.pad(images, (4, 4, 4, 4)).numpy()
    keep = d.target < 5
    run_setting("Domain shift: MNIST 0-4 -> 8x8 digits 0-4 resized (head kept)",
                mnist_src, Xd[keep], d.target[keep], range(5), [1, 10] if args.quick
                else [1, 5, 10], seeds, [m for m in all_methods if m in (
                    "scratch", "linear probe", "last", "full", "lp_ft", "full + L2-SP",
                    "lora r=4", "bitfit", "full + BSS", "full + DELTA")], head="keep")


if __name__ == "__main__":
    main()
