"""The structure of a pretrained network: its output layer, the new head, its layer groups.

Output layer
    The last ``nn.Linear`` in module order (``named_modules()``, the order in
    which submodules were registered), unless ``head_name`` names it. A
    dry run on two samples checks that what the network returns *is* that
    layer's output; otherwise the layer is not the output layer and the error
    says how to name it.

Head surgery
    ``head="replace"`` swaps the output layer for a fresh ``nn.Linear`` of the
    target's width (same input width); ``"keep"`` keeps it (its width must
    match the target); ``"add"`` treats the whole network as the backbone and
    puts a fresh ``nn.Linear`` on its flattened output.

Layer groups
    Every module that owns parameters directly (``Linear``, ``Conv*``,
    ``Embedding``, ...) starts a group, in module order; a normalisation layer
    (batch, layer, group or instance norm) joins the group of the layer before
    it. The head is the last group. A group is a list of parameter names, so
    a group is what gradual unfreezing opens and what ``n_layers`` counts. A
    LoRA adapter (``_lora.LoRALayer``) is one group with the layer it wraps.

Untrained batch norm
    A batch-norm layer whose running statistics still hold their initial
    values (mean exactly 0 and variance exactly 1 in every channel, and no
    batch counted where the layer counts them) has never seen a batch in
    training mode: its statistics estimate nothing. ``bn="auto"`` trains
    such layers and keeps the statistics of the others.
"""

import torch
from torch import nn

from ..modules import BatchNorm2d
from ._lora import LoRALayer

__all__ = ["build_network", "layer_groups", "untrained_batch_norm", "NORM_TYPES"]

#: Layers that join the group of the layer before them.
NORM_TYPES = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    BatchNorm2d,
)

#: Layers with running statistics, which ``bn="freeze"`` keeps in eval mode.
RUNNING_STAT_TYPES = (nn.modules.batchnorm._NormBase, BatchNorm2d)


class _Stop(Exception):
    """Raised by a hook to end a forward pass early."""


