"""Convolutional training on a CPU: fused batch norm and the allocator policy.

A 20-way 5-shot ``PrototypicalClassifier`` episode on Omniglot (Conv4, 64
channels, 28x28, 200 images: 5 support and 5 query images per class), and an
epoch of ``BaselineFewShotClassifier`` (Conv4, batches of 64), each timed in
a fresh process per variant, the variants alternating over ``--rounds``:

* ``before``: the primitive-op batch norm (``Conv4(batch_norm="primitive")``)
  and glibc's default allocator (``SKTRANSFER_TUNE_MALLOC=0``), as the
  package trained until this release;
* ``fused``: PyTorch's fused ``nn.BatchNorm2d``, default allocator;
* ``allocator``: primitive batch norm, the package's allocator policy;
* ``default``: both, the package's default now;
* ``hand``: a hand-written ProtoNet loop (the same Conv4 with fused batch
  norm, Adam, episodes of the same shape) with glibc's default allocator;
* ``hand_tuned``: the same loop inside the package's allocator policy (what
  a user gets by setting ``MALLOC_MMAP_MAX_=0`` and a large
  ``MALLOC_TRIM_THRESHOLD_``): the fair reference for ``default``.

Each process reports seconds per step (the fastest and the median of the
steps after two warm-up steps) and its user and system CPU time and minor
page faults over the timed steps. One torch thread.

Run ``SKTRANSFER_DATA=... python benchmarks/bench_conv_training.py``
(``--quick``: fewer steps and rounds).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

VARIANTS = ("before", "fused", "allocator", "default", "hand", "hand_tuned")


def _omniglot():
    import numpy as np

    from sktransfer.datasets import load_omniglot

    data = load_omniglot("background")
    X = data.data.astype(np.float32)
    return X, data.target


def _conv4(batch_norm):
    from sktransfer.modules import Conv4

    return Conv4(in_channels=1, image_size=28, batch_norm=batch_norm)


def _usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


class _StepTimer:
    """A skorch callback that times every training step (episode or batch)."""

    def __init__(self, warmup):
        from skorch.callbacks import Callback

        timer = self

        class _Callback(Callback):
            def on_batch_begin(self, net, batch=None, training=False, **kwargs):
                if training:
                    timer.begin()

            def on_batch_end(self, net, batch=None, training=False, **kwargs):
                if training:
                    timer.end()

        self.callback = _Callback()
        self.warmup = warmup
        self.times = []
        self.start = self.usage = None

    def begin(self):
        if len(self.times) == self.warmup and self.usage is None:
            self.usage = _usage()
        self.start = time.perf_counter()

    def end(self):
        self.times.append(time.perf_counter() - self.start)


def _report(times, warmup, usage):
    steps = times[warmup:]
    u0, s0, f0 = usage
    u1, s1, f1 = _usage()
    return {"min": min(steps), "median": statistics.median(steps), "user": u1 - u0,
            "sys": s1 - s0, "faults": f1 - f0, "steps": len(steps)}


def _protonet(variant, steps, warmup):
    import torch

    from sktransfer.meta import PrototypicalClassifier

    X, y = _omniglot()
    if variant.startswith("hand"):
        from sktransfer._allocator import keep_freed_memory

        with keep_freed_memory():  # a no-op under SKTRANSFER_TUNE_MALLOC=0
            return _hand_protonet(X, y, steps, warmup)
    bn = "primitive" if variant in ("before", "allocator") else "fused"
    timer = _StepTimer(warmup)
    torch.manual_seed(0)
    PrototypicalClassifier(n_way=20, k_shot=5, n_query=5, module=_conv4(bn),
                           episodes_per_epoch=steps + warmup, max_epochs=1,
                           callbacks=[timer.callback], random_state=0).fit(X, y)
    return _report(timer.times, warmup, timer.usage)


def _hand_protonet(X, y, steps, warmup):
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    rng = np.random.RandomState(0)
    net = _conv4("fused")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    times, usage = [], None
    for step in range(steps + warmup):
        if step == warmup:
            usage = _usage()
        start = time.perf_counter()
        classes = rng.choice(len(by_class), 20, replace=False)
        rows = np.stack([rng.choice(by_class[c], 10, replace=False) for c in classes])
        batch = torch.as_tensor(X[rows.reshape(-1)])
        z = net(batch).view(20, 10, -1)
        prototypes = z[:, :5].mean(1)
        query = z[:, 5:].reshape(100, -1)
        logits = -torch.cdist(query, prototypes) ** 2
        loss = F.cross_entropy(logits, torch.arange(20).repeat_interleave(5))
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return _report(times, warmup, usage)


def _baseline(variant, steps, warmup):
    import torch

    from sktransfer.meta import BaselineFewShotClassifier

    if variant.startswith("hand"):
        return None
    X, y = _omniglot()
    n = 64 * (steps + warmup)
    bn = "primitive" if variant in ("before", "allocator") else "fused"
    timer = _StepTimer(warmup)
    torch.manual_seed(0)
    BaselineFewShotClassifier(module=_conv4(bn), batch_size=64, max_epochs=1,
                              callbacks=[timer.callback],
                              random_state=0).fit(X[:n], y[:n])
    return _report(timer.times, warmup, timer.usage)


def _child(variant, workload, steps, warmup):
    import torch

    torch.set_num_threads(1)
    run = _protonet if workload == "protonet" else _baseline
    print(json.dumps(run(variant, steps, warmup)))


def _spawn(variant, workload, steps, warmup):
    env = dict(os.environ, SKTRANSFER_NUM_THREADS="1", OMP_NUM_THREADS="1",
               SKTRANSFER_TUNE_MALLOC="0" if variant in ("before", "fused", "hand") else "1")
    out = subprocess.run([sys.executable, __file__, "--child", variant, workload,
                          str(steps), str(warmup)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None,
                        help="processes per variant (default 2, 1 with --quick)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, workload, steps, warmup = args.child
        _child(variant, workload, int(steps), int(warmup))
        return
    steps, rounds = (8, 1) if args.quick else (20, 2)
    rounds = args.rounds or rounds
    for workload, what in (("protonet", "20-way 5-shot episode"), ("baseline", "batch of 64")):
        results = {v: [] for v in VARIANTS}
        for _ in range(rounds):
            for variant in VARIANTS:
                r = _spawn(variant, workload, steps, 2)
                if r is not None:
                    results[variant].append(r)
        print(f"\n{workload}: seconds per {what} (one thread; fastest / median over "
              f"{steps} steps x {rounds} processes)")
        print(f"{'variant':<10} {'min s':>7} {'median s':>9} {'sys/user':>9} "
              f"{'faults/step':>12} {'vs hand_tuned':>14}")
        hand = min((r["min"] for r in results["hand_tuned"]), default=None)
        for variant in VARIANTS:
            rs = results[variant]
            if not rs:
                continue
            best = min(r["min"] for r in rs)
            med = statistics.median(r["median"] for r in rs)
            sys_user = sum(r["sys"] for r in rs) / max(sum(r["user"] for r in rs), 1e-9)
            faults = sum(r["faults"] for r in rs) / sum(r["steps"] for r in rs)
            ratio = f"{best / hand:.2f}" if hand else "-"
            print(f"{variant:<10} {best:>7.3f} {med:>9.3f} {sys_user:>9.2f} "
                  f"{faults:>12.0f} {ratio:>14}")


if __name__ == "__main__":
    main()
