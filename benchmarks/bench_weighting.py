"""Time per training step of every task weighting, against equal weighting.

The network is MultiTaskClassifier's hard-sharing MLP (trunk 3 x 512, one
linear head per task) on digits with T = 2, 4 and 8 targets per row, batch
256, one torch thread. Every weighting gets its own net built from the same
seed; the steps (``net.train_step``: forward, backward, weighting, Adam
step) run in rounds that alternate the methods, and the table reports the
time per step of each method's best round (the one least disturbed by
other processes) and its ratio to ``"equal"``.

``stch`` is timed after its warm-up (``warmup_epochs=0``). The
full-gradient methods include those that set the gradients themselves
(``graddrop``, ``gradvac``, ``db_mtl``, ``excess_mtl``), which have no
solver of their own in the second table.

Reference code paths, written here, run on the same network:

* ``loop T x backward``: the plain loop a full-gradient method needs, as
  LibMTL writes it: forward, then for each task ``loss_t.backward(retain_graph=True)``
  and a copy of the shared gradients into a (T, P) matrix, then the sum and
  the optimizer step (no solver);
* ``LibMTL-style MGDA``: that loop plus the Gramian and the Frank-Wolfe
  min-norm solver;
* ``torchjd MGDA`` / ``torchjd IMTL-G``: ``torchjd.autojac.mtl_backward`` +
  ``jac_to_grad`` with torchjd's aggregator (when torchjd is installed).

A second table times the weight solvers alone on the Gramians of real
per-task gradients, and a third the two ways of getting per-task gradients
(T calls of ``torch.autograd.grad`` against one vmapped call with
``is_grads_batched=True``).

Run ``python benchmarks/bench_weighting.py`` (``--quick`` for a short run).
"""

import argparse
import copy
import time
from functools import partial

import numpy as np
import torch
from sklearn.datasets import load_digits

from sktransfer.base import torch_threads
from sktransfer.multitask import MultiTaskClassifier
from sktransfer.multitask import _solvers as S
from sktransfer.multitask._gradient_step import per_task_gradients

LOSS_BASED = ["uncertainty", "dwa", "rlw", "famo", "famo_next", "stch", "gradnorm"]
REPRESENTATION = ["mgda_ub"]
FULL = ["mgda", "pcgrad", "cagrad", "imtl", "upgrad", "aligned_mtl", "nash_mtl", "fairgrad"]
# Full-gradient methods that set the gradients themselves (no Gramian solver to time alone).
SURGERY = ["graddrop", "gradvac", "db_mtl", "excess_mtl"]


def make_problem(T, n=512):
    X, y = load_digits(return_X_y=True)
    X = (X[:n] / 16.0).astype(np.float32)
    y = y[:n]
    Y = np.column_stack([y % (k + 2) for k in range(T)])
    return X, Y


def build(weighting, X, Y, batch_size):
    from sktransfer.multitask import FAMOWeighting, STCHWeighting

    w = FAMOWeighting(update="next_batch") if weighting == "famo_next" else weighting
    if weighting == "stch":
        w = STCHWeighting(warmup_epochs=0)  # time the smooth Tchebycheff step, not the warm-up
    est = MultiTaskClassifier(weighting=w, hidden_layer_sizes=(512, 512, 512),
                              batch_size=batch_size, max_epochs=1, random_state=0)
    est.fit(X, Y)
    return est.net_


def batch_of(X, Y, batch_size):
    return ({"X": torch.as_tensor(X[:batch_size])},
            torch.as_tensor(Y[:batch_size], dtype=torch.int64))


