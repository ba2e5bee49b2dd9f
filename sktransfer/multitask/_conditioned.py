"""Task-conditioned networks: one network for all tasks, told the task.

The task enters at the input and/or after every hidden block, either
concatenated as a one-hot vector (``how="concat"``) or as a learned
feature-wise scale and shift (``how="film"``, Perez et al., 2018:
``h * (1 + gamma_t) + beta_t``, initialised to the identity; per channel for
feature maps). A single output layer serves every task. With
``task_ids=None`` each row is run once per task.
"""

import torch
from torch import nn

from ._blocks import flat_width


class _FiLM(nn.Module):
    def __init__(self, n_tasks, shape):
        super().__init__()
        self.n_dims = len(shape)
        self.gamma = nn.Parameter(torch.zeros(n_tasks, shape[0]))
        self.beta = nn.Parameter(torch.zeros(n_tasks, shape[0]))

    def forward(self, h, task_ids):
        view = (h.shape[0], -1) + (1,) * (h.dim() - 2)
        return h * (1 + self.gamma[task_ids].view(view)) + self.beta[task_ids].view(view)


class TaskConditionedNet(nn.Module):
    """Blocks with task conditioning before (position 0) and after each block.

    What :class:`TaskConditioning` (``architecture="conditioned"``) builds.

    Parameters
    ----------
    blocks : list of nn.Module
        The trunk's blocks, built to accept the widened inputs that
        concatenation produces.
    positions : set of int
        Where the task enters: 0 is the input, ``l`` the output of block ``l``.
    how : {"concat", "film"}
    shapes : list of tuple
        Shape of the features at every position ``0 .. L`` (before widening).
    n_tasks, n_outputs : int
    """

    def __init__(self, blocks, positions, how, shapes, n_tasks, n_outputs):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.positions = sorted(positions)
        self.how = how
        self.n_tasks = n_tasks
        if how == "film":
            self.film = nn.ModuleDict({str(p): _FiLM(n_tasks, shapes[p]) for p in self.positions})
        last = len(blocks)
        width = flat_width(shapes[last]) + (n_tasks if how == "concat" and last in positions
                                            else 0)
        self.output = nn.Linear(width, n_outputs)

    def shared_parameters(self):
        """Parameters shared by all tasks (all but the FiLM embeddings)."""
        return [p for name, p in self.named_parameters() if not name.startswith("film.")]

    def _condition(self, h, pos, task_ids):
        if pos not in self.positions:
            return h
        if self.how == "film":
            return self.film[str(pos)](h, task_ids)
        onehot = nn.functional.one_hot(task_ids, self.n_tasks).to(h.dtype)
        return torch.cat([h.flatten(1), onehot], dim=1)

    def _run(self, X, task_ids):
        h = self._condition(X, 0, task_ids)
        for pos, block in enumerate(self.blocks, start=1):
            h = self._condition(block(h), pos, task_ids)
        return self.output(h.flatten(1))

    def forward(self, X, task_ids=None):
        if task_ids is not None:
            return self._run(X, task_ids)
        n = X.shape[0]
        tasks = torch.arange(self.n_tasks, device=X.device)
        out = self._run(X.repeat_interleave(self.n_tasks, dim=0), tasks.repeat(n))
        return out.view(n, self.n_tasks, -1)


# The name sktransfer 0.1 pickled this class under.
TaskConditioned = TaskConditionedNet
