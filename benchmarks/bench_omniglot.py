"""Few-shot accuracy on real Omniglot within a CPU budget.

Meta-train on 20 of the 30 alphabets of Omniglot's "background" set and
evaluate N-way K-shot episodes whose classes come from the 10 held-out
alphabets (characters never seen in training): 5-way and 20-way, 1-shot and
5-shot, 5 query images per class, mean accuracy and 95% confidence interval
over the episodes. Images are 28x28, the backbone is Conv4 (64 channels);
no rotation augmentation. The budget is fixed in iterations (printed with
the wall time), far below the papers' (MAML: 60,000 meta-iterations of 32
tasks), so the numbers show what a few CPU minutes reach, not the
published accuracies (MAML 98.7 / 99.9 / 95.8 / 98.9 and ProtoNet
98.8 / 99.7 / 96.0 / 98.9 for 5w1s / 5w5s / 20w1s / 20w5s, on the
"evaluation" alphabets with rotations).

MAML and FOMAML are meta-trained 5-way (one inner step, rate 0.4, as in the
paper) and MAML20 20-way (five inner steps, rate 0.1, as in the paper); a
MAML model is evaluated only at the number of ways it was trained for, as
the paper reports it, so the other columns are empty. ``MatchingFCE`` is
MatchingNet with full context embeddings (``fce=True``); ``RelationNet`` has
the paper's convolutional relation module (the default for images),
``RelationMLP`` an MLP one (``relation="mlp"``).

``SimpleShot`` trains as Baseline (linear head, cross-entropy, the same
epochs) and classifies by nearest centroid on centred, L2-normalised
features; ``R2D2`` is meta-trained like ProtoNet (20-way episodes, the same
number); ``SUR`` trains one Baseline++ extractor on each of 4 domains of 5
training alphabets (each for Baseline++'s epochs on its quarter of the data,
so the same number of gradient steps in all) and selects among them per
task. ``Baseline++/TIM`` and ``Baseline++/TransFT`` adapt the Baseline++
model above (no training of their own) with TIM-GD and transductive
fine-tuning: they read the episode's query images (transductive), so they
are scored on the same episodes by a transductive loop.

Run ``SKTRANSFER_DATA=... python benchmarks/bench_omniglot.py`` (``--quick``
for a third of the budget).
"""

import argparse
import os
import time

import numpy as np
import torch

from sktransfer.datasets import load_omniglot
from sktransfer.meta import (
    BaselineFewShotClassifier,
    EpisodeSampler,
    MAMLClassifier,
    MatchingClassifier,
    PrototypicalClassifier,
    R2D2Classifier,
    RelationClassifier,
    SimpleShotClassifier,
    SURClassifier,
)
from sktransfer.metrics import few_shot_score

SETTINGS = [(5, 1), (5, 5), (20, 1), (20, 5)]

#: Methods that adapt another method's fitted model differently: name -> (model, adaptation).
DERIVED = {"Baseline++/TIM": ("Baseline++", "tim"),
           "Baseline++/TransFT": ("Baseline++", "transductive")}


def transductive_score(est, X, y, n_way, k_shot, n_query, n_episodes, random_state=0):
    """``few_shot_score``'s episodes and seeds, with the query rows given to ``adapt``."""
    rng = np.random.RandomState(random_state)
    sampler = EpisodeSampler(y, n_way, k_shot, n_query, random_state=rng)
    accs = np.empty(n_episodes)
    for i in range(n_episodes):
        ep = sampler.sample()
        labels = ep.classes
        seeded = est.set_params(random_state=int(rng.randint(np.iinfo(np.int32).max)))
        adapted = seeded.adapt(X[ep.support_index], labels[ep.support_labels],
                               X_query=X[ep.query_index])
        accs[i] = np.mean(adapted.predict(X[ep.query_index]) == labels[ep.query_labels])
    return float(accs.mean()), float(1.96 * accs.std(ddof=1) / np.sqrt(n_episodes))


