"""Splitting a trunk into layer blocks, for architectures that work per layer.

Cross-stitch, sluice, MTAN and FiLM conditioning act between the layers of
the trunk. A trunk is split into *blocks*: a block starts at a module with
parameters that follows a module without parameters, so an MLP
``[Linear, ReLU, Linear, ReLU]`` gives ``[Linear, ReLU], [Linear, ReLU]``
and Conv4 ``[Conv, BN, ReLU, Pool] x 4`` gives its four blocks.
"""

import copy

import torch
from torch import nn

from ..modules import MLP, Conv4


def _has_params(module):
    return any(True for _ in module.parameters(recurse=True))


def layer_sequence(trunk, architecture):
    """The ``nn.Sequential`` of layers inside ``trunk`` (MLP, Conv4 or a Sequential)."""
    if isinstance(trunk, MLP):
        return trunk.layers
    if isinstance(trunk, Conv4):
        if trunk.head is not None:
            return nn.Sequential(*trunk.features, trunk.head)
        return trunk.features
    if isinstance(trunk, nn.Sequential):
        return trunk
    raise ValueError(
        f"architecture {architecture!r} works between the layers of the trunk, so the trunk "
        f"must be an nn.Sequential (or the default MLP / Conv4); got {type(trunk).__name__}"
    )


def split_blocks(sequence):
    """Split a Sequential into blocks (lists of modules), see the module docstring."""
    blocks, current = [], []
    for child in sequence:
        if current and _has_params(child) and not _has_params(current[-1]):
            blocks.append(current)
            current = []
        current.append(child)
    if current:
        blocks.append(current)
    return [nn.Sequential(*b) for b in blocks]


def fresh_copy(module, reinit):
    """A deep copy of ``module``, with re-drawn parameters when ``reinit``."""
    out = copy.deepcopy(module)
    if reinit:
        for m in out.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    return out


def block_shapes(blocks, X_example):
    """Output shape (without the batch dimension) of every block on ``X_example``."""
    shapes = []
    h = X_example
    with torch.no_grad():
        for b in blocks:
            was = b.training
            b.eval()
            h = b(h)
            b.train(was)
            shapes.append(tuple(h.shape[1:]))
    return shapes


def flat_width(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n
