"""Multi-task network architectures.

Every architecture is an ``nn.Module`` with the same call contract::

    forward(X, task_ids=None) -> logits

* with ``task_ids`` (a (n,) long tensor, one task per row) it returns the
  (n, C) outputs of each row's own task;
* without, it returns the (n, T, C) outputs of every task for every row.

``C`` is the largest output width over tasks; the estimator masks the
columns a task does not use. Architectures are built by
:func:`build_architecture` from a name or taken as a user module.
"""

import math

import torch
from torch import nn

__all__ = ["HardSharing", "TaskConditioned", "ARCHITECTURES", "build_architecture"]


# Above this many tasks, each row's head is gathered instead of computing all.
_GATHER_ABOVE = 16


class _StackedHeads(nn.Module):
    """T linear heads of equal width held as one (T, C, d) weight tensor.

    Computing all heads is one ``einsum``; computing each row's own head
    gathers that row's weight matrix. Both avoid a Python loop over tasks.
    """

    def __init__(self, n_tasks, in_features, out_features):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(n_tasks, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(n_tasks, out_features))
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, Z, task_ids=None):
        t, c, d = self.weight.shape
        if task_ids is None or t <= _GATHER_ABOVE:
            # One matmul for all heads; for few tasks this beats gathering
            # each row's weight matrix (and its scatter-add backward).
            out = torch.addmm(self.bias.view(-1), Z, self.weight.view(t * c, d).T).view(-1, t, c)
            if task_ids is None:
                return out
            return out[torch.arange(Z.shape[0], device=Z.device), task_ids]
        W = self.weight[task_ids]
        return torch.bmm(W, Z.unsqueeze(-1)).squeeze(-1) + self.bias[task_ids]

    def extra_repr(self):
        t, c, d = self.weight.shape
        return f"n_tasks={t}, in_features={d}, out_features={c}"


class HardSharing(nn.Module):
    """Hard parameter sharing: one shared trunk, one linear head per task.

    The classic multi-task network (Caruana, 1997): every task reads the
    same representation ``trunk(X)`` and has its own output layer.

    Parameters
    ----------
    trunk : nn.Module
        Maps X to a (n, d) representation.
    n_features : int
        ``d``, the trunk's output width.
    n_tasks : int
        Number of tasks.
    n_outputs : int
        Width of every head (the largest number of classes over tasks).
    """

    def __init__(self, trunk, n_features, n_tasks, n_outputs):
        super().__init__()
        self.trunk = trunk
        self.heads = _StackedHeads(n_tasks, n_features, n_outputs)

    def shared_parameters(self):
        """Parameters shared by all tasks (for gradient-based weightings)."""
        return list(self.trunk.parameters())

    def forward(self, X, task_ids=None):
        Z = self.trunk(X)
        if Z.dim() > 2:
            Z = Z.flatten(1)
        return self.heads(Z, task_ids)


class TaskConditioned(nn.Module):
    """One network for all tasks, told the task by a one-hot input vector.

    The one-hot encoding of the task is concatenated to the input features;
    a single output layer serves every task. With ``task_ids=None`` each row
    is run once per task.

    Parameters
    ----------
    trunk : nn.Module
        Maps the (n, n_input_features + T) conditioned input to (n, d).
    n_features : int
        ``d``, the trunk's output width.
    n_tasks : int
        Number of tasks.
    n_outputs : int
        Width of the shared output layer.
    """

    def __init__(self, trunk, n_features, n_tasks, n_outputs):
        super().__init__()
        self.trunk = trunk
        self.n_tasks = n_tasks
        self.output = nn.Linear(n_features, n_outputs)

    def shared_parameters(self):
        """Parameters shared by all tasks (here: all of them)."""
        return list(self.parameters())

    def _run(self, X, task_ids):
        onehot = nn.functional.one_hot(task_ids, self.n_tasks).to(X.dtype)
        Z = self.trunk(torch.cat([X.flatten(1), onehot], dim=1))
        return self.output(Z.flatten(1) if Z.dim() > 2 else Z)

    def forward(self, X, task_ids=None):
        if task_ids is not None:
            return self._run(X, task_ids)
        n = X.shape[0]
        tasks = torch.arange(self.n_tasks, device=X.device)
        out = self._run(X.repeat_interleave(self.n_tasks, dim=0), tasks.repeat(n))
        return out.view(n, self.n_tasks, -1)


#: Architecture names accepted by ``architecture=``.
ARCHITECTURES = {
    "hard": HardSharing,
    "conditioned": TaskConditioned,
}


def _output_width(trunk, example):
    was_training = trunk.training
    trunk.eval()
    try:
        with torch.no_grad():
            out = trunk(example)
    finally:
        trunk.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() < 2:
        raise ValueError(
            f"the trunk module must return a (n_samples, n_features) tensor; it returned "
            f"{type(out).__name__} of shape {getattr(out, 'shape', None)}"
        )
    return int(out[0].numel())


def build_architecture(architecture, make_trunk, X_example, n_tasks, n_outputs):
    """Build the network for ``architecture``.

    Parameters
    ----------
    architecture : str or nn.Module
        A name of :data:`ARCHITECTURES`, or a user module with the
        ``forward(X, task_ids=None)`` contract (used as is).
    make_trunk : callable
        ``make_trunk(n_input_features)`` returns a fresh trunk for inputs of
        that many features (the conditioned network's input is wider).
    X_example : torch.Tensor
        A couple of input rows, to infer the trunk's output width.
    """
    if isinstance(architecture, nn.Module):
        return architecture
    if not isinstance(architecture, str) or architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}; valid names are {sorted(ARCHITECTURES)}, "
            "or pass an nn.Module with forward(X, task_ids=None)"
        )
    if architecture == "conditioned":
        if X_example.dim() != 2:
            raise ValueError(
                "architecture='conditioned' concatenates a one-hot task vector to the input "
                f"features, so X must be 2-D; got samples of shape {tuple(X_example.shape[1:])}"
            )
        n_in = X_example.shape[1] + n_tasks
        trunk = make_trunk(n_in)
        example = torch.cat([X_example, torch.zeros(X_example.shape[0], n_tasks)], dim=1)
        try:
            width = _output_width(trunk, example)
        except RuntimeError as exc:
            raise ValueError(
                "architecture='conditioned' feeds the trunk n_features + n_tasks = "
                f"{n_in} inputs, and the given module failed on them: {exc}"
            ) from exc
        return TaskConditioned(trunk, width, n_tasks, n_outputs)
    trunk = make_trunk(X_example[0].numel() if X_example.dim() == 2 else None)
    try:
        width = _output_width(trunk, X_example)
    except RuntimeError as exc:
        raise ValueError(f"the trunk module failed on X of sample shape "
                         f"{tuple(X_example.shape[1:])}: {exc}") from exc
    return HardSharing(trunk, width, n_tasks, n_outputs)
