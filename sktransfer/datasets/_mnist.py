"""MNIST loader, reading the official IDX files."""

import gzip
import math
import zlib

import numpy as np
from sklearn.utils import Bunch

from ._fetch import RemoteFile, bad_file_hint, fetch_file, get_data_home

__all__ = ["load_mnist"]

_SUBDIR = "mnist"
_MIRRORS = (
    "http://yann.lecun.com/exdb/mnist/",  # official
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # mirror used by torchvision
)
_IMAGES_MAGIC, _LABELS_MAGIC = 0x00000803, 0x00000801  # unsigned bytes, 3 and 1 dimensions


def _remote(filename, md5, sha256):
    return RemoteFile(filename, tuple(m + filename for m in _MIRRORS), md5=md5, sha256=sha256)


_FILES = {
    "train": (
        _remote(
            "train-images-idx3-ubyte.gz",
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        _remote(
            "train-labels-idx1-ubyte.gz",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
    ),
    "test": (
        _remote(
            "t10k-images-idx3-ubyte.gz",
            "9fb629c4189551a2d022fa330f9573f3",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        _remote(
            "t10k-labels-idx1-ubyte.gz",
            "ec29112dd5afa0611ce80d1b7f02629c",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    ),
}

_DESCR = """\
MNIST handwritten digits
========================

70,000 grey-level 28x28 images of handwritten digits 0-9 (60,000 training, 10,000 test),
size-normalised and centred, written by Census Bureau employees and high-school students.
Pixel values are scaled to [0, 1] (1.0 = ink).

Source: the official IDX files of Y. LeCun, C. Cortes and C. J. C. Burges,
http://yann.lecun.com/exdb/mnist/.

Reference: Y. LeCun, L. Bottou, Y. Bengio and P. Haffner (1998). Gradient-based learning
applied to document recognition. Proceedings of the IEEE, 86(11), 2278-2324.
"""


def _read_idx(path, magic):
    """Parse an IDX file (gzip-compressed or not) of unsigned bytes; check its header."""
    hint = bad_file_hint(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ValueError(f"Cannot read IDX file {path!r}: {exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(
                f"Cannot read IDX file {path!r}: it is not a valid gzip file, probably "
                f"truncated or corrupt ({type(exc).__name__}: {exc}). {hint}"
            ) from exc
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        found = "none (file too short)" if found is None else f"0x{found:08x}"
        kind = "images" if magic == _IMAGES_MAGIC else "labels"
        raise ValueError(
            f"{path!r} is not an MNIST {kind} IDX file: magic number {found}, expected "
            f"0x{magic:08x}. {hint}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX file {path!r} is truncated (incomplete header). {hint}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(shape)
    if len(raw) != expected:
        raise ValueError(
            f"IDX file {path!r} is corrupt: header says shape {shape} "
            f"({expected} bytes) but it holds {len(raw)} bytes. {hint}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_mnist(
    subset="test",
    *,
    data_home=None,
    download_if_missing=True,
    return_X_y=False,
    flatten=False,
):
    """Load the MNIST handwritten digits from the official IDX files.

    The files (``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``,
    ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``) are read from
    ``<data_home>/mnist/`` or from ``data_home`` itself; uncompressed copies (the same names
    without ``.gz``) work too. When absent they are downloaded from
    http://yann.lecun.com/exdb/mnist/ (or a mirror) and their checksums verified. Local copies
    are validated by their IDX headers (magic numbers, sizes, counts) rather than checksums.

    =======  ======  ===========
    subset   images  per class
    =======  ======  ===========
    train    60,000  5,421-6,742
    test     10,000  892-1,135
    =======  ======  ===========

    Parameters
    ----------
    subset : {"train", "test"}, default="test"
        Which official split to load.
    data_home : str or path-like, default=None
        Data folder; see :func:`get_data_home`.
    download_if_missing : bool, default=True
        Download the files when no local copy exists. If False, a missing file raises
        :class:`OSError` telling where to put it.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    flatten : bool, default=False
        Return images as rows of 784 pixels instead of (1, 28, 28) arrays.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (n_images, 1, 28, 28) or (n_images, 784), dtype float32
            Pixel intensities in [0, 1], 1.0 for ink.
        target : ndarray of shape (n_images,), dtype int64
            Digit, 0 to 9.
        target_names : ndarray of shape (10,)
            The digits 0 to 9.
        DESCR : str
            Description of the data set.

    (data, target) : tuple if ``return_X_y`` is True
        The ``data`` and ``target`` arrays described above.

    Raises
    ------
    OSError
        If a file is missing and cannot be downloaded, or a download has a wrong checksum.
    ValueError
        If a local file is not a valid MNIST IDX file (truncated or corrupt gzip data, a
        wrong magic number, a header that does not match the contents); the message names
        the file and the problem.

    Examples
    --------
    >>> from sktransfer.datasets import load_mnist
    >>> X, y = load_mnist("test", return_X_y=True)  # doctest: +SKIP
    >>> X.shape, y[:5]  # doctest: +SKIP
    ((10000, 1, 28, 28), array([7, 2, 1, 0, 4]))
    """
    if subset not in _FILES:
        raise ValueError(f"subset must be one of {sorted(_FILES)}, got {subset!r}.")
    data_home = get_data_home(data_home)
    paths = []
    for remote in _FILES[subset]:
        path, _ = fetch_file(
            remote,
            data_home,
            _SUBDIR,
            download_if_missing=download_if_missing,
            alt_names=(remote.filename[: -len(".gz")],),
        )
        paths.append(path)
    images = _read_idx(paths[0], _IMAGES_MAGIC)
    labels = _read_idx(paths[1], _LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise ValueError(
            f"{paths[0]!r} holds {images.shape[1:]} images, expected 28x28. "
            + bad_file_hint(paths[0])
        )
    if len(images) != len(labels):
        raise ValueError(
            f"{paths[0]!r} holds {len(images)} images but {paths[1]!r} holds {len(labels)} "
            "labels: the two files do not belong together. Delete both so that they are "
            "downloaded again, or replace them with the matching pair."
        )
    if labels.size and labels.max() > 9:
        raise ValueError(
            f"{paths[1]!r} holds labels above 9: not MNIST digit labels. "
            + bad_file_hint(paths[1])
        )

    data = images.astype(np.float32)
    data /= np.float32(255)
    data = data.reshape(len(data), -1) if flatten else data[:, None]
    target = labels.astype(np.int64)
    if return_X_y:
        return data, target
    return Bunch(data=data, target=target, target_names=np.arange(10), DESCR=_DESCR)
