"""The official 20 one-shot classification runs of Omniglot (Lake et al., 2015).

:func:`load_one_shot_runs` reads ``all_runs.zip`` of the Omniglot repository
(``python/one-shot-classification/``): one folder ``runNN/`` per run, with
``training/classNN.png`` (one drawing of each of 20 characters),
``test/itemNN.png`` (another drawing of each, by another drawer) and
``class_labels.txt``, whose lines pair each test image with the training image
of its character (``run01/test/item01.png run01/training/class08.png``). The
runs come back in the layout of :func:`make_one_shot_runs`, so that
:func:`sktransfer.metrics.score_one_shot_runs` scores them unchanged.
"""

import os
import re

import numpy as np
from sklearn.utils import Bunch

from ._fetch import RemoteFile, bad_file_hint, fetch_file, find_local_dir, get_data_home
from ._omniglot import (
    _URL,
    _check_image_size,
    _decode_ink,
    _is_junk,
    _natural_key,
    _read_member,
    _to_float,
    _ZipMembers,
)

__all__ = ["load_one_shot_runs"]

_SUBDIR = "omniglot"
_FOLDER = "all_runs"
_LABELS = "class_labels.txt"

#: the official file (352,787 bytes; git blob 3c49ffe2485e59b4852feb28ca9a12315d6a4ca4)
_REMOTE = RemoteFile(
    "all_runs.zip",
    (_URL + "one-shot-classification/all_runs.zip",),
    md5="e8996daecdf12afeeb4a53a179f06b19",
    sha256="437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325",
)

_LABELS_MEMBER = re.compile(r"(?:(?P<prefix>.+)/)?(?P<run>run\d+)/" + re.escape(_LABELS))


class _ZipRuns(_ZipMembers):
    """Members of a runs zip, read by their ``/``-separated names."""

    def __init__(self, path):
        super().__init__(path)
        self.names = [n for n in self._zip.namelist() if not n.endswith("/")]


class _FolderRuns:
    """Files of an extracted runs folder, named relative to it with ``/``."""

    def __init__(self, path):
        self.path = path
        self.names = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            rel = os.path.relpath(root, path).replace(os.sep, "/")
            prefix = "" if rel == "." else rel + "/"
            self.names.extend(prefix + f for f in sorted(files))

    def read(self, name):
        return _read_member(self.path, name, f"the one-shot runs folder {self.path!r}",
                            self.path)

    def close(self):
        pass


def _layout_error(source, found):
    return ValueError(
        f"{source.path!r} does not have the layout of the official one-shot runs "
        f"('runNN/{_LABELS}', 'runNN/training/*.png', 'runNN/test/*.png'): {found}. "
        + bad_file_hint(source.path)
    )


def _find_runs(source):
    """``(prefix, [run names])``: the runs found, naturally sorted, all under one prefix."""
    found = {}
    for name in source.names:
        if _is_junk(name):
            continue
        match = _LABELS_MEMBER.fullmatch(name)
        if match is not None:
            found.setdefault(match["prefix"] or "", []).append(match["run"])
    if not found:
        raise _layout_error(source, f"no 'runNN/{_LABELS}' found")
    if len(found) > 1:
        raise _layout_error(source, f"runs in several folders {sorted(found)}")
    (prefix, runs), = found.items()
    return (prefix + "/" if prefix else ""), sorted(runs, key=_natural_key)


def _parse_labels(source, prefix, run, present):
    """Test files and the training file of each, from ``class_labels.txt``."""
    labels_name = f"{prefix}{run}/{_LABELS}"
    try:
        text = source.read(labels_name).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _layout_error(source, f"{labels_name!r} is not text ({exc})") from exc
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        tokens = line.split()
        expected = (f"{run}/test/", f"{run}/training/")
        if len(tokens) != 2 or not all(t.startswith(e) for t, e in zip(tokens, expected)):
            raise _layout_error(
                source,
                f"line {number} of {labels_name!r} is {line!r}; expected "
                f"'{run}/test/<item>.png {run}/training/<class>.png'",
            )
        missing = [t for t in tokens if prefix + t not in present]
        if missing:
            raise _layout_error(
                source, f"line {number} of {labels_name!r} names {missing[0]!r}, which is "
                "not in the file"
            )
        pairs.append(tuple(tokens))
    if not pairs:
        raise _layout_error(source, f"{labels_name!r} is empty")
    tests = [t for t, _ in pairs]
    if len(set(tests)) != len(tests):
        duplicate = next(t for t in tests if tests.count(t) > 1)
        raise _layout_error(source, f"{labels_name!r} lists {duplicate!r} twice")
    return sorted(pairs, key=lambda p: _natural_key(p[0]))


