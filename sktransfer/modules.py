"""Reusable PyTorch modules shared by every sktransfer estimator.

* :class:`MLP`: a fully connected trunk (``Linear -> activation [-> dropout]``
  per hidden layer, with an optional output layer).
* :class:`Conv4`: the few-shot standard backbone, four blocks of
  ``conv3x3(64) -> batch norm -> ReLU -> max-pool(2)``.
* :class:`BatchNorm2d`: batch normalisation written with primitive tensor
  operations, so that it is exact under :func:`torch.func.vmap` with
  second-order gradients (the fused kernel is not). Only MAML's vmapped
  meta-step needs it; everywhere else :class:`Conv4` uses PyTorch's fused
  ``nn.BatchNorm2d``, which is faster.
"""

import math

import torch
from torch import nn

__all__ = ["MLP", "Conv4", "BatchNorm2d"]


class MLP(nn.Module):
    """Multi-layer perceptron trunk.

    Parameters
    ----------
    in_features : int
        Number of input features. Inputs of more than two dimensions are
        flattened from the second dimension on.
    hidden_layer_sizes : sequence of int, default=(100,)
        Width of each hidden layer.
    out_features : int or None, default=None
        Width of a final linear output layer; ``None`` ends the network on the
        last hidden activation (a trunk for task heads).
    activation : type of nn.Module, default=nn.ReLU
        Activation after every hidden layer.
    dropout : float, default=0.0
        Dropout probability after every hidden activation.

    Attributes
    ----------
    out_features_ : int
        Width of the output, for heads that sit on top of the trunk.

    Examples
    --------
    >>> import torch
    >>> from sktransfer.modules import MLP
    >>> MLP(8, (16, 16))(torch.zeros(3, 8)).shape
    torch.Size([3, 16])
    """

    def __init__(
        self,
        in_features,
        hidden_layer_sizes=(100,),
        out_features=None,
        activation=nn.ReLU,
        dropout=0.0,
    ):
        super().__init__()
        layers = []
        width = int(in_features)
        for size in hidden_layer_sizes:
            layers += [nn.Linear(width, int(size)), activation()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = int(size)
        if out_features is not None:
            layers.append(nn.Linear(width, int(out_features)))
            width = int(out_features)
        self.layers = nn.Sequential(*layers)
        self.out_features_ = width

    def forward(self, X):
        if X.dim() > 2:
            X = X.flatten(1)
        return self.layers(X)


class BatchNorm2d(nn.Module):
    """Batch normalisation over (N, H, W) written with primitive operations.

    Numerically this is :class:`torch.nn.BatchNorm2d`; the difference is that
    every operation is an ordinary differentiable tensor primitive, so that
    ``torch.func.vmap`` over tasks combined with second-order gradients (as in
    MAML's meta-gradient) is exact. PyTorch's fused batch-norm kernel gives
    meta-gradients that are off by about 1% under ``vmap``.

    Parameters
    ----------
    num_features : int
        Number of channels.
    eps : float, default=1e-5
        Added to the variance for stability.
    momentum : float, default=0.1
        Update rate of the running statistics.
    affine : bool, default=True
        Learn a per-channel scale and shift.
    track_running_stats : bool, default=True
        Keep running statistics for evaluation mode. With ``False`` the batch
        statistics are used in training and in evaluation (transductive batch
        norm, as in MAML's reference code); use ``False`` inside ``vmap``,
        where in-place buffer updates are not allowed.

    Examples
    --------
    >>> import torch
    >>> from sktransfer.modules import BatchNorm2d
    >>> BatchNorm2d(3)(torch.randn(4, 3, 5, 5)).shape
    torch.Size([4, 3, 5, 5])
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)

    def forward(self, X):
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            mean = X.mean(dim=(0, 2, 3))
            var = ((X - mean[None, :, None, None]) ** 2).mean(dim=(0, 2, 3))
            if self.training and self.track_running_stats:
                n = X.numel() / X.shape[1]
                with torch.no_grad():
                    unbiased = var.detach() * (n / max(n - 1, 1))
                    self.running_mean.mul_(1 - self.momentum).add_(
                        self.momentum * mean.detach())
                    self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased)
        else:
            mean, var = self.running_mean, self.running_var
        out = (X - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
        if self.weight is not None:
            out = out * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return out

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"track_running_stats={self.track_running_stats}")


class Conv4(nn.Module):
    """The four-block convolutional backbone of the few-shot literature.

    Each block is ``Conv2d(3x3, padding=1) -> BatchNorm2d -> ReLU ->
    MaxPool2d(2)``; the output is flattened. On 28x28 inputs with 64
    channels the embedding has 64 features (1x1 spatial), on 84x84 it has
    1600 (5x5).

    Parameters
    ----------
    in_channels : int, default=1
        Channels of the input images.
    hidden_channels : int, default=64
        Channels of every convolution.
    n_blocks : int, default=4
        Number of blocks.
    out_features : int or None, default=None
        Width of a final linear layer; ``None`` returns the embedding.
    image_size : int or tuple of int, default=28
        Spatial size of the inputs, used to compute ``out_features_``.
    track_running_stats : bool, default=True
        Passed to every batch-norm layer.
    batch_norm : {"fused", "primitive"}, default="fused"
        ``"fused"``: PyTorch's ``nn.BatchNorm2d`` (its fused kernel, the
        faster one). ``"primitive"``: :class:`BatchNorm2d`, the same function
        from primitive operations, which :func:`torch.func.vmap` with
        second-order gradients needs (MAML's vmapped meta-step).

    Attributes
    ----------
    out_features_ : int
        Width of the output.

    Examples
    --------
    >>> import torch
    >>> from sktransfer.modules import Conv4
    >>> Conv4(hidden_channels=8)(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 8])
    """

    def __init__(self, in_channels=1, hidden_channels=64, n_blocks=4, out_features=None,
                 image_size=28, track_running_stats=True, batch_norm="fused"):
        super().__init__()
        if batch_norm not in ("fused", "primitive"):
            raise ValueError(f"batch_norm must be 'fused' or 'primitive', got {batch_norm!r}")
        norm = nn.BatchNorm2d if batch_norm == "fused" else BatchNorm2d
        blocks = []
        channels = in_channels
        for _ in range(n_blocks):
            blocks += [
                nn.Conv2d(channels, hidden_channels, kernel_size=3, padding=1),
                norm(hidden_channels, track_running_stats=track_running_stats),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = hidden_channels
        self.features = nn.Sequential(*blocks, nn.Flatten())
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        for _ in range(n_blocks):
            h, w = math.floor(h / 2), math.floor(w / 2)
        width = hidden_channels * max(h, 1) * max(w, 1)
        self.head = nn.Linear(width, out_features) if out_features is not None else None
        self.out_features_ = out_features if out_features is not None else width

    def forward(self, X):
        out = self.features(X)
        return self.head(out) if self.head is not None else out
