"""Training-time augmentation of the images of meta-training episodes and batches.

The episodic learners' ``augment`` parameter names a strategy that maps the
images of every meta-training episode (support and query rows alike) to
randomly changed copies before the learner sees them; the batch learners'
(Baseline, SimpleShot) maps the images of every training batch. Adaptation,
prediction and validation episodes or batches are left as they are. A strategy is any
callable from a float tensor of shape (n, C, H, W) on the training device to
one of the same shape; :class:`RandomShift` (``augment="shift"``) is the
built-in one. Its random draws come from torch's generator, which the
estimator seeds from ``random_state`` for the fit, so a seeded fit stays
reproducible.
"""

from numbers import Integral

import torch
import torch.nn.functional as F
from sklearn.utils._param_validation import StrOptions

__all__ = ["AUGMENT_CONSTRAINT", "RandomShift", "augment_rows", "resolve_augmentation"]

#: The constraint of the ``augment`` parameter (scikit-learn's format).
AUGMENT_CONSTRAINT = [StrOptions({"shift"}), callable, None]


class RandomShift:
    """Move every image by a random whole number of pixels, zero padded.

    Each image is moved independently by ``dy`` rows and ``dx`` columns,
    each drawn uniformly from ``-max_shift`` to ``max_shift``; what moves out
    of the frame is lost and what comes in is zero (background). This is the
    augmentation of ``augment="shift"`` (``max_shift=3``): on Omniglot it
    teaches the embedding that a character drawn a few pixels off-centre is
    the same character, which one-shot runs (one drawing per class, another
    drawer's as the test image) reward.

    Parameters
    ----------
    max_shift : int, default=3
        The largest move in either axis, in pixels.

    Examples
    --------
    >>> import torch
    >>> from sktransfer.meta import RandomShift
    >>> X = torch.zeros(2, 1, 5, 5)
    >>> X[:, :, 2, 2] = 1.0
    >>> moved = RandomShift(max_shift=1)(X)
    >>> moved.shape, moved.sum(dim=(1, 2, 3)).tolist()
    (torch.Size([2, 1, 5, 5]), [1.0, 1.0])
    """

    def __init__(self, max_shift=3):
        if isinstance(max_shift, bool) or not isinstance(max_shift, Integral):
            raise TypeError(f"max_shift must be an int, got {max_shift!r}")
        if max_shift < 1:
            raise ValueError(f"max_shift must be at least 1, got {max_shift}")
        self.max_shift = int(max_shift)

    def __call__(self, X):
        if X.dim() != 4:
            raise ValueError(f"RandomShift moves images: it needs a tensor of shape "
                             f"(n, C, H, W), got shape {tuple(X.shape)}")
        n, _, H, W = X.shape
        s = self.max_shift
        padded = F.pad(X, (s, s, s, s))
        dy = torch.randint(-s, s + 1, (n,), device=X.device)
        dx = torch.randint(-s, s + 1, (n,), device=X.device)
        rows = torch.arange(H, device=X.device)[None, :] + (s - dy)[:, None]
        cols = torch.arange(W, device=X.device)[None, :] + (s - dx)[:, None]
        # (n, H, W, C) gathered; back to (n, C, H, W) in the input's memory format
        out = padded.permute(0, 2, 3, 1)[torch.arange(n, device=X.device)[:, None, None],
                                         rows[:, :, None], cols[:, None, :]]
        return out.permute(0, 3, 1, 2).contiguous()

    def __repr__(self):
        return f"RandomShift(max_shift={self.max_shift})"

    def __eq__(self, other):
        return type(other) is type(self) and other.max_shift == self.max_shift

    __hash__ = None


def resolve_augmentation(augment, sample_shape):
    """The strategy of the ``augment`` parameter for samples of ``sample_shape``.

    ``None`` -> ``None``; ``"shift"`` -> :class:`RandomShift` ``()``; a
    callable is returned as it is. A string needs images (``sample_shape``
    of length 3): anything else is a ValueError naming the shape.
    """
    if augment is None:
        return None
    if isinstance(augment, str) or isinstance(augment, RandomShift):
        if len(sample_shape) != 3:
            raise ValueError(f"augment={augment!r} moves images: it needs X of shape "
                             f"(n_samples, C, H, W), got rows of shape {tuple(sample_shape)}; "
                             f"use augment=None")
    if isinstance(augment, str):
        return RandomShift()
    return augment


def augment_rows(augment, X):
    """``augment`` applied to ``X`` of shape (..., C, H, W) (leading axes flattened),
    checked to keep the shape and dtype."""
    if augment is None:
        return X
    flat = X.reshape(-1, *X.shape[-3:]) if X.dim() > 4 else X
    out = augment(flat)
    if not isinstance(out, torch.Tensor) or out.shape != flat.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"augment must return a tensor of the shape it was given "
                         f"{tuple(flat.shape)}; {augment!r} returned {got}")
    return out.to(X.dtype).reshape(X.shape)
