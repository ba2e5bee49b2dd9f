"""MTAN: a shared trunk with per-task attention masks (Liu, Johns & Davison, 2019).

The shared trunk computes block outputs ``h_1 .. h_L`` once. Each task ``t``
has an attention module per block that reads ``h_l`` together with the task's
previous attended features ``a_{l-1}`` (mapped to the shape of ``h_l``) and
outputs a soft mask in (0, 1): ``a_l = sigmoid(g_l([h_l, f_l(a_{l-1})])) * h_l``.
The task head reads ``a_L``. Vector features use linear layers, feature maps
1x1 convolutions with adaptive pooling.
"""

import torch
from torch import nn

from ._blocks import flat_width
from ._heads import TaskHeads


class _Attention(nn.Module):
    def __init__(self, shape, prev_shape):
        super().__init__()
        self.maps = len(shape) == 3
        c = shape[0]
        if self.maps:
            self.pool = nn.AdaptiveAvgPool2d(shape[1:])
            self.f = None if prev_shape is None else nn.Conv2d(prev_shape[0], c, 1)
            self.g = nn.Conv2d(c * (1 if prev_shape is None else 2), c, 1)
        else:
            c = flat_width(shape)
            self.f = None if prev_shape is None else nn.Linear(flat_width(prev_shape), c)
            self.g = nn.Linear(c * (1 if prev_shape is None else 2), c)

    def forward(self, h, prev):
        if not self.maps:
            h = h.flatten(1)
        x = h
        if self.f is not None:
            p = self.f(self.pool(prev)) if self.maps else self.f(prev.flatten(1))
            x = torch.cat([h, p], dim=1)
        return torch.sigmoid(self.g(x)) * h


class AttentionNet(nn.Module):
    """Shared blocks plus one attention module per task and block."""

    def __init__(self, blocks, block_shapes, n_tasks, n_outputs):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.n_tasks = n_tasks
        prev = [None] + list(block_shapes[:-1])
        self.attention = nn.ModuleList(
            nn.ModuleList(_Attention(s, p) for s, p in zip(block_shapes, prev))
            for _ in range(n_tasks)
        )
        self.heads = TaskHeads(n_tasks, flat_width(block_shapes[-1]), n_outputs)

    def shared_parameters(self):
        """The shared trunk's parameters."""
        return list(self.blocks.parameters())

    def forward(self, X, task_ids=None):
        hs = []
        h = X
        for block in self.blocks:
            h = block(h)
            hs.append(h)
        tasks = range(self.n_tasks)
        Z = []
        for t in tasks:
            a = None
            for level, h in enumerate(hs):
                a = self.attention[t][level](h, a)
            Z.append(a.flatten(1))
        out = self.heads(torch.stack(Z))
        if task_ids is None:
            return out
        return out[torch.arange(X.shape[0], device=X.device), task_ids]
