"""Omniglot loader (Lake, Salakhutdinov & Tenenbaum, 2015)."""

import io
import lzma
import numbers
import os
import re
import zipfile
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from sklearn.utils import Bunch

from ._fetch import (
    RemoteFile,
    bad_file_hint,
    fetch_file,
    find_local_dir,
    get_data_home,
    load_cache,
    save_cache,
    source_fingerprint,
)
from ._validation import InvalidParameterError

__all__ = ["load_omniglot"]

_SUBDIR = "omniglot"
_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
_NATIVE_SIZE = 105
_CHUNK = 1024  # images decoded and resized at a time

_REMOTES = {
    "background": RemoteFile(
        "images_background.zip",
        (_URL + "images_background.zip",),
        md5="68d2efa1b9178cc56df9314c21c6e718",
    ),
    "evaluation": RemoteFile(
        "images_evaluation.zip",
        (_URL + "images_evaluation.zip",),
        md5="6b91aef0f799c5bb55b94e3f2daec811",
    ),
    "background_small1": RemoteFile(
        "images_background_small1.zip",
        (_URL + "images_background_small1.zip",),
        sha256="f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4",
    ),
    "background_small2": RemoteFile(
        "images_background_small2.zip",
        (_URL + "images_background_small2.zip",),
        sha256="3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f",
    ),
}

_DESCR = """\
Omniglot
========

1,623 handwritten characters from 50 alphabets, each drawn once by 20 different people
(Amazon Mechanical Turk), as 105x105 binary images. The "background" set (30 alphabets, 964
characters) is the standard meta-training split and the "evaluation" set (20 alphabets, 659
characters) the meta-test split; "background_small1" and "background_small2" are the two
5-alphabet "minimal" background sets of the original paper.

Images are returned with ink = 1.0 and background = 0.0 (the PNG files are black strokes on
white), optionally resized with area interpolation. ``target`` numbers the characters,
``groups`` the alphabets and ``drawers`` the people (1 to 20), so that class-disjoint or
alphabet-disjoint splits are one ``GroupKFold`` away.

Source: https://github.com/brendenlake/omniglot (MIT licence).

Reference: B. M. Lake, R. Salakhutdinov and J. B. Tenenbaum (2015). Human-level concept
learning through probabilistic program induction. Science, 350(6266), 1332-1338.
"""

_MEMBER = re.compile(r"(?P<alphabet>[^/]+)/(?P<character>[^/]+)/(?P<id>\d+)_(?P<drawer>\d+)\.png")


def _natural_key(text):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _is_junk(relative_name):
    parts = relative_name.split("/")
    return parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts if p)


def _parse_layout(names, set_name, source):
    """Sort and parse ``<set>/<alphabet>/<character>/<id>_<drawer>.png`` member names.

    Returns a list of ``(alphabet, character, drawer, name)``; raises ValueError listing the
    first entries that do not follow the layout.
    """
    records, bad = [], []
    prefix = set_name + "/"
    for name in names:
        if name.endswith("/") or _is_junk(name):
            continue
        match = _MEMBER.fullmatch(name[len(prefix) :]) if name.startswith(prefix) else None
        if match is None:
            bad.append(name)
            continue
        records.append((match["alphabet"], match["character"], int(match["drawer"]), name))
    if bad or not records:
        found = f"unexpected entries such as {bad[:3]}" if bad else "no images"
        raise ValueError(
            f"{source!r} does not have the Omniglot layout "
            f"'{set_name}/<alphabet>/<character>/<id>_<drawer>.png': {found}. "
            + bad_file_hint(source)
        )
    records.sort(key=lambda r: (_natural_key(r[0]), _natural_key(r[1]), r[2], r[3]))
    return records


# What zipfile raises on a damaged archive or member: bad headers and CRCs (BadZipFile),
# damaged compressed data (zlib.error, lzma.LZMAError, OSError from bz2), data cut short
# (EOFError), encrypted members (RuntimeError), unknown compression (NotImplementedError),
# nonsense offsets (ValueError, OSError).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    RuntimeError,
    NotImplementedError,
    ValueError,
)


class _ZipMembers:
    """The members of a zip file, read by name; a damaged file is a ValueError."""

    def __init__(self, path):
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
        except _ZIP_ERRORS as exc:
            raise ValueError(
                f"{path!r} is not a readable zip file, probably truncated or corrupt "
                f"({type(exc).__name__}: {exc}). " + bad_file_hint(path)
            ) from exc

    def read(self, name):
        try:
            return self._zip.read(name)
        except _ZIP_ERRORS as exc:
            raise ValueError(
                f"{self.path!r} is corrupt: its member {name!r} cannot be read "
                f"({type(exc).__name__}: {exc}). " + bad_file_hint(self.path)
            ) from exc

    def close(self):
        self._zip.close()


class _ZipImages(_ZipMembers):
    def __init__(self, path, set_name):
        super().__init__(path)
        try:
            self.records = _parse_layout(self._zip.namelist(), set_name, path)
        except ValueError:
            self._zip.close()
            raise


