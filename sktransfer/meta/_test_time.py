"""Test-time shift averaging: the ``tta`` parameter of the few-shot learners.

With ``tta="shift"`` the embedding of an image to adapt to or to predict is
the mean of its embeddings over the 9 one-pixel shifts of the image
(:func:`shift_averaged`); training is unchanged. The metric learners
(ProtoNet, MatchingNet, R2-D2) and the batch learners (Baseline, SimpleShot)
share the parameter through :class:`ShiftAveragingMixin`: the estimator sets
``module.tta`` for the duration of one adapt or predict call, and the module's
embedding of rows reads it.
"""

import contextlib

import torch
from sklearn.utils._param_validation import StrOptions

__all__ = ["SHIFTS", "TTA_CONSTRAINT", "TTA_OPTIONS", "ShiftAveragingMixin", "shift_averaged",
           "shift_image"]

#: The values of the ``tta`` parameter besides ``None``.
TTA_OPTIONS = ("shift",)
#: The constraint of the ``tta`` parameter (scikit-learn's format).
TTA_CONSTRAINT = [StrOptions(set(TTA_OPTIONS)), None]

#: The 9 one-pixel shifts (rows, columns) that ``tta="shift"`` averages over.
SHIFTS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def shift_image(X, dy, dx):
    """``X`` (n, C, H, W) moved by ``dy`` rows and ``dx`` columns, zero padded."""
    H, W = X.shape[-2:]
    padded = torch.nn.functional.pad(X, (1, 1, 1, 1))
    return padded[..., 1 - dy:1 - dy + H, 1 - dx:1 - dx + W]


def shift_averaged(embed, X):
    """The mean of ``embed`` over the 9 one-pixel shifts of the images ``X``.

    ``X`` has shape (n, C, H, W); every shift (-1, 0 or +1 pixel in each
    axis) is zero padded. This is what ``tta="shift"`` computes for every row
    to adapt to or to predict.
    """
    if X.dim() != 4:
        raise ValueError(f"tta='shift' averages over shifts of images: it needs X of shape "
                         f"(n, C, H, W), got X of shape {tuple(X.shape)}; use tta=None")
    total = None
    for dy, dx in SHIFTS:
        emb = embed(shift_image(X, dy, dx))
        total = emb if total is None else total + emb
    return total / len(SHIFTS)


class ShiftAveragingMixin:
    """The estimator side of ``tta``: validation and the per-call module setting.

    The estimator's ``tta`` (``None`` or ``"shift"``) is checked against the
    shape of the rows (it needs images) and set on the module for one adapt
    or predict call by :meth:`_tta`, so that the fitted module itself, and
    every other estimator sharing it, is left as it was.
    """

    def _check_tta(self, sample_shape):
        tta = getattr(self, "tta", None)
        if tta is not None and len(sample_shape) != 3:
            raise ValueError(f"tta={tta!r} averages over shifts of images: it needs X of "
                             f"shape (n_samples, C, H, W), got rows of shape "
                             f"{tuple(sample_shape)}; use tta=None")

    @contextlib.contextmanager
    def _tta(self, module):
        """The estimator's ``tta`` on ``module`` for one adapt or predict call."""
        previous = vars(module).get("tta", type(module).tta)
        module.tta = getattr(self, "tta", None)
        try:
            yield
        finally:
            module.tta = previous
