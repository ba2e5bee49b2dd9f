"""Seconds per MAML meta-iteration: vmap vs per-task loop vs a learn2learn-style loop.

Configuration (the issue's): 5-way 1-shot, meta-batch 16, Conv4 (64 channels)
on 28x28 images, 1 inner step, second- and first-order MAML, 1 and 15 query
examples per class, one CPU thread. The paths of a configuration take turns
in one process (one iteration each, round after round) and the table gives
each path's median, so that every path sees the same load on a shared
machine. Peak memory (maximum resident set size above the process's size
after setup; allocated GPU memory on CUDA) is measured for each path alone,
in its own process. Images are random: the cost of a step does not depend
on the pixel values.

Paths:

* ``vmap``: MAML's meta-model with the vmap runner (``task_batching="vmap"``);
* ``loop``: the meta-model with the per-task loop runner and PyTorch's fused
  ``BatchNorm2d`` (which ``MAMLClassifier`` swaps in for the loop path); on
  a CPU its convolutions run channels-last where that is faster;
* ``loop-nchw``: the same loop with channels-last turned off;
* ``auto``: the path ``choose_task_batching`` picks for the configuration
  (it is one of the two above; its time is that path's);
* ``l2l-style``: the clone-per-task loop of learn2learn's ``MAML`` wrapper,
  written here (``clone_module`` + ``update_module``: every task clones the
  model's parameters into a module copy and replaces them with the adapted
  ones), with ``torch.nn.BatchNorm2d``;
* ``learn2learn``: the library itself, when it is installed;
* every path ends with an Adam step: fused (``fused=True``, the estimators'
  default) for the package's paths, per tensor for the learn2learn-style
  loops, as a user writes them;
* ``compiled`` (with ``--compile``, first order only): ``compile_step=True``,
  the per-task first-order step compiled with ``torch.compile`` (the
  compilation, in the first warm-up iteration, is not in the time).

Run ``python benchmarks/bench_maml_speed.py`` (``--quick`` for 2 timed
rounds instead of 8, ``--device cuda`` on a GPU machine).
"""

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ITERS_FULL, ITERS_QUICK = 8, 2


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clone_module(module):
    """learn2learn's clone_module: a copy whose parameters are differentiable clones."""
    clone = copy.copy(module)
    clone.__dict__ = module.__dict__.copy()
    clone._parameters = {k: (p.clone() if p is not None else None)
                         for k, p in module._parameters.items()}
    clone._buffers = {k: (b.clone() if b is not None else None)
                      for k, b in module._buffers.items()}
    clone._modules = {k: clone_module(m) for k, m in module._modules.items()}
    return clone


def update_module(module, updates):
    """learn2learn's update_module: replace every parameter with ``p + update``."""
    params = list(module.parameters())
    for p, u in zip(params, updates):
        p.update = u
    _apply(module)
    return module


def _apply(module):
    for k, p in module._parameters.items():
        if p is not None and getattr(p, "update", None) is not None:
            module._parameters[k] = p + p.update
    for m in module._modules.values():
        _apply(m)


def build(n_query, device, torch_bn=False):
    import torch
    from torch import nn

    from sktransfer.meta._learner import Learner
    from sktransfer.modules import Conv4

    torch.manual_seed(0)
    trunk = Conv4(in_channels=1, image_size=28, track_running_stats=False)
    if torch_bn:
        for i, layer in enumerate(trunk.features):
            if type(layer).__name__ == "BatchNorm2d":
                trunk.features[i] = nn.BatchNorm2d(layer.num_features,
                                                   track_running_stats=False)
    learner = Learner(trunk, trunk.out_features_, 5).to(device)
    gen = torch.Generator().manual_seed(1)
    B, N, K = 16, 5, 1
    Xs = torch.rand(B, N * K, 1, 28, 28, generator=gen).to(device)
    Xq = torch.rand(B, N * n_query, 1, 28, 28, generator=gen).to(device)
    ys = torch.arange(N).repeat_interleave(K).expand(B, -1).contiguous().to(device)
    yq = torch.arange(N).repeat_interleave(n_query).expand(B, -1).contiguous().to(device)
    return learner, (Xs, ys, Xq, yq)