def _read_member(root, name, where, hint_path):
    """The bytes of ``name`` (a ``/``-separated path) under the folder ``root``; a
    ``ValueError`` naming the file and ``where`` (the folder, for the message) if
    it cannot be read."""
    path = os.path.join(root, *name.split("/"))
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ValueError(
            f"Cannot read {path!r} in {where} "
            f"({type(exc).__name__}: {exc}). " + bad_file_hint(hint_path)
        ) from exc


class _FolderImages:
    def __init__(self, path, set_name):
        self.path = path
        self.root = os.path.dirname(os.path.abspath(path))
        names = []
        for root, _, files in os.walk(path):
            rel = os.path.relpath(root, self.root).replace(os.sep, "/")
            names.extend(f"{rel}/{f}" for f in files)
        self.records = _parse_layout(names, set_name, path)

    def read(self, name):
        return _read_member(self.root, name, f"the Omniglot folder {self.path!r}", self.path)

    def close(self):
        pass


def _decode_ink(raw, name, source):
    """PNG bytes -> uint8 ink image (255 = black stroke, 0 = white paper)."""
    try:
        with Image.open(io.BytesIO(raw)) as image:
            gray = np.asarray(image.convert("L"))
    except UnidentifiedImageError as exc:
        raise ValueError(
            f"Cannot decode {name!r} in {source!r}: it is not an image file (its first "
            f"bytes are {raw[:16]!r}). " + bad_file_hint(source)
        ) from exc
    except Exception as exc:  # Pillow raises many types on corrupt data
        raise ValueError(
            f"Cannot decode {name!r} in {source!r}: the image is truncated or corrupt "
            f"({type(exc).__name__}: {exc}). " + bad_file_hint(source)
        ) from exc
    return 255 - gray


def _to_float(ink, image_size):
    """uint8 ink images (n, h, w) -> float32 (n, 1, s, s) in [0, 1]."""
    x = ink.astype(np.float32)
    x /= np.float32(255)
    if image_size is None or ink.shape[1:] == (image_size, image_size):
        return x[:, None]
    mode = "area" if image_size <= min(ink.shape[1:]) else "bilinear"
    with torch.no_grad():
        out = F.interpolate(torch.from_numpy(x)[:, None], size=(image_size, image_size), mode=mode)
    return out.numpy()


def _decode(source, image_size):
    """Decode every image of ``source``; return the arrays that the cache stores."""
    records = source.records
    alphabets = sorted({r[0] for r in records}, key=_natural_key)
    alphabet_index = {a: i for i, a in enumerate(alphabets)}
    characters = sorted({(r[0], r[1]) for r in records}, key=lambda c: tuple(map(_natural_key, c)))
    character_index = {c: i for i, c in enumerate(characters)}
    n = len(records)

    data, shape = None, None
    for start in range(0, n, _CHUNK):
        chunk = records[start : start + _CHUNK]
        images = []
        for *_, name in chunk:
            ink = _decode_ink(source.read(name), name, source.path)
            if shape is None:
                shape = ink.shape
            elif ink.shape != shape:
                raise ValueError(
                    f"{name!r} in {source.path!r} is {ink.shape[1]}x{ink.shape[0]} pixels; "
                    f"the other images are {shape[1]}x{shape[0]}. " + bad_file_hint(source.path)
                )
            images.append(ink)
        images = np.stack(images)
        if image_size is None:
            block = images[:, None]  # kept as uint8; see _bunch
        else:
            block = _to_float(images, image_size)
        if data is None:
            data = np.empty((n,) + block.shape[1:], dtype=block.dtype)
        data[start : start + len(chunk)] = block

    return {
        "data": data,
        "target": np.array([character_index[r[0], r[1]] for r in records], dtype=np.int64),
        "target_names": np.array([f"{a}/{c}" for a, c in characters]),
        "groups": np.array([alphabet_index[r[0]] for r in records], dtype=np.int64),
        "group_names": np.array(alphabets),
        "drawers": np.array([r[2] for r in records], dtype=np.int64),
    }


def _check_image_size(image_size):
    if image_size is None:
        return None
    if (
        isinstance(image_size, numbers.Integral)
        and not isinstance(image_size, bool)
        and image_size >= 1
    ):
        return int(image_size)
    # InvalidParameterError: a ValueError (as before) and a TypeError (for "28" or 2.5).
    raise InvalidParameterError(
        f"image_size must be a positive int or None, got {image_size!r}."
    )