class HeadOnTop(nn.Module):
    """A backbone followed by a new linear head on its flattened output."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, X):
        Z = self.backbone(X)
        if Z.dim() > 2:
            Z = Z.flatten(1)
        return self.head(Z)


def _set_submodule(root, name, new):
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


def find_output_layer(module, head_name=None):
    """Name of the output layer: ``head_name``, or the last ``nn.Linear``."""
    names = dict(module.named_modules())
    if head_name is not None:
        if not isinstance(head_name, str) or head_name not in names or head_name == "":
            some = [n for n in names if n][:12]
            raise ValueError(
                f"head_name={head_name!r} is not a submodule of the pretrained "
                f"{type(module).__name__}; its submodules include {some}"
            )
        return head_name
    linears = [n for n, m in names.items() if isinstance(m, nn.Linear) and n]
    if not linears:
        raise ValueError(
            f"the output layer of the pretrained {type(module).__name__} cannot be found: it "
            f"has no nn.Linear submodule. Name the output layer with head_name=..., or use "
            f"head='add' to put a new linear head on top of the whole network"
        )
    return linears[-1]


def _dry_run(network, head_name, X_example):
    """Run two samples; return (network output, head input, head output)."""
    seen = {}
    head = network.get_submodule(head_name) if head_name else None

    def hook(mod, args, out):
        seen["in"], seen["out"] = args[0] if args else None, out

    handle = head.register_forward_hook(hook) if head is not None else None
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            out = network(X_example)
    except Exception as exc:
        raise ValueError(
            f"the pretrained {type(network).__name__} cannot process samples of shape "
            f"{tuple(X_example.shape[1:])}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        if handle is not None:
            handle.remove()
        network.train(was_training)
    return out, seen.get("in"), seen.get("out")


def build_network(module, head, head_name, n_outputs, X_example, has_output_layer=True):
    """Give ``module`` an output layer of width ``n_outputs``, by surgery.

    Parameters
    ----------
    module : nn.Module
        The caller's private copy of the pretrained network (changed in place
        for ``head="replace"``).
    head : {"replace", "keep", "add"}
    head_name : str or None
    n_outputs : int
    X_example : tensor
        A couple of samples on the module's device (materialises lazy modules
        and checks the output layer).
    has_output_layer : bool
        False for a feature extractor: ``"replace"`` then behaves as ``"add"``.

    Returns
    -------
    network : nn.Module
    head_name : str
        Name of the output layer inside ``network``.
    """
    if head == "add" or not has_output_layer:
        if head == "keep":
            raise ValueError("head='keep' needs a pretrained network with an output layer; "
                             "this source is a feature extractor (use head='replace' or 'add')")
        out, _, _ = _dry_run(module, None, X_example)
        width = int(out[0].numel())
        new = nn.Linear(width, n_outputs).to(out.device)
        return HeadOnTop(module, new), "head"

    name = find_output_layer(module, head_name)
    out, h_in, h_out = _dry_run(module, name, X_example)
    layer = module.get_submodule(name)
    if h_out is None:
        raise ValueError(f"the output layer {name!r} is never called by the pretrained "
                         f"{type(module).__name__}'s forward; name it with head_name=...")
    if not (isinstance(out, torch.Tensor) and isinstance(h_out, torch.Tensor)
            and out.shape == h_out.shape and torch.equal(out, h_out)):
        raise ValueError(
            f"the output layer of the pretrained {type(module).__name__} cannot be found: "
            f"{name!r} ({type(layer).__name__}) is not what the network returns (something is "
            f"applied after it). Name the output layer with head_name=..., or use head='add' "
            f"to put a new linear head on top of the whole network"
        )
    if head == "keep":
        width = int(h_out.shape[-1])
        if width != n_outputs:
            raise ValueError(
                f"head='keep' needs the pretrained output layer {name!r} to have one output "
                f"per target ({n_outputs}), but it has {width}; use head='replace'"
            )
        return module, name
    if not isinstance(layer, nn.Linear):
        raise ValueError(
            f"head='replace' can only replace an nn.Linear output layer; {name!r} is a "
            f"{type(layer).__name__}. Use head='add' to put a new head on top of it"
        )
    new = nn.Linear(layer.in_features, n_outputs, bias=layer.bias is not None)
    _set_submodule(module, name, new.to(layer.weight.device))
    return module, name


def layer_groups(network, head_name):
    """Layer groups and the batch-norm layers outside the head.

    Returns
    -------
    groups : list of list of str
        Parameter names per layer group, bottom to top; the head's group last.
    bn_layers : list of (str, int)
        Name and group index of every layer with running statistics outside
        the head (a layer without parameters belongs to the group before it).
    """
    prefix = head_name + "."
    groups, seen, bn_layers = [], set(), []
    for mname, mod in network.named_modules():
        if mname == head_name or mname.startswith(prefix):
            continue
        own = []
        # a LoRA adapter and the layer it wraps are one group
        for pname, p in mod.named_parameters(recurse=isinstance(mod, LoRALayer)):
            if id(p) in seen:
                continue
            seen.add(id(p))
            own.append(f"{mname}.{pname}" if mname else pname)
        if own:
            if isinstance(mod, NORM_TYPES) and groups:
                groups[-1].extend(own)
            else:
                groups.append(own)
        if isinstance(mod, RUNNING_STAT_TYPES):
            bn_layers.append((mname, max(len(groups) - 1, 0)))
    head = [f"{head_name}.{n}" for n, p in network.get_submodule(head_name).named_parameters()
            if id(p) not in seen]
    return groups + [head], bn_layers


def _has_initial_statistics(layer):
    """Whether a batch-norm layer's running statistics were never updated."""
    mean = getattr(layer, "running_mean", None)
    var = getattr(layer, "running_var", None)
    if not isinstance(mean, torch.Tensor) or not isinstance(var, torch.Tensor):
        return False  # no running statistics (track_running_stats=False): nothing to keep
    if nn.parameter.is_lazy(mean) or nn.parameter.is_lazy(var):
        return True  # a lazy layer that never saw a batch
    counted = getattr(layer, "num_batches_tracked", None)
    if isinstance(counted, torch.Tensor) and int(counted) > 0:
        return False
    with torch.no_grad():
        return bool((mean == 0).all() and (var == 1).all())


def untrained_batch_norm(network, bn_layers):
    """Names of the batch-norm layers among ``bn_layers`` whose statistics were never updated.

    Parameters
    ----------
    network : nn.Module
    bn_layers : list of (str, int)
        As returned by :func:`layer_groups`.

    Returns
    -------
    names : list of str
        The layers whose running mean and variance are still exactly their
        initial zeros and ones (and, for ``torch.nn`` layers, whose
        ``num_batches_tracked`` is 0): the layers of a network built from
        scratch, or never trained in training mode.
    """
    return [name for name, _ in bn_layers
            if _has_initial_statistics(network.get_submodule(name))]