def _decode_images(source, prefix, names, shape):
    images = []
    for name in names:
        ink = _decode_ink(source.read(prefix + name), name, source.path)
        if shape[0] is None:
            shape[0] = ink.shape
        elif ink.shape != shape[0]:
            raise ValueError(
                f"{name!r} in {source.path!r} is {ink.shape[1]}x{ink.shape[0]} pixels; the "
                f"other images are {shape[0][1]}x{shape[0][0]}. " + bad_file_hint(source.path)
            )
        images.append(ink)
    return np.stack(images)


def _read_runs(source, image_size):
    prefix, runs = _find_runs(source)
    present = {n for n in source.names if not _is_junk(n)}
    shape = [None]
    out = []
    for run in runs:
        pairs = _parse_labels(source, prefix, run, present)
        train_dir = f"{prefix}{run}/training/"
        train_files = sorted(
            (n[len(prefix):] for n in present
             if n.startswith(train_dir) and "/" not in n[len(train_dir):]
             and n.lower().endswith(".png")),
            key=_natural_key,
        )
        index = {name: i for i, name in enumerate(train_files)}
        stray = [answer for _, answer in pairs if answer not in index]
        if stray:
            raise _layout_error(
                source, f"{run}/{_LABELS} names {stray[0]!r}, which is not a PNG image "
                f"directly in {run}/training/"
            )
        test_files = [t for t, _ in pairs]
        out.append(Bunch(
            X_train=_to_float(_decode_images(source, prefix, train_files, shape), image_size),
            y_train=np.arange(len(train_files), dtype=np.int64),
            X_test=_to_float(_decode_images(source, prefix, test_files, shape), image_size),
            y_test=np.array([index[answer] for _, answer in pairs], dtype=np.int64),
            group=None,
            name=run,
            train_files=train_files,
            test_files=test_files,
        ))
    return out


