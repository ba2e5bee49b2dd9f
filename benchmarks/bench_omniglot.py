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

``--minutes M`` is the fixed-budget protocol instead: every method trains
for ``M`` minutes of one CPU thread (:class:`~sktransfer.callbacks.TimeBudget`;
``max_epochs`` is only a cap) on the 20 training alphabets with each image
rotated by 90, 180 and 270 degrees as new classes
(:func:`~sktransfer.datasets.augment_rotations`), episodic methods drawing
each episode within one alphabet (``groups=``), with a StepLR schedule
(halve the rate every 2,000 episodes, or every 10 epochs for the batch
learners). Each is scored on Lake-style 20-way one-shot runs built from the
10 held-out alphabets (:func:`~sktransfer.datasets.make_one_shot_runs`,
``--runs`` of them, mean error and its 95% interval across runs), and on
``--episodes`` (default 600) episodes per setting, next to the published
numbers. ``--tta`` adds a row with ``tta="shift"`` for the learners that take it (the metric
learners, Baseline++ and SimpleShot);
``--augment shift`` trains the episodic and batch learners with ``augment="shift"``
(random shifts of the training images, :class:`~sktransfer.meta.RandomShift`).
"""

import argparse
import os
import time

import numpy as np
import torch
from skorch.callbacks import LRScheduler

from sktransfer.callbacks import TimeBudget
from sktransfer.datasets import augment_rotations, load_omniglot, make_one_shot_runs
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
from sktransfer.metrics import few_shot_score, score_one_shot_runs

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


#: Published accuracies (5w1s, 5w5s, 20w1s, 20w5s) on Omniglot's evaluation
#: alphabets with rotations, and error rates on Lake et al.'s 20 one-shot runs.
PUBLISHED = {
    "ProtoNet (Snell et al., 2017)": (98.8, 99.7, 96.0, 98.9),
    "MAML (Finn et al., 2017)": (98.7, 99.9, 95.8, 98.9),
    "MatchingNet (Vinyals et al., 2016)": (98.1, 98.9, 93.8, 98.5),
    "RelationNet (Sung et al., 2018)": (99.6, 99.8, 97.6, 99.1),
}
PUBLISHED_RUNS = {"humans": 4.5, "Bayesian program learning": 3.3, "Siamese nets": 8.0,
                  "ConvNet": 13.5}


def budget_methods(minutes, augment=None):
    """Each method's recipe under a wall-clock budget of ``minutes``."""
    def callbacks(step_size):
        return [LRScheduler(policy=torch.optim.lr_scheduler.StepLR, step_size=step_size,
                            gamma=0.5),
                TimeBudget(minutes=minutes)]

    episodic = dict(episodes_per_epoch=100, max_epochs=100_000, augment=augment,
                    random_state=0)
    batch = dict(batch_size=64, max_epochs=100_000, augment=augment, random_state=0)
    return {
        "ProtoNet": PrototypicalClassifier(n_way=20, k_shot=1, n_query=5,
                                           callbacks=callbacks(20), **episodic),
        "MatchingNet": MatchingClassifier(n_way=20, k_shot=1, n_query=5,
                                          callbacks=callbacks(20), **episodic),
        "R2D2": R2D2Classifier(n_way=20, k_shot=1, n_query=5, callbacks=callbacks(20),
                               **episodic),
        "RelationNet": RelationClassifier(n_way=5, k_shot=1, n_query=5,
                                          callbacks=callbacks(20), **episodic),
        "MAML": MAMLClassifier(n_way=5, k_shot=1, n_query=5, inner_lr=0.4, inner_steps=1,
                               inner_steps_test=3, batch_size=4,
                               callbacks=callbacks(20), **episodic),
        "Baseline++": BaselineFewShotClassifier(head="cosine", callbacks=callbacks(10),
                                                **batch),
        "SimpleShot": SimpleShotClassifier(callbacks=callbacks(10), **batch),
    }