# ------------------------------------------------------------ reference paths
class LoopReference:
    """LibMTL-style: T backward passes into .grad, copied into a (T, P) matrix."""

    def __init__(self, net, solver=None):
        self.module = copy.deepcopy(net.module_)
        self.criterion = net.criterion_
        self.shared = list(self.module.model.trunk.parameters())
        self.opt = torch.optim.Adam(self.module.parameters(), lr=1e-3)
        self.solver = solver

    def grad2vec(self):
        return torch.cat([p.grad.reshape(-1) for p in self.shared])

    def __call__(self, batch):
        Xi, y = batch
        self.opt.zero_grad()
        losses, _ = self.criterion(self.module(Xi["X"]), y)
        T = losses.shape[0]
        rows = []
        for t in range(T):
            losses[t].backward(retain_graph=t < T - 1)
            rows.append(self.grad2vec())
            for p in self.shared:
                p.grad = None
        G = torch.stack(rows)
        if self.solver is None:
            d = G.sum(0)
        else:
            w = self.solver((G @ G.T).double().numpy())
            d = torch.as_tensor(w, dtype=G.dtype) @ G
        off = 0
        for p in self.shared:
            n = p.numel()
            p.grad = d[off:off + n].view_as(p)
            off += n
        self.opt.step()


class TorchJDReference:
    """torchjd: mtl_backward on the shared representation, then jac_to_grad."""

    def __init__(self, net, aggregator):
        from torchjd.autojac import jac_to_grad, mtl_backward

        self.mtl_backward, self.jac_to_grad = mtl_backward, jac_to_grad
        self.module = copy.deepcopy(net.module_)
        self.criterion = net.criterion_
        self.model = self.module.model
        self.shared = list(self.model.trunk.parameters())
        self.opt = torch.optim.Adam(self.module.parameters(), lr=1e-3)
        self.aggregator = aggregator

    def __call__(self, batch):
        Xi, y = batch
        self.opt.zero_grad()
        Z = self.model.trunk(Xi["X"])
        out = self.model.heads(Z).masked_fill(~self.module.class_mask, -1e4)
        losses, _ = self.criterion(out, y)
        # The stacked heads are one tensor used by every task: keep the graph.
        self.mtl_backward(list(losses), features=Z, retain_graph=True)
        self.jac_to_grad(self.shared, self.aggregator)
        self.opt.step()


# ------------------------------------------------------------------- timing
def time_steps(fns, rounds, steps):
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.perf_counter() - t0) / steps)
    # The best round is the one least disturbed by other processes.
    return {k: min(v) for k, v in times.items()}


def step_table(Ts, rounds, steps, batch_size):
    results = {}
    for T in Ts:
        X, Y = make_problem(T)
        batch = batch_of(X, Y, batch_size)
        names = ["equal"] + LOSS_BASED + REPRESENTATION + FULL + SURGERY
        nets = {name: build(name, X, Y, batch_size) for name in names}
        fns = {name: partial(net.train_step, batch) for name, net in nets.items()}
        fns["loop T x backward"] = partial(LoopReference(nets["equal"]), batch)
        fns["LibMTL-style MGDA"] = partial(LoopReference(nets["equal"], S.min_norm_weights),
                                           batch)
        try:
            from torchjd.aggregation import IMTLG, MGDA
        except ImportError:
            pass
        else:
            fns["torchjd MGDA"] = partial(TorchJDReference(nets["equal"], MGDA()), batch)
            fns["torchjd IMTL-G"] = partial(TorchJDReference(nets["equal"], IMTLG()), batch)
        for fn in fns.values():  # warm up
            fn()
        results[T] = time_steps(fns, rounds, steps)
        print(f"  T={T} done", flush=True)
    return results


def solver_table(Ts, repeats):
    rows = {}
    from sktransfer.multitask import WEIGHTINGS

    for T in Ts:
        X, Y = make_problem(T)
        net = build("equal", X, Y, 256)
        Xi, y = batch_of(X, Y, 256)
        losses, _ = net.criterion_(net.module_(Xi["X"]), y)
        shared = list(net.module_.model.trunk.parameters())
        G, _ = per_task_gradients(losses, list(range(T)), shared, [])
        M = (G @ G.T).double().numpy()
        lv = losses.detach().double().numpy()
        for name in FULL + ["mgda_fw"]:
            if name == "mgda_fw":
                weighter = WEIGHTINGS["mgda"](solver="frank_wolfe").build(T)
            else:
                weighter = WEIGHTINGS[name]().build(T)
            weighter.solve(M, lv)
            best = float("inf")
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(repeats):
                    weighter.solve(M, lv)
                best = min(best, (time.perf_counter() - t0) / repeats)
            rows.setdefault(name, {})[T] = best
    return rows


