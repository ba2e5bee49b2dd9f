"""Transferability scores: do LogME, LEEP and H-score rank sources as fine-tuning does?

Seven candidate sources of varying quality, all the small CNN of
``bench_transfer.py`` (three conv + batch-norm blocks, two linear layers):

* ``omniglot-4``: pretrained on the four non-Greek alphabets of Omniglot's
  ``background_small1`` (112 characters), 10 epochs, as in ``bench_transfer.py``;
* ``omniglot-4 (1 epoch)``: the same, stopped after one epoch;
* ``omniglot-small2``: the three alphabets of ``background_small2`` that
  ``background_small1`` lacks (Japanese katakana, Sanskrit, Tagalog; 106
  characters), 10 epochs;
* ``omniglot-korean``: one alphabet (Korean, 40 characters), 10 epochs;
* ``mnist-0-4``: the MNIST test digits 0-4, 3 epochs, as in ``bench_transfer.py``;
* ``digits-8x8``: scikit-learn's 8x8 digits (upsampled to 20x20, padded to
  28x28), 20 epochs;
* ``random``: random initialisation.

Two targets of ``bench_transfer.py``: the held-out Omniglot alphabet (Greek,
24-way, k = 5 drawings per character, tested on the other drawers) and the
MNIST digits 5-9 (k = 10, tested on 2,000 held-out images). For each seed
(which draws the k-shot set) every source is fine-tuned with one fixed
recipe, ``FineTuner(strategy="lp_ft", lr=1e-3, max_epochs=50)`` (the
``lp_ft`` row of ``bench_transfer.py``), and scored by each transferability
score on the same k-shot training set. Reported: Kendall's tau (and the
weighted tau of the LogME paper, ``scipy.stats.weightedtau``) between each
score and the fine-tuned test accuracy over the sources, per seed and on the
seed means; the time of each score (forward pass included) against one
fine-tuning run. Last, per layer: LogME of the output of each backbone layer
group of ``omniglot-4`` against the accuracy of ``strategy="top"`` with the
matching ``n_layers``, on the Greek target.

Usage::

    python benchmarks/bench_transferability.py           # 3 seeds (about 6 min)
    python benchmarks/bench_transferability.py --quick   # 1 seed, Omniglot only

Needs ``SKTRANSFER_DATA`` pointing at the MNIST and Omniglot files. The
pretrained weights are cached under ``$SKTRANSFER_CACHE/bench_transferability``
(default ``/tmp/sktransfer_cache``); the first run pretrains them, about 6
minutes more on one thread.
"""

