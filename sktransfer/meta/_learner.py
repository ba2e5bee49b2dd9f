"""The network that gradient-based meta-learners adapt: a trunk and a linear head."""

import numpy as np
from torch import nn

from ..base import trunk_output_shape

__all__ = ["Learner", "build_trunk", "trunk_output_shape", "trunk_width"]


class Learner(nn.Module):
    """``head(trunk(X))``: an embedding network followed by a linear layer.

    Parameter names start with ``trunk.`` and ``head.``, which is how
    ``adapt_layers="head"`` (ANIL) selects the head.
    """

    def __init__(self, trunk, in_features, out_features):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(in_features, out_features)

    def forward(self, X):
        return self.head(self.trunk(X).flatten(1))


def trunk_width(trunk, sample_shape):
    """Width of the trunk's (flattened) output, from ``out_features_`` or a dry run."""
    width = getattr(trunk, "out_features_", None)
    if width is not None:
        return int(width)
    return int(np.prod(trunk_output_shape(trunk, sample_shape)))


def build_trunk(estimator, sample_shape, hidden_layer_sizes):
    """The estimator's trunk; images get a Conv4 whose batch norm keeps no running
    statistics (batch statistics at train and test time, as in MAML's reference code),
    computed from primitive operations so that it is usable under
    :func:`torch.func.vmap` (the loop runners swap in the fused kernel,
    :func:`use_fused_batch_norm`)."""
    from ..modules import Conv4

    if estimator.module is None and len(sample_shape) == 3:
        return Conv4(in_channels=sample_shape[0], image_size=tuple(sample_shape[1:]),
                     track_running_stats=False, batch_norm="primitive")
    return estimator._make_trunk(sample_shape, hidden_layer_sizes)


def has_batch_norm(module):
    from ..modules import BatchNorm2d

    return any(isinstance(m, (BatchNorm2d, nn.modules.batchnorm._BatchNorm))
               for m in module.modules())


def use_primitive_batch_norm(module):
    """Replace every :class:`torch.nn.BatchNorm2d` without running statistics by
    :class:`sktransfer.modules.BatchNorm2d` with the same settings and weights (in place).

    The vmapped meta-step needs batch norm from primitive operations:
    PyTorch's fused kernel gives second-order meta-gradients that are off by
    about 1% under :func:`torch.func.vmap`. A layer with running statistics
    is left as it is (vmap cannot update them in place either way, and the
    runner falls back to the per-task loop).

    Parameters
    ----------
    module : nn.Module
        The network, changed in place.

    Returns
    -------
    nn.Module
        ``module``.
    """
    from ..modules import BatchNorm2d

    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d and not child.track_running_stats:
            primitive = BatchNorm2d(child.num_features, eps=child.eps,
                                    momentum=child.momentum or 0.1,
                                    affine=child.affine, track_running_stats=False)
            if child.affine:
                weight = child.weight
                primitive = primitive.to(device=weight.device, dtype=weight.dtype)
                primitive.load_state_dict(child.state_dict())
            setattr(module, name, primitive)
        else:
            use_primitive_batch_norm(child)
    return module


def use_fused_batch_norm(module):
    """Replace every :class:`sktransfer.modules.BatchNorm2d` by :class:`torch.nn.BatchNorm2d`
    with the same settings and weights (in place).

    The same function, computed by PyTorch's fused kernel: exact with
    second-order gradients outside :func:`torch.func.vmap` and faster on a
    CPU (see the Benchmarks page), so the per-task loop path uses it.
    """
    from ..modules import BatchNorm2d

    for name, child in module.named_children():
        if isinstance(child, BatchNorm2d):
            fused = nn.BatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum,
                                   affine=child.weight is not None,
                                   track_running_stats=child.track_running_stats)
            fused.load_state_dict(child.state_dict())
            setattr(module, name, fused)
        else:
            use_fused_batch_norm(child)
    return module
