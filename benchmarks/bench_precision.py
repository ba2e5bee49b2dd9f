"""Mixed precision: seconds per epoch and accuracy of ``precision="bf16"`` against float32.

A ``MultiTaskClassifier`` with two tasks on MNIST (the digit, and whether it
is at least 5): 8,000 training images (test split 0-7,999) and 2,000
held-out ones. Two networks: an MLP 784-1024-1024 (batch 256) and the
default Conv4 on 28x28 images (batch 128). The float32 and the bfloat16
estimator train one epoch each in turn (``partial_fit``), so both see the
same machine load; the table gives the median seconds per epoch and the
mean accuracy over the two tasks after the last epoch.

bfloat16 pays off where the hardware has bfloat16 units: recent GPUs, and
CPUs with AVX512-BF16 or AMX (the table prints whether this CPU has them).
Elsewhere autocast's conversions cost more than they save.

Run ``SKTRANSFER_DATA=... python benchmarks/bench_precision.py``
(``--quick`` for 2 epochs instead of 5, ``--device cuda`` on a GPU).
"""

import argparse
import statistics
import time

import numpy as np
import torch

from sktransfer import MultiTaskClassifier
from sktransfer.datasets import load_mnist


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    found = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return ", ".join(found) if found else "no bfloat16 instructions"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    epochs = 2 if args.quick else 5
    data = load_mnist("test")
    X, y = data.data.astype(np.float32), data.target
    Y = np.stack([y, (y >= 5).astype(int)], axis=1)
    tr, te = slice(0, 8000), slice(8000, 10000)
    classes = {0: np.arange(10), 1: np.arange(2)}
    where = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else cpu_flags()
    print(f"device={args.device} ({where}), one thread, {epochs} epochs, "
          "MultiTaskClassifier on MNIST (digit, >= 5), 8,000 train / 2,000 test")
    header = f"{'network':<22}{'precision':<11}{'s/epoch':>9}{'accuracy':>10}{'speed-up':>10}"
    print(header)
    print("-" * len(header))
    configs = [
        ("MLP 784-1024-1024", X.reshape(len(X), -1), dict(hidden_layer_sizes=(1024, 1024),
                                                          batch_size=256)),
        ("Conv4 28x28", X, dict(batch_size=128)),
    ]
    for name, inputs, kwargs in configs:
        models = {p: MultiTaskClassifier(precision=p, lr=1e-3, random_state=0,
                                         device=args.device, **kwargs)
                  for p in ("fp32", "bf16")}
        times = {p: [] for p in models}
        for _ in range(epochs):
            for p, model in models.items():
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                start = time.perf_counter()
                model.partial_fit(inputs[tr], Y[tr], classes=classes)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[p].append(time.perf_counter() - start)
        ref = statistics.median(times["fp32"])
        for p, model in models.items():
            pred = model.predict(inputs[te])
            acc = float(np.mean(pred == Y[te]))
            med = statistics.median(times[p])
            print(f"{name:<22}{p:<11}{med:>9.2f}{acc:>10.3f}{ref / med:>9.2f}x", flush=True)


if __name__ == "__main__":
    main()
