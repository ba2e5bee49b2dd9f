"""Convolutional training in every family against a hand-written loop.

An epoch of :class:`~sktransfer.multitask.MultiTaskClassifier`,
:class:`~sktransfer.continual.ContinualClassifier` (naive, one task) and
:class:`~sktransfer.transfer.FineTuner` (``strategy="full"``, a Conv4
source) on Omniglot images (Conv4, 64 channels, 28x28, batches of 64, one
thread), each with its default module for images, against a hand-written
loop training ``Conv4`` (PyTorch's fused ``nn.BatchNorm2d``) plus a linear
head with Adam on the same images and batch size. The hand loop runs twice:
with ``Adam(fused=True)`` inside the package's allocator policy (what a
careful user gets by setting ``MALLOC_MMAP_MAX_=0`` and a large
``MALLOC_TRIM_THRESHOLD_``: the fair reference), and as a user writes it
(per-tensor Adam, glibc's default allocator).

Every variant is timed as ``fit`` with 1 and with ``1 + E`` epochs, so the
per-epoch time ``(t[1 + E] - t[1]) / E`` leaves out the set-up; the variants
take turns over ``--rounds`` rounds in one process and the table gives the
fastest per-epoch time of each, the ratio to the tuned hand loop, and the
system time over the user time of the ``1 + E``-epoch fits.

Run ``SKTRANSFER_DATA=... python benchmarks/bench_conv_families.py``
(``--quick``: fewer images and rounds).
"""

import argparse
import contextlib
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F

from sktransfer.base import torch_threads


def _data(n_classes):
    from sktransfer.datasets import load_omniglot

    data = load_omniglot("background")
    rows = np.flatnonzero(data.target < n_classes)
    return data.data[rows].astype(np.float32), data.target[rows].astype(np.int64)


def _conv4_with_head(n_classes):
    from sktransfer.modules import Conv4

    trunk = Conv4(in_channels=1, image_size=28)
    return torch.nn.Sequential(trunk, torch.nn.Flatten(),
                               torch.nn.Linear(trunk.out_features_, n_classes))


def _hand_fit(X, y, epochs, tuned):
    """The loop a user writes: tensors, module, optimizer, shuffled batches of 64."""
    from sktransfer._allocator import keep_freed_memory

    torch.manual_seed(0)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    module = _conv4_with_head(int(y.max()) + 1)
    opt = torch.optim.Adam(module.parameters(), lr=1e-3, fused=tuned)
    policy = keep_freed_memory() if tuned else contextlib.nullcontext()
    with policy:
        module.train()
        for _ in range(epochs):
            order = torch.randperm(len(Xt))
            for start in range(0, len(Xt), 64):
                idx = order[start:start + 64]
                opt.zero_grad()
                F.cross_entropy(module(Xt[idx]), yt[idx]).backward()
                opt.step()


def _variants(X, y):
    from sktransfer.continual import ContinualClassifier
    from sktransfer.multitask import MultiTaskClassifier
    from sktransfer.transfer import FineTuner

    n_classes = int(y.max()) + 1
    task_ids = (y >= n_classes // 2).astype(np.int64)
    torch.manual_seed(0)
    source = _conv4_with_head(10)

    def multitask(epochs):
        MultiTaskClassifier(batch_size=64, max_epochs=epochs,
                            random_state=0).fit(X, y, task_ids=task_ids)

    def continual(epochs):
        ContinualClassifier(strategy="naive", batch_size=64, max_epochs=epochs,
                            random_state=0).fit(X, y)

    def finetuner(epochs):
        FineTuner(source, strategy="full", batch_size=64, lr=1e-3, max_epochs=epochs,
                  random_state=0).fit(X, y)

    return {
        "MultiTaskClassifier": multitask,
        "ContinualClassifier": continual,
        "FineTuner (full)": finetuner,
        "hand, tuned": lambda epochs: _hand_fit(X, y, epochs, tuned=True),
        "hand, as written": lambda epochs: _hand_fit(X, y, epochs, tuned=False),
    }


def _timed(fn, epochs):
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    fn(epochs)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3, help="E, the epochs timed")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 5)
    X, y = _data(20 if args.quick else 40)
    variants = _variants(X, y)
    per_epoch = {name: [] for name in variants}
    sys_user = {name: [] for name in variants}
    with torch_threads(1):
        for fn in variants.values():  # warm-up: imports, first allocations
            fn(1)
        for _ in range(rounds):
            for name, fn in variants.items():
                one = _timed(fn, 1)[0]
                wall, user, system = _timed(fn, 1 + args.epochs)
                per_epoch[name].append((wall - one) / args.epochs)
                sys_user[name].append(system / max(user, 1e-9))
    ref = min(per_epoch["hand, tuned"])
    print(f"Omniglot, {len(X)} images of {int(y.max()) + 1} characters, 28x28, Conv4-64, "
          f"batch 64, one thread; fastest of {rounds} rounds, per epoch of {args.epochs}")
    print(f"{'variant':<22}{'s/epoch':>10}{'vs hand, tuned':>16}{'sys/user':>10}")
    for name in variants:
        best = min(per_epoch[name])
        print(f"{name:<22}{best:>10.3f}{best / ref:>16.3f}{min(sys_user[name]):>10.3f}")


if __name__ == "__main__":
    main()
