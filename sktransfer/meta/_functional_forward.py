"""A pure function for the forward pass of common networks, without module swapping.

:func:`torch.func.functional_call` runs a module with other tensors by
swapping them into the module and back on every call, a cost per call that
matters for small few-shot tasks (see the Benchmarks page).
:func:`functional_forward_fn` instead compiles a network
built from plain layers (``Sequential``, ``Linear``, ``Conv2d``, batch norm
without running statistics, ``ReLU``, ``Tanh``, ``MaxPool2d``, ``Flatten``,
and sktransfer's ``MLP``, ``Conv4`` and the learners' trunk-and-head) into a
list of ``torch.nn.functional`` calls on a params dict. Anything else (for
example a user's module) returns ``None`` and the caller falls back to
``functional_call``. The result is the same function of the same tensors.
"""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["functional_forward_fn"]


class _Unsupported(Exception):
    pass


def _plan(module, prefix, steps):
    from ..modules import MLP, BatchNorm2d, Conv4
    from ._learner import Learner

    if isinstance(module, Learner):
        _plan(module.trunk, prefix + "trunk.", steps)
        steps.append(("flatten", 1))
        _plan(module.head, prefix + "head.", steps)
    elif isinstance(module, MLP):
        steps.append(("flatten", 1))
        _plan(module.layers, prefix + "layers.", steps)
    elif isinstance(module, Conv4):
        _plan(module.features, prefix + "features.", steps)
        if module.head is not None:
            _plan(module.head, prefix + "head.", steps)
    elif type(module) is nn.Sequential:
        for name, child in module.named_children():
            _plan(child, f"{prefix}{name}.", steps)
    elif type(module) is nn.Linear:
        steps.append(("linear", prefix, module.bias is not None))
    elif type(module) is nn.Conv2d:
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise _Unsupported
        steps.append(("conv2d", prefix, module.bias is not None, module.stride,
                      module.padding, module.dilation, module.groups))
    elif type(module) is nn.BatchNorm2d:
        if module.track_running_stats:
            raise _Unsupported
        steps.append(("fused_bn", prefix, module.affine, module.eps))
    elif type(module) is BatchNorm2d:
        if module.track_running_stats:
            raise _Unsupported
        steps.append(("bn", prefix, module.weight is not None, module.eps))
    elif type(module) is nn.ReLU:
        steps.append(("relu",))
    elif type(module) is nn.Tanh:
        steps.append(("tanh",))
    elif type(module) is nn.MaxPool2d:
        if module.return_indices:
            raise _Unsupported
        steps.append(("maxpool", module.kernel_size, module.stride, module.padding,
                      module.dilation, module.ceil_mode))
    elif type(module) is nn.Flatten:
        steps.append(("flatten", module.start_dim))
    else:
        raise _Unsupported


def _run(steps, params, X, channels_last=False):
    out = X
    for step in steps:
        kind = step[0]
        if kind == "linear":
            p = step[1]
            out = F.linear(out, params[p + "weight"], params[p + "bias"] if step[2] else None)
        elif kind == "conv2d":
            p = step[1]
            weight = params[p + "weight"]
            if channels_last:  # the weight's format decides the output's
                weight = weight.to(memory_format=torch.channels_last)
            out = F.conv2d(out, weight, params[p + "bias"] if step[2] else None, *step[3:])
        elif kind == "fused_bn":
            p = step[1]
            w, b = (params[p + "weight"], params[p + "bias"]) if step[2] else (None, None)
            out = F.batch_norm(out, None, None, w, b, True, 0.0, step[3])
        elif kind == "bn":
            p = step[1]
            mean = out.mean(dim=(0, 2, 3))
            var = ((out - mean[None, :, None, None]) ** 2).mean(dim=(0, 2, 3))
            out = (out - mean[None, :, None, None]) / torch.sqrt(
                var[None, :, None, None] + step[3])
            if step[2]:
                out = (out * params[p + "weight"][None, :, None, None]
                       + params[p + "bias"][None, :, None, None])
        elif kind == "relu":
            out = F.relu(out)
        elif kind == "tanh":
            out = torch.tanh(out)
        elif kind == "maxpool":
            out = F.max_pool2d(out, *step[1:])
        elif kind == "flatten":
            if out.dim() > step[1] + 1:
                out = out.flatten(step[1])
    return out


def functional_forward_fn(module, prefix="", channels_last=False):
    """``forward(params, X)`` for ``module``, or ``None`` if it has unsupported layers.

    Parameters
    ----------
    module : torch.nn.Module
        The network to plan: a tree of the supported layers (see the module
        docstring) without buffers.
    prefix : str, default=""
        Ignored. The names in ``params`` are always the module's own
        parameter names, as ``module.named_parameters()`` gives them.
    channels_last : bool, default=False
        Run the convolutions in channels-last (NHWC) memory format.

    Returns
    -------
    callable or None
        ``forward(params, X)``, the module's output for input ``X`` with the
        tensors of ``params`` (a dict from the module's parameter names to
        tensors; every parameter must be present) in place of its own;
        ``None`` if the module has an unsupported layer or any buffer.
    """
    steps = []
    try:
        _plan(module, "", steps)
    except _Unsupported:
        return None
    if any(True for _ in module.buffers()):
        return None

    def forward(params, X):
        return _run(steps, params, X, channels_last)

    return forward
