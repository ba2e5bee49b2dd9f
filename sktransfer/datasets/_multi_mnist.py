"""MultiMNIST: two overlapping digits per image, a two-task problem.

Built as in Sener & Koltun (2018): one digit is placed at the top-left and
another at the bottom-right of a 36x36 canvas, each shifted towards the
centre by up to ``max_shift`` pixels, the two are overlaid (pixel-wise
maximum) and the canvas is resized to ``image_size``. Task 0 is the left digit, task 1 the
right one.
"""

from numbers import Integral

import numpy as np
import torch
from sklearn.utils import check_random_state

from ._validation import InvalidParameterError

__all__ = ["make_multi_mnist"]

_CANVAS = 36  # two 28x28 digits, 8 pixels apart
_DIGIT = 28
# The smallest output side at which each digit keeps a quarter of its 28-pixel resolution
# (7 pixels) and the two digits' positions, 8 canvas pixels apart, stay 2 pixels apart:
# below it the digits blur into a few pixels that no model can tell apart.
_MIN_IMAGE_SIZE = -(-_CANVAS * 7 // _DIGIT)  # ceil(36 * 7 / 28) = 9


def _is_int(value):
    return isinstance(value, Integral) and not isinstance(value, (bool, np.bool_))


def make_multi_mnist(X, y, n_samples=10000, *, image_size=28, max_shift=4, random_state=None):
    """Build a MultiMNIST-style data set from single-digit images.

    Parameters
    ----------
    X : ndarray of shape (n, 1, 28, 28) or (n, 28, 28)
        Digit images in [0, 1], e.g. from :func:`~sktransfer.datasets.load_mnist`.
    y : ndarray of shape (n,)
        Their labels.
    n_samples : int, default=10000
        Number of two-digit images to make.
    image_size : int, default=28
        Side of the output images, at least 9 (at 9 pixels each digit is still 7 pixels
        wide, a quarter of its original resolution; smaller images lose the digits).
    max_shift : int, default=4
        Each digit is shifted by up to this many pixels in each direction, 0 to 4.
    random_state : int, RandomState or None, default=None

    Returns
    -------
    X_multi : ndarray of shape (n_samples, 1, image_size, image_size), float32
    Y : ndarray of shape (n_samples, 2), int64
        The left and the right digit's labels.

    Raises
    ------
    ValueError
        If ``X`` is not finite 28x28 images, ``y`` does not hold one label per image, or a
        parameter is out of range (``image_size`` below 9, for example). A parameter of the
        wrong type raises an error that is both a ``TypeError`` and a ``ValueError``.

    Examples
    --------
    >>> import numpy as np
    >>> from sktransfer.datasets import make_multi_mnist
    >>> rng = np.random.RandomState(0)
    >>> X = rng.rand(50, 1, 28, 28).astype(np.float32); y = rng.randint(10, size=50)
    >>> Xm, Y = make_multi_mnist(X, y, n_samples=8, random_state=0)
    >>> Xm.shape, Y.shape
    ((8, 1, 28, 28), (8, 2))
    """
    try:
        X = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"X must be a numeric array of 28x28 images: {exc}") from exc
    if X.ndim == 3:
        X = X[:, None]
    if X.ndim != 4 or X.shape[1:] != (1, 28, 28):
        raise ValueError(f"X must hold 28x28 single-channel images, got shape {X.shape}")
    if len(X) == 0:
        raise ValueError("X must hold at least one image, got 0")
    if not np.isfinite(X).all():
        raise ValueError(f"X holds {int((~np.isfinite(X)).sum())} NaN or infinite pixel "
                         "values; images must be finite")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D, one label per image, got shape {y.shape}")
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} images but y has {len(y)} labels")
    if not _is_int(n_samples):
        raise InvalidParameterError(
            f"n_samples must be a positive int, got {type(n_samples).__name__} {n_samples!r}")
    if n_samples < 1:
        raise InvalidParameterError(f"n_samples must be a positive int, got {n_samples!r}")
    if not _is_int(image_size):
        raise InvalidParameterError(
            f"image_size must be an int, got {type(image_size).__name__} {image_size!r}")
    if image_size < _MIN_IMAGE_SIZE:
        raise InvalidParameterError(
            f"image_size={image_size!r} is too small for the two digits: the smallest valid "
            f"value is {_MIN_IMAGE_SIZE} (the digits are {_DIGIT} pixels wide on a "
            f"{_CANVAS}-pixel canvas; at {_MIN_IMAGE_SIZE} each is still 7 pixels wide)"
        )
    if not _is_int(max_shift):
        raise InvalidParameterError(
            f"max_shift must be an int in [0, 4], got {type(max_shift).__name__} "
            f"{max_shift!r}")
    if not 0 <= max_shift <= 4:
        raise InvalidParameterError(f"max_shift must be in [0, 4], got {max_shift!r}")
    n_samples, image_size, max_shift = int(n_samples), int(image_size), int(max_shift)
    rng = check_random_state(random_state)
    left = rng.randint(len(X), size=n_samples)
    right = rng.randint(len(X), size=n_samples)
    # The left digit's corner moves right/down from (0, 0), the right digit's
    # left/up from (8, 8), each by up to max_shift pixels: both stay on the canvas.
    shifts = rng.randint(0, max_shift + 1, size=(n_samples, 4))
    canvas = np.zeros((n_samples, 1, 36, 36), dtype=np.float32)
    for i in range(n_samples):
        r0, c0 = shifts[i, 0], shifts[i, 1]
        r1, c1 = 8 - shifts[i, 2], 8 - shifts[i, 3]
        canvas[i, :, r0:r0 + 28, c0:c0 + 28] = X[left[i]]
        patch = canvas[i, :, r1:r1 + 28, c1:c1 + 28]
        np.maximum(patch, X[right[i]], out=patch)
    out = torch.nn.functional.interpolate(torch.from_numpy(canvas), size=(image_size,) * 2,
                                          mode="area" if image_size < _CANVAS else "bilinear")
    Y = np.column_stack([y[left], y[right]]).astype(np.int64)
    return out.numpy(), Y