def methods(scale, maml_iterations=100, maml_batch=4):
    def it(n):
        return max(1, int(n * scale))

    maml_episodes = it(maml_iterations * maml_batch)
    return {
        "MAML": MAMLClassifier(n_way=5, k_shot=1, n_query=5, inner_lr=0.4, inner_steps=1,
                               inner_steps_test=3, batch_size=maml_batch,
                               episodes_per_epoch=maml_episodes, max_epochs=1, random_state=0),
        "MAML20": MAMLClassifier(n_way=20, k_shot=1, n_query=5, inner_lr=0.1, inner_steps=5,
                                 inner_steps_test=5, batch_size=maml_batch,
                                 episodes_per_epoch=maml_episodes, max_epochs=1,
                                 random_state=0),
        "FOMAML": MAMLClassifier(n_way=5, k_shot=1, n_query=5, inner_lr=0.4, inner_steps=1,
                                 inner_steps_test=3, first_order=True, batch_size=maml_batch,
                                 episodes_per_epoch=maml_episodes, max_epochs=1,
                                 random_state=0),
        "ProtoNet": PrototypicalClassifier(n_way=20, k_shot=1, n_query=5,
                                           episodes_per_epoch=it(300), max_epochs=1,
                                           random_state=0),
        "Baseline++": BaselineFewShotClassifier(head="cosine", max_epochs=max(1, round(2 * scale)),
                                                batch_size=64, random_state=0),
        "MatchingNet": MatchingClassifier(n_way=20, k_shot=1, n_query=5,
                                          episodes_per_epoch=it(300), max_epochs=1,
                                          random_state=0),
        "MatchingFCE": MatchingClassifier(n_way=20, k_shot=1, n_query=5, fce=True,
                                          episodes_per_epoch=it(300), max_epochs=1,
                                          random_state=0),
        "RelationNet": RelationClassifier(n_way=5, k_shot=1, n_query=5,
                                          episodes_per_epoch=it(500), max_epochs=1,
                                          random_state=0),
        "RelationMLP": RelationClassifier(n_way=5, k_shot=1, n_query=5, relation="mlp",
                                          episodes_per_epoch=it(500), max_epochs=1,
                                          random_state=0),
        "SimpleShot": SimpleShotClassifier(max_epochs=max(1, round(2 * scale)), batch_size=64,
                                           random_state=0),
        "R2D2": R2D2Classifier(n_way=20, k_shot=1, n_query=5, episodes_per_epoch=it(300),
                               max_epochs=1, random_state=0),
        "SUR": SURClassifier(max_epochs=max(1, round(2 * scale)), batch_size=64,
                             random_state=0),
        **{name: None for name in DERIVED},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--episodes", type=int, default=None,
                        help="evaluation episodes per setting (default 100, 30 with --quick)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated subset of: " + ", ".join(methods(1.0)))
    parser.add_argument("--maml-iterations", type=int, default=100,
                        help="MAML/FOMAML meta-iterations (default 100)")
    parser.add_argument("--maml-batch", type=int, default=4,
                        help="tasks per MAML meta-iteration (default 4)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("SKTRANSFER_NUM_THREADS", "1")
    scale = 1 / 3 if args.quick else 1.0
    n_episodes = args.episodes or (30 if args.quick else 100)

    data = load_omniglot("background")
    X, y, groups = data.data, data.target, data.groups
    alphabets = np.unique(groups)
    train = np.isin(groups, alphabets[:20])
    print(f"Omniglot background, 28x28: train {train.sum()} images / "
          f"{len(np.unique(y[train]))} characters (20 alphabets), test "
          f"{(~train).sum()} images / {len(np.unique(y[~train]))} characters "
          f"(10 held-out alphabets); {n_episodes} episodes per setting, 5 queries per class")
    header = f"{'method':<20}{'budget':<28}{'train s':>8}" + "".join(
        f"{f'{n}w{k}s':>14}" for n, k in SETTINGS) + f"{'eval s':>8}"
    print(header)
    print("-" * len(header))
    chosen = methods(scale, args.maml_iterations, args.maml_batch)
    if args.methods:
        unknown = set(args.methods.split(",")) - set(chosen)
        if unknown:
            parser.error(f"unknown methods {sorted(unknown)}; choose from {list(chosen)}")
        chosen = {k: v for k, v in chosen.items() if k in args.methods.split(",")}
    domains = np.searchsorted(alphabets, groups) // 5  # 4 domains of 5 training alphabets
    fitted = {}
    for name, est in chosen.items():
        start = time.perf_counter()
        if name in DERIVED:
            model, adaptation = DERIVED[name]
            if model not in fitted:
                fitted[model] = methods(scale)[model].fit(X[train], y[train])
            est = fitted[model].set_params(adaptation=adaptation)
        elif name == "SUR":
            est.fit(X[train], y[train], groups=domains[train])
        else:
            est.fit(X[train], y[train])
        fitted.setdefault(name, est)
        train_s = time.perf_counter() - start
        if name in DERIVED:
            budget = f"adapts {DERIVED[name][0]}"
        elif name == "SUR":
            budget = f"{est.n_extractors_} x {est.max_epochs} ep. on 1/4"
        elif name in ("Baseline++", "SimpleShot"):
            budget = f"{est.max_epochs} epochs, batch 64"
        else:
            budget = (f"{est.episodes_per_epoch} episodes {est.n_way_}w{est.k_shot}s"
                      + (f", mb {est.batch_size}" if "MAML" in name else ""))
        start = time.perf_counter()
        cells = []
        for n_way, k_shot in SETTINGS:
            if "MAML" in name and n_way != est.n_way_:
                cells.append(f"{'-':>14}")
                continue
            score = transductive_score if name in DERIVED else few_shot_score
            mean, ci = score(est, X[~train], y[~train], n_way=n_way, k_shot=k_shot,
                             n_query=5, n_episodes=n_episodes, random_state=0)
            cells.append(f"{100 * mean:>8.1f}+-{100 * ci:<4.1f}")
        eval_s = time.perf_counter() - start
        print(f"{name:<20}{budget:<28}{train_s:>8.0f}" + "".join(cells) + f"{eval_s:>8.0f}",
              flush=True)


if __name__ == "__main__":
    main()
