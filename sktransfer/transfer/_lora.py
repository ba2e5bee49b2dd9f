"""Low-rank adapters (LoRA, Hu et al. 2022) on the linear and convolutional layers of a network.

An adapted layer computes

.. math::

    h = W_0 x + b + \\frac{\\alpha}{r} B A \\,\\mathrm{dropout}(x)

with the pretrained weight :math:`W_0` and bias :math:`b` frozen, and the
low-rank factors :math:`A \\in \\mathbb{R}^{r \\times d_{in}}` (Kaiming-uniform
initialisation) and :math:`B \\in \\mathbb{R}^{d_{out} \\times r}` (zeros, so
the adapted network starts as the pretrained one) trained. For an
``nn.Conv2d``, :math:`A` is a convolution with the layer's kernel, stride,
padding and dilation into ``r`` channels and :math:`B` a 1x1 convolution back
to the layer's channels (as in PEFT), so the update is a convolution kernel
of rank ``r``.

:func:`merge_adapters` folds :math:`\\frac{\\alpha}{r} B A` into
:math:`W_0` and puts the original layer back in place of its adapter, so a
merged network has exactly the pretrained architecture and costs nothing
more at predict time.
"""

import fnmatch
import math

import torch
from torch import nn

__all__ = ["LoRALayer", "add_adapters", "lora_targets", "merge_adapters"]


class LoRALayer(nn.Module):
    """A frozen ``nn.Linear`` or ``nn.Conv2d`` plus a trained low-rank update.

    Parameters
    ----------
    base : nn.Linear or nn.Conv2d
        The pretrained layer (kept as the submodule ``base``, its parameters
        unchanged until :meth:`merged`).
    rank : int
    alpha : float
        The update is scaled by ``alpha / rank``.
    dropout : float
        Dropout on the adapter's input (not on the frozen path).
    """

    def __init__(self, base, rank, alpha, dropout):
        super().__init__()
        self.base = base
        self.rank = int(rank)
        self.scale = float(alpha) / int(rank)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        weight = base.weight
        kwargs = {"device": weight.device, "dtype": weight.dtype}
        if isinstance(base, nn.Conv2d):
            self.lora_A = nn.Conv2d(base.in_channels, self.rank, base.kernel_size,
                                    stride=base.stride, padding=base.padding,
                                    dilation=base.dilation, bias=False, **kwargs)
            self.lora_B = nn.Conv2d(self.rank, base.out_channels, 1, bias=False, **kwargs)
        else:
            self.lora_A = nn.Linear(base.in_features, self.rank, bias=False, **kwargs)
            self.lora_B = nn.Linear(self.rank, base.out_features, bias=False, **kwargs)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x):
        return self.base(x) + self.scale * self.lora_B(self.lora_A(self.dropout(x)))

    def delta_weight(self):
        """The update :math:`\\frac{\\alpha}{r} B A`, shaped like the base weight."""
        A = self.lora_A.weight.flatten(1)
        B = self.lora_B.weight.flatten(1)
        return (self.scale * (B @ A)).view_as(self.base.weight)

    def merged(self):
        """The base layer with the update folded into its weight (in place)."""
        with torch.no_grad():
            self.base.weight.add_(self.delta_weight().to(self.base.weight.dtype))
        return self.base


def _set_submodule(root, name, new):
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


def _adaptable(module):
    # a grouped convolution, or one padded other than with zeros, has no rank-r
    # update of the form B A
    if isinstance(module, nn.Conv2d):
        return module.groups == 1 and module.padding_mode == "zeros"
    return isinstance(module, nn.Linear) and not nn.parameter.is_lazy(module.weight)


def lora_targets(network, head_name, patterns=None):
    """Names of the layers an adapter goes on.

    Every ``nn.Linear`` and ``nn.Conv2d`` outside the head (and outside an
    adapter already there), or those whose module name matches one of the
    ``fnmatch`` ``patterns``. A pattern that matches no such layer is a
    ``ValueError`` naming the layers there are.
    """
    inside_adapter = set()
    layers = []
    for name, module in network.named_modules():
        if not name or name == head_name or name.startswith(f"{head_name}."):
            continue
        if isinstance(module, LoRALayer):
            inside_adapter.update(n for n, _ in module.named_modules(prefix=name))
            continue
        if name in inside_adapter:
            continue
        if isinstance(module, (nn.Linear, nn.Conv2d)) and _adaptable(module):
            layers.append(name)
    if patterns is None:
        return layers
    chosen = [n for n in layers if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in layers)]
    if unmatched:
        raise ValueError(
            f"LoRA target_modules {unmatched} match no nn.Linear or nn.Conv2d layer outside "
            f"the head; the layers an adapter can go on are {layers[:12]}"
            f"{' ...' if len(layers) > 12 else ''}")
    return chosen


def add_adapters(network, names, rank, alpha, dropout):
    """Replace each layer of ``names`` by a :class:`LoRALayer` around it (in place)."""
    for name in names:
        _set_submodule(network, name, LoRALayer(network.get_submodule(name), rank, alpha,
                                                dropout))
    return network


def merge_adapters(network):
    """Fold every adapter into its layer and put the layer back (in place).

    Returns the number of adapters merged.
    """
    adapters = [n for n, m in network.named_modules() if isinstance(m, LoRALayer)]
    for name in adapters:
        _set_submodule(network, name, network.get_submodule(name).merged())
    return len(adapters)