import argparse
import functools
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("SKTRANSFER_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_transfer import EPOCHS, shots, small_cnn  # noqa: E402
from scipy.stats import kendalltau, weightedtau  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from torch import nn  # noqa: E402

from sktransfer.datasets import load_mnist, load_omniglot  # noqa: E402
from sktransfer.transfer import FineTuner, rank_pretrained  # noqa: E402

SCORES = ("logme", "leep", "h_score")


def cache_dir():
    root = Path(os.environ.get("SKTRANSFER_CACHE", "/tmp/sktransfer_cache"))
    path = root / "bench_transferability"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pretrain(name, n_out, X=None, y=None, epochs=0):
    """(factory, weights path) of a small CNN pretrained on (X, y), cached."""
    factory = functools.partial(small_cnn, n_out)
    path = cache_dir() / f"{name.replace(' ', '_')}.pt"
    if not path.exists():
        t = time.perf_counter()
        if epochs == 0:
            torch.manual_seed(0)
            module = factory()
        else:
            ft = FineTuner(factory, strategy="full", head="keep", bn="train", lr=2e-3,
                           max_epochs=epochs, batch_size=32, random_state=0).fit(X, y)
            module = ft.net_.module_
        torch.save(module.state_dict(), path)
        print(f"  pretrained {name} ({len(X) if X is not None else 0} images, {epochs} "
              f"epochs) in {time.perf_counter() - t:.0f} s", flush=True)
    return factory, str(path)


def digits_28():
    d = load_digits()
    images = torch.as_tensor(d.images[:, None] / 16.0, dtype=torch.float32)
    images = nn.functional.interpolate(images, size=(20, 20), mode="bilinear",
                                       align_corners=False)
    return nn.functional.pad(images, (4, 4, 4, 4)).numpy(), d.target


def build_sources(om, om2, Xm, ym):
    greek = list(om.group_names).index("Greek")
    src = om.groups != greek
    names2 = list(om2.group_names)
    src2 = np.isin(om2.groups, [names2.index(a) for a in
                                ("Japanese_(katakana)", "Sanskrit", "Tagalog")])
    korean = om.groups == list(om.group_names).index("Korean")

    def codes(t):
        return np.unique(t, return_inverse=True)[1]

    Xd, yd = digits_28()
    print("pretraining the sources (cached):", flush=True)
    return {
        "omniglot-4": pretrain("omniglot-4", 112, om.data[src], codes(om.target[src]), 10),
        "omniglot-4 (1 epoch)": pretrain("omniglot-4 (1 epoch)", 112, om.data[src],
                                         codes(om.target[src]), 1),
        "omniglot-small2": pretrain("omniglot-small2", 106, om2.data[src2],
                                    codes(om2.target[src2]), 10),
        "omniglot-korean": pretrain("omniglot-korean", 40, om.data[korean],
                                    codes(om.target[korean]), 10),
        "mnist-0-4": pretrain("mnist-0-4", 5, Xm[ym < 5], ym[ym < 5], 3),
        "digits-8x8": pretrain("digits-8x8", 10, Xd, yd, 20),
        "random": pretrain("random", 10),
    }


def fine_tune(source, seed, **kw):
    params = dict(strategy="lp_ft", lr=1e-3)
    params.update(kw)
    return FineTuner(source, max_epochs=EPOCHS, random_state=seed, **params)


def taus(score, acc):
    return kendalltau(score, acc).statistic, weightedtau(score, acc).statistic


def run_target(title, sources, X, y, classes, k, seeds, n_test=None):
    print(f"\n## {title}, k={k}\n", flush=True)
    names = list(sources)
    acc = {n: [] for n in names}
    sc = {s: {n: [] for n in names} for s in SCORES}
    sec = {s: [] for s in SCORES}
    ft_sec = []
    per_seed = {s: [] for s in SCORES}
    for seed in seeds:
        tr, te = shots(y, classes, k, seed, n_test)
        table = rank_pretrained(sources, X[tr], y[tr], sort_by=False, random_state=seed)
        for n in names:
            t = time.perf_counter()
            acc[n].append(fine_tune(sources[n], seed).fit(X[tr], y[tr]).score(X[te], y[te]))
            ft_sec.append(time.perf_counter() - t)
            for s in SCORES:
                sc[s][n].append(table.loc[n, s])
                sec[s].append(table.loc[n, f"{s}_seconds"])
        a = [acc[n][-1] for n in names]
        for s in SCORES:
            per_seed[s].append(taus([sc[s][n][-1] for n in names], a))
    mean_acc = [np.mean(acc[n]) for n in names]
    print(f"| {'source':<22} | {'fine-tuned acc.':<15} | " + " | ".join(
        f"{s:<9}" for s in SCORES) + " |")
    print("|" + "-" * 24 + "|" + "-" * 17 + "|" + "|".join("-" * 11 for _ in SCORES) + "|")
    for n, m in sorted(zip(names, mean_acc), key=lambda p: -p[1]):
        cells = " | ".join(f"{np.mean(sc[s][n]):<9.3f}" for s in SCORES)
        print(f"| {n:<22} | {m:.3f} ± {np.std(acc[n]):.3f}   | {cells} |")
    print(f"\n| {'score':<8} | Kendall tau (seed means) | weighted tau | Kendall tau per seed "
          f"(mean ± std) | seconds per score | one fine-tuning / score |")
    print("|" + "-" * 10 + "|" + "-" * 26 + "|" + "-" * 14 + "|" + "-" * 36 + "|"
          + "-" * 19 + "|" + "-" * 25 + "|")
    out = {}
    for s in SCORES:
        tau, wtau = taus([np.mean(sc[s][n]) for n in names], mean_acc)
        ps = np.array([p[0] for p in per_seed[s]])
        speedup = np.mean(ft_sec) / np.mean(sec[s])
        print(f"| {s:<8} | {tau:<24.2f} | {wtau:<12.2f} | {ps.mean():.2f} ± {ps.std():.2f}"
              f"{'':<23} | {np.mean(sec[s]):<17.3f} | {speedup:<23.0f} |")
        out[s] = tau
    print(f"\none fine-tuning run: {np.mean(ft_sec):.1f} s (mean of {len(ft_sec)}); "
          f"{len(seeds)} seeds", flush=True)
    return out


def run_layers(source, X, y, classes, k, seeds):
    print(f"\n## Per layer: omniglot-4 on Greek, k={k}, strategy='top'\n", flush=True)
    rows = {}
    for seed in seeds:
        tr, te = shots(y, classes, k, seed)
        table = rank_pretrained({"omniglot-4": source}, X[tr], y[tr], per_layer=True,
                                scores=("logme", "h_score"), sort_by=False, random_state=seed)
        for layer, n_layers, logme, hs in zip(table["layer"], table["n_layers"],
                                              table["logme"], table["h_score"]):
            ft = fine_tune(source, seed, strategy="top", n_layers=int(n_layers), lr=1e-2,
                           backbone_lr=1e-3)
            acc = ft.fit(X[tr], y[tr]).score(X[te], y[te])
            rows.setdefault((layer, int(n_layers)), []).append((logme, hs, acc))
    print("| layer | n_layers | LogME of its output | H-score | accuracy of top(n_layers) |")
    print("|-------|----------|---------------------|---------|---------------------------|")
    for (layer, n), vals in rows.items():
        v = np.array(vals)
        print(f"| {layer:<5} | {n:<8} | {v[:, 0].mean():<19.3f} | {v[:, 1].mean():<7.3f} | "
              f"{v[:, 2].mean():.3f} ± {v[:, 2].std():.3f}             |")
    means = np.array([np.mean(v, axis=0) for v in rows.values()])
    print(f"\nKendall tau across layers, LogME vs accuracy: "
          f"{kendalltau(means[:, 0], means[:, 2]).statistic:.2f}; H-score vs accuracy: "
          f"{kendalltau(means[:, 1], means[:, 2]).statistic:.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, the Omniglot target only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="The number of unique classes is greater")
    seeds = [0] if args.quick else [0, 1, 2]
    t0 = time.perf_counter()
    om = load_omniglot("background_small1")
    om2 = load_omniglot("background_small2")
    Xm, ym = load_mnist("test", return_X_y=True)
    sources = build_sources(om, om2, Xm, ym)

    greek = om.groups == list(om.group_names).index("Greek")
    Xo, yo = om.data[greek], om.target[greek]
    run_target("Omniglot, held-out alphabet (Greek, 24-way)", sources, Xo, yo,
               np.unique(yo), 5, seeds)
    if not args.quick:
        run_target("MNIST digits 5-9 (5-way, 2,000 test images)", sources, Xm, ym,
                   range(5, 10), 10, seeds, n_test=2000)
    run_layers(sources["omniglot-4"], Xo, yo, np.unique(yo), 5, seeds)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