def make_iteration(path, first_order, n_query, device):
    """One meta-iteration (zero_grad, meta-gradient, Adam step) of ``path``."""
    import torch
    import torch.nn.functional as F

    from sktransfer.meta._maml_module import build_maml_module

    # the loop paths run PyTorch's fused batch norm, as MAMLClassifier does
    learner, tasks = build(n_query, device, torch_bn=path != "vmap")
    if path in ("vmap", "loop", "loop-nchw", "compiled"):
        model = build_maml_module(learner, inner_lr=0.4, inner_steps=1,
                                  first_order=first_order,
                                  task_batching="vmap" if path == "vmap" else "loop",
                                  compile_step=path == "compiled").to(device)
        if path == "loop-nchw":
            model.channels_last = False

        def step():
            model.meta_step(tasks, backward=True)
    elif path == "l2l-style":
        model = learner

        def step():
            n = tasks[0].shape[0]
            for t in range(n):
                Xs, ys, Xq, yq = (a[t] for a in tasks)
                clone = clone_module(model)
                loss = F.cross_entropy(clone(Xs), ys)
                grads = torch.autograd.grad(loss, list(clone.parameters()),
                                            create_graph=not first_order)
                clone = update_module(clone, [-0.4 * g for g in grads])
                (F.cross_entropy(clone(Xq), yq) / n).backward()
    else:  # learn2learn itself
        import learn2learn as l2l

        model = l2l.algorithms.MAML(learner, lr=0.4, first_order=first_order)

        def step():
            n = tasks[0].shape[0]
            for t in range(n):
                Xs, ys, Xq, yq = (a[t] for a in tasks)
                clone = model.clone()
                clone.adapt(F.cross_entropy(clone(Xs), ys))
                (F.cross_entropy(clone(Xq), yq) / n).backward()
    # the package's paths step with fused Adam, MAMLClassifier's default; the
    # learn2learn-style loops with Adam as a user writes it
    opt = torch.optim.Adam(model.parameters(), 1e-3,
                           fused=path not in ("l2l-style", "learn2learn"))

    def iteration():
        opt.zero_grad()
        step()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return iteration


def time_paths(paths, first_order, n_query, device, iters):
    """Median seconds per iteration of every path, timed in turns in one process.

    Taking turns (path 1, path 2, ..., path 1, ...) exposes every path to the
    same load on a shared machine, so the ratios hold even when the absolute
    times drift.
    """
    import torch

    torch.set_num_threads(1)
    iterations, first = {}, {}
    for path in paths:
        iterations[path] = make_iteration(path, first_order, n_query, device)
        start = time.perf_counter()
        iterations[path]()  # warm-up (and compilation)
        first[path] = time.perf_counter() - start
        iterations[path]()
    times = {path: [] for path in paths}
    for _ in range(iters):
        for path in paths:
            start = time.perf_counter()
            iterations[path]()
            times[path].append(time.perf_counter() - start)
    return {path: {"seconds": statistics.median(times[path]), "first_s": first[path]}
            for path in paths}


def peak_memory(path, first_order, n_query, device):
    """Peak memory of two iterations of ``path`` alone in this process (MB)."""
    import torch

    torch.set_num_threads(1)
    base_rss = _rss_mb()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    iteration = make_iteration(path, first_order, n_query, device)
    iteration()
    iteration()
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return _peak_mb() - base_rss


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true",
                        help="also time compile_step=True (first order; compiles for ~1 min)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    iters = ITERS_QUICK if args.quick else ITERS_FULL
    if args.worker:
        mode, paths, order, n_query = args.worker.split(":")
        if mode == "time":
            out = time_paths(paths.split(","), order == "first", int(n_query), args.device,
                             iters)
        else:
            out = peak_memory(paths, order == "first", int(n_query), args.device)
        print(json.dumps(out))
        return

    from sktransfer.meta import choose_task_batching

    env = dict(os.environ, SKTRANSFER_NUM_THREADS="1", OMP_NUM_THREADS="1")
    paths = ["vmap", "loop", "loop-nchw", "l2l-style"]
    try:
        import learn2learn  # noqa: F401

        paths.append("learn2learn")
    except ImportError:
        print("learn2learn is not installed: comparing with the learn2learn-style loop only")
    n_params = 113_221
    print(f"device={args.device}, threads=1, median of {iters} timed iterations per path "
          "(paths take turns in one process), 5-way 1-shot, meta-batch 16, Conv4-64 on "
          "28x28, 1 inner step; peak memory of each path alone in its own process")
    header = (f"{'order':<7}{'query':>6}  {'path':<12}{'s/iter':>9}{'peak MB':>10}"
              f"{'vs l2l-style':>14}")
    print(header)
    print("-" * len(header))

    def run(worker):
        cmd = [sys.executable, __file__, "--worker", worker, "--device", args.device]
        proc = subprocess.run(cmd + (["--quick"] if args.quick else []), capture_output=True,
                              text=True, env=env)
        if proc.returncode != 0:
            print(f"{worker} failed: {proc.stderr[-400:]}")
            return None
        return json.loads(proc.stdout.strip().splitlines()[-1])

    for order in ("second", "first"):
        for n_query in (1, 15):
            config = [p for p in paths + (["compiled"] if args.compile and order == "first"
                                          else [])]
            results = run(f"time:{','.join(config)}:{order}:{n_query}")
            if results is None:
                continue
            for path in config:
                results[path]["peak_mb"] = run(f"memory:{path}:{order}:{n_query}")
            choice, reason = choose_task_batching(args.device, 5 * (1 + n_query), n_params,
                                                  batch_norm=True)
            ref = results["l2l-style"]["seconds"]
            for name, path in [(f"auto={choice}", choice)] + [(p, p) for p in config]:
                r = results[path]
                peak = f"{r['peak_mb']:>10.0f}" if r["peak_mb"] is not None else f"{'-':>10}"
                print(f"{order:<7}{n_query:>6}  {name:<12}{r['seconds']:>9.3f}{peak}"
                      f"{ref / r['seconds']:>13.2f}x")
            print(f"{'':15}auto: {reason}")
    print("\n'vs l2l-style' > 1 means faster than the learn2learn-style clone-per-task loop.")


if __name__ == "__main__":
    main()
