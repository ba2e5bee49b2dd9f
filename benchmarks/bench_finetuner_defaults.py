"""FineTuner's defaults on small data: before and after, against the linear probe.

A new user's report: ``FineTuner(net, strategy="last")`` with its defaults
reached 0.33 accuracy where the linear probe
``make_pipeline(PretrainedFeatures(net), LogisticRegression())`` on the same
features reached 0.72, with 5 examples per class. This script measures every
strategy with the defaults of before (``lr=1e-3`` for the head and the
backbone, ``lr / 10`` for the backbone of ``"lp_ft"``, ``max_epochs=20``,
``bn="freeze"``, and a ``"last"`` head trained by Adam alone) and with the
current defaults (``FineTuner(net, strategy=s)``, nothing else set), side by
side, next to the linear probe.

The old defaults are spelled with today's public API: the old ``"last"`` is
``strategy="top", n_layers=0`` (the head trained by gradient descent, no
linear probe), and with a given ``lr`` the backbone still learns at ``lr``
(``lr / 10`` with ``"lp_ft"``), as it always did.

Settings (k labelled examples per target class, the rest of the target
classes for testing; the seed draws the k examples and the network's
randomness):

* **digits, BN MLP**: scikit-learn's 8x8 digits, an MLP with batch norm
  (64-64-BN-32-5) pretrained on the digits 0-4, target the digits 5-9;
* **digits, MLP**: the same without batch norm, pretrained on 5-9, target 0-4;
* ``--real`` adds the small CNN of ``bench_transfer.py`` on MNIST 0-4 -> 5-9
  (2,000 test images) and on Omniglot (four alphabets -> the 24 Greek
  characters), which need ``SKTRANSFER_DATA``.

The "scratch" row is the same architecture from a factory (random weights,
``strategy="full"``): before, its never-trained batch norm was frozen; with
``bn="auto"`` it trains.

Usage::

    python benchmarks/bench_finetuner_defaults.py             # digits, 3 seeds (~2 min)
    python benchmarks/bench_finetuner_defaults.py --real      # + MNIST, Omniglot (~8 min)
    python benchmarks/bench_finetuner_defaults.py --seeds 1   # quicker
"""

import argparse
import os
import sys
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

from sktransfer.transfer import STRATEGIES, FineTuner, PretrainedFeatures  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the k-shot split (and, in real_settings, the CNN) of the transfer benchmark
from bench_transfer import shots  # noqa: E402

#: The defaults before this change, as explicit parameters.
OLD = dict(lr=1e-3, max_epochs=20, bn="freeze")


def before(source, strategy, seed):
    """FineTuner with the old defaults."""
    if strategy == "last":  # the head trained by Adam alone, no linear probe
        return FineTuner(source, strategy="top", n_layers=0, random_state=seed, **OLD)
    return FineTuner(source, strategy=strategy, random_state=seed, **OLD)


def after(source, strategy, seed):
    """FineTuner with today's defaults."""
    return FineTuner(source, strategy=strategy, random_state=seed)


def probe(source):
    return make_pipeline(PretrainedFeatures(source), LogisticRegression(max_iter=2000))


def mlp(bn=True):
    def make():
        layers = [nn.Linear(64, 64)]
        if bn:
            layers.append(nn.BatchNorm1d(64))
        layers += [nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 5)]
        return nn.Sequential(*layers)
    return make


def run_setting(title, source, factory, X, y, classes, ks, seeds, n_test=None):
    """Print one table: rows are methods, columns (before, after) per k."""
    print(f"\n## {title}\n", flush=True)
    t0 = time.perf_counter()
    frozen = FrozenEstimator(source)
    rows = ["linear probe", *STRATEGIES, "scratch"]
    res = {(r, k, w): [] for r in rows for k in ks for w in ("before", "after")}
    for k in ks:
        for seed in seeds:
            tr, te = shots(y, classes, k, seed, n_test)
            acc = probe(frozen).fit(X[tr], y[tr]).score(X[te], y[te])
            res["linear probe", k, "before"].append(acc)
            res["linear probe", k, "after"].append(acc)
            for s in STRATEGIES:
                for when, make in (("before", before), ("after", after)):
                    model = make(frozen, s, seed).fit(X[tr], y[tr])
                    res[s, k, when].append(model.score(X[te], y[te]))
            for when, make in (("before", before), ("after", after)):
                model = make(factory, "full", seed).fit(X[tr], y[tr])
                res["scratch", k, when].append(model.score(X[te], y[te]))
    cols = [f"k={k} {w}" for k in ks for w in ("before", "after")]
    print(f"| {'method':<12} | " + " | ".join(f"{c:<13}" for c in cols) + " |")
    print("|" + "-" * 14 + "|" + "|".join("-" * 15 for _ in cols) + "|")
    for r in rows:
        cells = [f"{np.mean(res[r, k, w]):.3f} ± {np.std(res[r, k, w]):.3f}"
                 for k in ks for w in ("before", "after")]
        print(f"| {r:<12} | " + " | ".join(f"{c:<13}" for c in cells) + " |")
    print(f"\n({len(seeds)} seeds, {time.perf_counter() - t0:.0f} s)", flush=True)
    return res


def digits_settings(ks, seeds):
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    for bn, src_classes, tgt_classes in ((True, range(5), range(5, 10)),
                                         (False, range(5, 10), range(5))):
        factory = mlp(bn)
        src = np.isin(y, list(src_classes))
        source = FineTuner(factory, strategy="full", head="keep", bn="train", lr=1e-2,
                           max_epochs=30, random_state=0).fit(X[src], y[src])
        title = (f"digits {min(src_classes)}-{max(src_classes)} -> "
                 f"{min(tgt_classes)}-{max(tgt_classes)}, MLP{' with batch norm' if bn else ''}"
                 f" (5-way, tested on the other target images)")
        run_setting(title, source, factory, X[~src], y[~src], tgt_classes, ks, seeds)


def real_settings(ks, seeds):
    from bench_transfer import small_cnn

    from sktransfer.datasets import load_mnist, load_omniglot

    X, y = load_mnist("test", return_X_y=True)
    source = FineTuner(small_cnn, strategy="full", head="keep", bn="train", lr=2e-3,
                       max_epochs=3, batch_size=64, random_state=0).fit(X[y < 5], y[y < 5])
    run_setting("MNIST 0-4 -> 5-9, small CNN (5-way, 2,000 test images)", source, small_cnn,
                X, y, range(5, 10), ks, seeds, n_test=2000)

    om = load_omniglot("background_small1")
    greek = list(om.group_names).index("Greek")
    src = om.groups != greek
    source = FineTuner(small_cnn, strategy="full", bn="train", lr=2e-3, max_epochs=10,
                       batch_size=32, random_state=0).fit(om.data[src], om.target[src])
    Xo, yo = om.data[~src], om.target[~src]
    # 20 drawers per character: k=50 does not exist
    run_setting("Omniglot, held-out alphabet (Greek, 24-way, the other drawers)", source,
                small_cnn, Xo, yo, np.unique(yo),
                [k for k in (1, *ks) if k < 20], seeds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true",
                        help="also MNIST and Omniglot (needs SKTRANSFER_DATA)")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # LogisticRegression warns when there are few examples per class: expected here.
    warnings.filterwarnings("ignore", message="The number of unique classes is greater")
    seeds = list(range(args.seeds))
    digits_settings([5, 50], seeds)
    if args.real:
        real_settings([5, 50], seeds)


if __name__ == "__main__":
    main()