def _loop_grads(net, Xi, y, shared, T):
    losses, _ = net.criterion_(net.module_(Xi["X"]), y)
    per_task_gradients(losses, list(range(T)), shared, [])


def _vmap_grads(net, Xi, y, shared, T):
    losses, _ = net.criterion_(net.module_(Xi["X"]), y)
    grads = torch.autograd.grad(losses, shared, grad_outputs=torch.eye(T),
                                is_grads_batched=True)
    torch.cat([g.reshape(T, -1) for g in grads], dim=1)


def grad_table(Ts, rounds, steps):
    out = {}
    for T in Ts:
        X, Y = make_problem(T)
        net = build("equal", X, Y, 256)
        Xi, y = batch_of(X, Y, 256)
        shared = list(net.module_.model.trunk.parameters())

        loop = partial(_loop_grads, net, Xi, y, shared, T)
        batched = partial(_vmap_grads, net, Xi, y, shared, T)
        loop()
        batched()
        out[T] = time_steps({"loop": loop, "vmap": batched}, rounds, steps)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks, rounds and steps")
    args = parser.parse_args()
    Ts = [2, 8] if args.quick else [2, 4, 8]
    rounds, steps = (2, 2) if args.quick else (10, 2)
    with torch_threads(1):
        print("Per-step time, MLP trunk 3 x 512, batch 256, one thread "
              f"(best of {rounds} rounds of {steps} steps)")
        res = step_table(Ts, rounds, steps, 256)
        names = list(res[Ts[0]])
        head = f"{'method':22s}" + "".join(f"{'T=' + str(T) + ' ms':>11s}{'ratio':>7s}" for T in Ts)
        print(head)
        for name in names:
            line = f"{name:22s}"
            for T in Ts:
                ms = res[T][name] * 1e3
                line += f"{ms:11.1f}{res[T][name] / res[T]['equal']:7.2f}"
            print(line)
        print("\nFull-gradient methods / plain loop of T backward passes:")
        for name in FULL + SURGERY:
            print(f"  {name:14s}" + "".join(
                f"  T={T}: {res[T][name] / res[T]['loop T x backward']:.2f}" for T in Ts))
        if "torchjd MGDA" in names:
            print("mgda / torchjd MGDA:      " + "".join(
                f"  T={T}: {res[T]['mgda'] / res[T]['torchjd MGDA']:.2f}" for T in Ts))
            print("imtl / torchjd IMTL-G:    " + "".join(
                f"  T={T}: {res[T]['imtl'] / res[T]['torchjd IMTL-G']:.2f}" for T in Ts))
        print("mgda / LibMTL-style MGDA: " + "".join(
            f"  T={T}: {res[T]['mgda'] / res[T]['LibMTL-style MGDA']:.2f}" for T in Ts))

        print("\nWeight solver alone (ms per call, Gramian of real per-task gradients)")
        sol = solver_table(Ts, 10 if args.quick else 40)
        print(f"{'solver':14s}" + "".join(f"{'T=' + str(T):>10s}" for T in Ts))
        for name, row in sol.items():
            print(f"{name:14s}" + "".join(f"{row[T] * 1e3:10.3f}" for T in Ts))

        print("\nPer-task gradients of the trunk (forward included), ms")
        gt = grad_table(Ts, rounds, steps)
        print(f"{'T':>3s}{'loop':>10s}{'vmap':>10s}")
        for T in Ts:
            print(f"{T:3d}{gt[T]['loop'] * 1e3:10.1f}{gt[T]['vmap'] * 1e3:10.1f}")


if __name__ == "__main__":
    main()