def load_omniglot(
    subset="background",
    *,
    image_size=28,
    data_home=None,
    download_if_missing=True,
    return_X_y=False,
    cache=True,
):
    """Load the Omniglot handwritten-characters data set (few-shot learning benchmark).

    =================  ==========  ==========  =======  =========
    subset             alphabets   characters  images   drawers
    =================  ==========  ==========  =======  =========
    background         30          964         19,280   20
    evaluation         20          659         13,180   20
    background_small1  5           136         2,720    20
    background_small2  5           156         3,120    20
    =================  ==========  ==========  =======  =========

    The official zip (``images_background.zip`` and so on) is read from
    ``<data_home>/omniglot/``, from ``data_home`` itself, or from an extracted folder
    (``<data_home>/omniglot/images_background/``). When absent it is downloaded from
    https://github.com/brendenlake/omniglot and its checksum verified. A local copy is not
    required to match the official checksum (re-encoded copies are fine); its layout
    ``<set>/<alphabet>/<character>/<id>_<drawer>.png`` is validated instead.

    Decoded arrays are cached as ``.npz`` in ``<data_home>/cache/``, or in the user cache
    folder (environment variable ``SKTRANSFER_CACHE``, else ``~/.cache/sktransfer``) when the
    data folder is read-only, so that later loads take a fraction of a second. The cache is
    keyed on the subset, ``image_size`` and the source file's path, size and modification time.

    Parameters
    ----------
    subset : {"background", "evaluation", "background_small1", "background_small2"}, \
default="background"
        Which official set to load.
    image_size : int or None, default=28
        Side of the returned square images, resized from 105x105 with area interpolation
        (averaging, which keeps thin strokes visible). ``None`` keeps the original 105x105
        binary images.
    data_home : str or path-like, default=None
        Data folder; see :func:`get_data_home`.
    download_if_missing : bool, default=True
        Download the file when no local copy exists. If False, a missing file raises
        :class:`OSError` telling where to put it.
    return_X_y : bool, default=False
        Return ``(data, target)`` instead of a Bunch.
    cache : bool, default=True
        Read and write the decoded-array cache.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (n_images, 1, image_size, image_size), dtype float32
            Ink intensity, 1.0 for strokes and 0.0 for the background.
        target : ndarray of shape (n_images,), dtype int64
            Character label, from 0 to ``n_characters - 1``.
        target_names : ndarray of shape (n_characters,), dtype str
            ``"<alphabet>/<character>"``, for example ``"Greek/character03"``.
        groups : ndarray of shape (n_images,), dtype int64
            Alphabet index of each image, into ``group_names``.
        group_names : ndarray of shape (n_alphabets,), dtype str
            Alphabet names.
        drawers : ndarray of shape (n_images,), dtype int64
            Who drew the image, 1 to 20 (from the ``<id>_<drawer>.png`` file name).
        DESCR : str
            Description of the data set.

        Images are sorted by alphabet, character and drawer.

    (data, target) : tuple if ``return_X_y`` is True
        The ``data`` and ``target`` arrays described above.

    Raises
    ------
    OSError
        If the file is missing and cannot be downloaded, or a download has a wrong checksum.
    ValueError
        If a local file is not a readable zip (truncated or corrupt), does not have the
        Omniglot layout, or holds an image that cannot be decoded; the message names the
        file and the problem. Delete the file so that it is downloaded again, or point
        ``data_home`` (or ``SKTRANSFER_DATA``) at a folder holding a good copy.

    Examples
    --------
    >>> from sktransfer.datasets import load_omniglot
    >>> omniglot = load_omniglot("background_small1")  # doctest: +SKIP
    >>> omniglot.data.shape  # doctest: +SKIP
    (2720, 1, 28, 28)
    >>> omniglot.target_names[:2]  # doctest: +SKIP
    array(['Balinese/character01', 'Balinese/character02'], dtype='<U27')
    """
    if not isinstance(subset, str) or subset not in _REMOTES:
        raise ValueError(f"subset must be one of {sorted(_REMOTES)}, got {subset!r}.")
    image_size = _check_image_size(image_size)
    data_home = get_data_home(data_home)
    remote = _REMOTES[subset]
    set_name = remote.filename[: -len(".zip")]

    # The zip first, then an extracted folder, then a download.
    folder = None
    try:
        path, _ = fetch_file(remote, data_home, _SUBDIR, download_if_missing=False)
    except FileNotFoundError:
        folder = find_local_dir(data_home, _SUBDIR, set_name)
        if folder is None:
            path, _ = fetch_file(
                remote, data_home, _SUBDIR, download_if_missing=download_if_missing
            )
        else:
            path = folder

    size_tag = "native" if image_size is None else str(image_size)
    cache_name = f"omniglot-{set_name}-{size_tag}"
    arrays = None
    if cache:
        key = source_fingerprint(path)
        arrays = load_cache(cache_name, key, data_home)
    if arrays is None:
        source = _FolderImages(path, set_name) if folder else _ZipImages(path, set_name)
        try:
            arrays = _decode(source, image_size)
        finally:
            source.close()
        if cache:
            save_cache(cache_name, key, arrays, data_home)

    data = arrays["data"]
    if data.dtype == np.uint8:  # original-size images are cached exactly, as uint8
        data = _to_float(data[:, 0], None)
    if return_X_y:
        return data, arrays["target"]
    return Bunch(
        data=data,
        target=arrays["target"],
        target_names=arrays["target_names"],
        groups=arrays["groups"],
        group_names=arrays["group_names"],
        drawers=arrays["drawers"],
        DESCR=_DESCR,
    )
