"""Cost of one public ``partial_fit`` call over the bare skorch epoch it runs.

Every ``partial_fit`` goes through the shared template: parameter
validation, data validation and encoding, seeding (a locked, forked RNG
stream) and the rollback snapshot of the fitted net (a deep copy of the
module, optimizer state, history and strategy state, so that a failed call
changes nothing). This script measures what that costs per call, against the
same epoch run directly on the private net (``net_.partial_fit``, no
validation, no snapshot), for the estimators with ``partial_fit`` and MLPs
from small to large. The two take turns in one process, so machine noise
hits both; the table reports the fastest of the rounds of each and their
ratio, and the absolute overhead per call in milliseconds.

Run ``python benchmarks/bench_call_overhead.py`` (``--quick`` for a short run).
"""

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits

from sktransfer import MultiTaskClassifier
from sktransfer.base import torch_threads
from sktransfer.transfer import FineTuner


def _data(n_repeat):
    X, y = load_digits(return_X_y=True)
    X = np.tile((X / 16.0).astype(np.float32), (n_repeat, 1))
    return X, np.tile(y, n_repeat)


def _time(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _multitask(X, y, sizes, batch):
    est = MultiTaskClassifier(hidden_layer_sizes=sizes, batch_size=batch, random_state=0)
    est.partial_fit(X, y, classes=np.arange(10))
    inputs, target = est._inputs(X, np.zeros(len(X), dtype=np.int64)), torch.as_tensor(y)
    return (lambda: est.partial_fit(X, y),
            lambda: est.net_.partial_fit(inputs, target, epochs=1))


def _finetuner(X, y, sizes, batch):
    layers, width = [], X.shape[1]
    for h in sizes:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    torch.manual_seed(0)
    source = torch.nn.Sequential(*layers, torch.nn.Linear(width, 10))
    est = FineTuner(source, strategy="full", max_epochs=1, batch_size=batch, random_state=0)
    est.partial_fit(X, y)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    return (lambda: est.partial_fit(X, y), lambda: est.net_.partial_fit(Xt, yt))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    rounds = 4 if args.quick else 10
    X, y = _data(1)
    configs = [((64,), 64), ((256, 256), 128), ((512, 512, 512), 256)]
    print(f"{len(X)} rows, one epoch per call, fastest of {rounds} rounds, one torch thread")
    print(f"{'estimator':<20} {'network':<18} {'batch':>5} {'call s':>9} {'epoch s':>9} "
          f"{'ratio':>7} {'overhead ms':>12}")
    with torch_threads(1):
        for name, make in (("MultiTaskClassifier", _multitask), ("FineTuner", _finetuner)):
            for sizes, batch in configs:
                call, epoch = make(X, y, sizes, batch)
                call_t, epoch_t = [], []
                for _ in range(rounds):
                    call_t.append(_time(call))
                    epoch_t.append(_time(epoch))
                c, e = min(call_t), min(epoch_t)
                print(f"{name:<20} {str(sizes):<18} {batch:>5} {c:>9.4f} {e:>9.4f} "
                      f"{c / e:>7.3f} {1000 * (c - e):>12.2f}")
    print("ratio: a whole partial_fit call (validation, seeding, rollback snapshot, one "
          "epoch)\nover the same epoch on the private net; overhead: their difference.")


if __name__ == "__main__":
    main()