def load_one_shot_runs(path=None, *, image_size=28, data_home=None, download_if_missing=True):
    """Load the official 20 one-shot classification runs of Omniglot (Lake et al., 2015).

    Each of the 20 runs is a 20-way one-shot task on characters of the
    evaluation alphabets: one drawing of each of 20 characters (the training
    set) and another drawing of each, by another drawer, to classify (the test
    set). These are the runs of the paper (humans 4.5% error, Bayesian program
    learning 3.3%, the official modified-Hausdorff baseline 38.8%); score them
    with :func:`sktransfer.metrics.score_one_shot_runs` after meta-training on
    ``load_omniglot("background")``, whose images these match (same size, ink
    1.0 on 0.0, float32).

    The file is ``all_runs.zip`` of https://github.com/brendenlake/omniglot
    (``python/one-shot-classification/``). It is read from ``path`` (the zip,
    or a folder holding the extracted ``runNN/`` folders), else from
    ``<data_home>/omniglot/all_runs.zip``, ``<data_home>/all_runs.zip`` or an
    extracted ``<data_home>/omniglot/all_runs/`` folder; when absent it is
    downloaded there and its checksum verified. A local copy is checked by
    its layout, not its checksum.

    Parameters
    ----------
    path : str or path-like, default=None
        The zip file or the extracted folder. ``None`` looks in ``data_home``.
    image_size : int or None, default=28
        Side of the returned square images, resized from 105x105 exactly as
        :func:`load_omniglot` resizes its images. ``None`` keeps 105x105.
    data_home : str or path-like, default=None
        Data folder when ``path`` is None; see :func:`get_data_home`.
    download_if_missing : bool, default=True
        Download the file when ``path`` is None and no local copy exists. If
        False, a missing file raises :class:`OSError` telling where to put it.

    Returns
    -------
    list of :class:`~sklearn.utils.Bunch`
        One per run, in the order ``run01``, ``run02``, ..., in the layout of
        :func:`make_one_shot_runs`:

        X_train : ndarray of shape (n_way, 1, image_size, image_size), float32
            The training images ``training/class01.png``, ``class02.png``, ...
        y_train : ndarray of shape (n_way,), int64
            ``0, 1, ..., n_way - 1``: the class of ``classNN.png`` is ``NN - 1``
            in the official runs (the training files in natural order).
        X_test : ndarray of shape (n_test, 1, image_size, image_size), float32
            The test images ``test/item01.png``, ``item02.png``, ...
        y_test : ndarray of shape (n_test,), int64
            The class of each test image, from ``class_labels.txt``.
        group : None
            The alphabet, which the official file does not record.
        name : str
            The run's folder, ``"run01"`` to ``"run20"``.
        train_files, test_files : list of str
            The images' names in the file, such as ``"run01/test/item01.png"``,
            in the order of ``X_train`` and ``X_test``.

    Raises
    ------
    OSError
        If ``path`` does not exist, or the file is missing and cannot be
        downloaded (:class:`FileNotFoundError`), or a download has a wrong
        checksum.
    ValueError
        If the file is not a readable zip, does not have the layout above
        (the message names the entry), or holds an image that cannot be
        decoded.

    Examples
    --------
    >>> from sktransfer.datasets import load_one_shot_runs
    >>> runs = load_one_shot_runs()  # doctest: +SKIP
    >>> len(runs), runs[0].X_train.shape, runs[0].y_test[:3]  # doctest: +SKIP
    (20, (20, 1, 28, 28), array([7, 8, 1]))

    The layout, on a one-run, two-class folder of blank images:

    >>> import os, tempfile
    >>> from PIL import Image
    >>> run = os.path.join(tempfile.mkdtemp(), "run01")
    >>> for name in ("training/class01", "training/class02", "test/item01", "test/item02"):
    ...     os.makedirs(os.path.dirname(os.path.join(run, name)), exist_ok=True)
    ...     Image.new("1", (105, 105), 1).save(os.path.join(run, name + ".png"))
    >>> with open(os.path.join(run, "class_labels.txt"), "w") as f:
    ...     _ = f.write("run01/test/item01.png run01/training/class02.png\\n"
    ...                 "run01/test/item02.png run01/training/class01.png\\n")
    >>> runs = load_one_shot_runs(os.path.dirname(run))
    >>> len(runs), runs[0].X_train.shape, runs[0].y_test.tolist()
    (1, (2, 1, 28, 28), [1, 0])
    """
    image_size = _check_image_size(image_size)
    if path is not None:
        try:
            path = os.fsdecode(os.fspath(path))
        except TypeError:
            raise TypeError(f"path must be a file or folder path (str or path-like) or None, "
                            f"got {type(path).__name__} {path!r}") from None
        path = os.path.expanduser(path)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"No one-shot runs at {path!r}: pass the official {_REMOTE.filename!r} (from "
                f"{_REMOTE.urls[0]}) or the folder it extracts to, or path=None to look in "
                "(and download to) the data folder."
            )
        is_folder = os.path.isdir(path)
    else:
        data_home = get_data_home(data_home)
        is_folder = False
        try:
            path, _ = fetch_file(_REMOTE, data_home, _SUBDIR, download_if_missing=False)
        except FileNotFoundError:
            path = find_local_dir(data_home, _SUBDIR, _FOLDER)
            is_folder = path is not None
            if path is None:
                path, _ = fetch_file(_REMOTE, data_home, _SUBDIR,
                                     download_if_missing=download_if_missing)
    source = _FolderRuns(path) if is_folder else _ZipRuns(path)
    try:
        return _read_runs(source, image_size)
    finally:
        source.close()