def run_budget(args):
    """The fixed-budget protocol (``--minutes``)."""
    data = load_omniglot("background")
    alphabets = np.unique(data.groups)
    train = np.isin(data.groups, alphabets[:20])
    X_tr, y_tr, g_tr = augment_rotations(data.data[train], data.target[train],
                                         data.groups[train])
    X_te, y_te = data.data[~train], data.target[~train]
    runs = make_one_shot_runs(X_te, y_te, data.groups[~train], drawers=data.drawers[~train],
                              n_runs=args.runs, n_way=20, random_state=0)
    print(f"Omniglot background, 28x28, budget {args.minutes:g} min of one CPU thread per "
          f"method: train {len(y_tr)} images / {len(np.unique(y_tr))} classes (20 alphabets "
          f"x 4 rotations); test {len(y_te)} images / {len(np.unique(y_te))} characters "
          f"(10 held-out alphabets): {len(runs)} Lake-style 20-way one-shot runs, "
          f"{args.episodes} episodes per setting, 5 queries per class; training "
          f"augmentation: {args.augment}")
    header = (f"{'method':<22}{'trained':<26}{'train s':>8}{'runs error %':>16}"
              + "".join(f"{f'{n}w{k}s':>14}" for n, k in SETTINGS) + f"{'eval s':>8}")
    print(header)
    print("-" * len(header))
    chosen = budget_methods(args.minutes, augment=None if args.augment == "none" else "shift")
    if args.methods:
        chosen = {k: v for k, v in chosen.items() if k in args.methods.split(",")}
    for name, est in chosen.items():
        start = time.perf_counter()
        if "groups" in est.fit.__code__.co_varnames and name not in ("Baseline++",
                                                                     "SimpleShot"):
            est.fit(X_tr, y_tr, groups=g_tr)
        else:
            est.fit(X_tr, y_tr)
        train_s = time.perf_counter() - start
        budget = next(cb for cb in est.callbacks if isinstance(cb, TimeBudget))
        unit = "batches" if name in ("Baseline++", "SimpleShot") else (
            "meta-batches of 4" if name == "MAML" else "episodes")
        trained = f"{budget.n_batches_} {unit}"
        variants = [(name, None)]
        if args.tta and hasattr(est, "tta"):
            variants.append((f"{name} tta=shift", "shift"))
        for label, tta in variants:
            if hasattr(est, "tta"):
                est.set_params(tta=tta)
            start = time.perf_counter()
            if name == "MAML" and est.n_way_ != 20:  # a fixed-way model: no 20-way runs
                cells = [f"{'-':>16}"]
            else:
                result = score_one_shot_runs(est, runs)
                ci = 1.96 * result["errors"].std(ddof=1) / np.sqrt(len(runs))
                cells = [f"{100 * result['mean_error']:>10.2f}+-{100 * ci:<4.1f}"]
            for n_way, k_shot in SETTINGS:
                if name == "MAML" and n_way != est.n_way_:
                    cells.append(f"{'-':>14}")
                    continue
                mean, ci = few_shot_score(est, X_te, y_te, n_way=n_way, k_shot=k_shot,
                                          n_query=5, n_episodes=args.episodes, random_state=0)
                cells.append(f"{100 * mean:>8.1f}+-{100 * ci:<4.1f}")
            eval_s = time.perf_counter() - start
            print(f"{label:<22}{trained:<26}{train_s:>8.0f}" + "".join(cells)
                  + f"{eval_s:>8.0f}", flush=True)
    print("\npublished (Omniglot evaluation alphabets, with rotations; accuracy %):")
    for label, accs in PUBLISHED.items():
        print(f"  {label:<36}" + "".join(f"{a:>8.1f}" for a in accs))
    print("published error % on Lake et al.'s 20 one-shot runs: "
          + ", ".join(f"{k} {v}" for k, v in PUBLISHED_RUNS.items()))


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
    parser.add_argument("--minutes", type=float, default=None,
                        help="the fixed-budget protocol: minutes of training per method")
    parser.add_argument("--runs", type=int, default=100,
                        help="Lake-style one-shot runs to score (--minutes only)")
    parser.add_argument("--augment", choices=("none", "shift"), default="none",
                        help="training-time augmentation of the episodic and batch learners "
                             "(--minutes only)")
    parser.add_argument("--tta", action="store_true",
                        help="also score the learners that take tta with tta='shift' "
                             "(--minutes only)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("SKTRANSFER_NUM_THREADS", "1")
    if args.minutes is not None:
        if args.episodes is None:
            args.episodes = 600
        return run_budget(args)
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
