"""MAML on a GPU: correctness of the vmapped meta-gradient and seconds per meta-iteration.

For a machine with a CUDA device. It runs

1. the second-order meta-gradient of a tiny Conv4 in float64 on the GPU,
   vmapped over tasks and as a per-task loop (they must agree to ~1e-10);
2. the configurations of ``bench_maml_speed.py`` on the GPU: vmap, loop and
   the learn2learn-style clone-per-task loop, second and first order, 1 and
   15 queries per class, with the peak GPU memory of each
   (``torch.cuda.max_memory_allocated``), and what ``task_batching="auto"``
   picks;
3. a short ``MAMLClassifier`` fit on the GPU with ``device="cuda"``.

Run ``python benchmarks/gpu_maml.py`` (``--quick`` for fewer iterations). It
exits with a message on a machine without CUDA.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_maml_speed as speed  # noqa: E402


def check_gradients(device):
    from sktransfer.meta._learner import Learner
    from sktransfer.meta._maml_module import build_maml_module
    from sktransfer.modules import Conv4

    grads = {}
    for path in ("vmap", "loop"):
        torch.manual_seed(0)
        trunk = Conv4(hidden_channels=4, n_blocks=2, image_size=8, track_running_stats=False)
        learner = Learner(trunk, trunk.out_features_, 3).double().to(device)
        module = build_maml_module(learner, inner_lr=0.3, inner_steps=2, first_order=False,
                                   learn_inner_lr=True, task_batching=path).double().to(device)
        gen = torch.Generator().manual_seed(1)
        tasks = (torch.randn(4, 6, 1, 8, 8, generator=gen, dtype=torch.float64).to(device),
                 torch.arange(3).repeat(2).expand(4, 6).contiguous().to(device),
                 torch.randn(4, 9, 1, 8, 8, generator=gen, dtype=torch.float64).to(device),
                 torch.arange(3).repeat(3).expand(4, 9).contiguous().to(device))
        module.meta_step(tasks, backward=True)
        grads[path] = [p.grad.detach().clone() for p in module.parameters()]
    scale = max(float(g.abs().max()) for g in grads["loop"])
    diff = max(float((a - b).abs().max()) for a, b in zip(grads["vmap"], grads["loop"]))
    return diff / scale


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: run this script on a GPU machine")
        return
    device = "cuda"
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")

    rel = check_gradients(device)
    print(f"1. second-order meta-gradient, vmap vs loop (float64, GPU): max relative "
          f"difference {rel:.2e} -> {'OK' if rel < 1e-9 else 'MISMATCH'}")

    from sktransfer.meta import choose_task_batching

    iters = speed.ITERS_QUICK if args.quick else 20
    print(f"2. seconds per meta-iteration, {iters} timed iterations, 5-way 1-shot, "
          "meta-batch 16, Conv4-64 on 28x28")
    print(f"{'order':<7}{'query':>6}  {'path':<12}{'s/iter':>9}{'peak MB':>10}{'vs l2l':>8}")
    for order in ("second", "first"):
        for n_query in (1, 15):
            results = {}
            for path in ("vmap", "loop", "l2l-style"):
                torch.cuda.empty_cache()
                first = order == "first"
                results[path] = speed.time_paths([path], first, n_query, device, iters)[path]
                results[path]["peak_mb"] = speed.peak_memory(path, first, n_query, device)
            choice, _ = choose_task_batching(device, 5 * (1 + n_query), 113_221, True)
            ref = results["l2l-style"]["seconds"]
            for path, r in results.items():
                mark = " <- auto" if path == choice else ""
                print(f"{order:<7}{n_query:>6}  {path:<12}{r['seconds']:>9.4f}"
                      f"{r['peak_mb']:>10.0f}{ref / r['seconds']:>7.2f}x{mark}", flush=True)

    from sktransfer.meta import MAMLClassifier

    rng = np.random.RandomState(0)
    X = rng.rand(2000, 1, 28, 28).astype(np.float32)
    y = np.repeat(np.arange(100), 20)
    maml = MAMLClassifier(n_way=5, k_shot=1, n_query=15, batch_size=16, episodes_per_epoch=320,
                          max_epochs=1, device="cuda", random_state=0)
    start = time.perf_counter()
    maml.fit(X, y)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(f"3. MAMLClassifier.fit on cuda: 20 meta-iterations of 16 tasks in {seconds:.1f} s "
          f"(task_batching_={maml.task_batching_!r}: {maml.task_batching_reason_})")


if __name__ == "__main__":
    main()
