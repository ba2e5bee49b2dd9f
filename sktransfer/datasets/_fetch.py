"""Where data files live, how they are downloaded, and where decoded arrays are cached.

Private helpers shared by the loaders:

- :func:`get_data_home` (public, re-exported) resolves the data folder;
- :func:`fetch_file` finds a local copy of a file or downloads it, verifying its checksum;
- :func:`load_cache` / :func:`save_cache` keep decoded arrays as ``.npz`` files so that a
  second load is fast, in ``<data_home>/cache/`` when that folder is writable, else in a
  per-user cache folder.
"""

import hashlib
import http.client
import logging
import os
import re
import shutil
import stat
import tempfile
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass

import numpy as np

__all__ = ["get_data_home"]

logger = logging.getLogger(__name__)

DATA_HOME_ENV = "SKTRANSFER_DATA"
CACHE_ENV = "SKTRANSFER_CACHE"
_DEFAULT_DATA_HOME = os.path.join("~", "sktransfer_data")
_DEFAULT_CACHE_HOME = os.path.join("~", ".cache", "sktransfer")
_CACHE_SUBDIR = "cache"
_DOWNLOAD_TIMEOUT = 60  # seconds, per connection attempt
_CHUNK = 1 << 20


def get_data_home(data_home=None):
    """Return the folder where ``sktransfer`` looks for (and downloads) data files.

    The folder is, in order of precedence: the ``data_home`` argument, the
    ``SKTRANSFER_DATA`` environment variable, or ``~/sktransfer_data``. Inside it each data
    set has its own sub-folder holding the official files under their official names, for
    example ``<data_home>/omniglot/images_background.zip`` or
    ``<data_home>/mnist/t10k-images-idx3-ubyte.gz``. The folder is not created here; it is
    created only when a file is downloaded into it.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Explicit folder. ``~`` is expanded.

    Returns
    -------
    str
        The resolved path.

    Examples
    --------
    >>> from sktransfer.datasets import get_data_home
    >>> get_data_home("/tmp/my_data")
    '/tmp/my_data'
    """
    if data_home is None:
        data_home = os.environ.get(DATA_HOME_ENV) or _DEFAULT_DATA_HOME
    try:
        data_home = os.fspath(data_home)
    except TypeError:
        raise TypeError(
            f"data_home must be a folder path (str or path-like) or None, got "
            f"{type(data_home).__name__} {data_home!r}"
        ) from None
    if isinstance(data_home, bytes):
        data_home = os.fsdecode(data_home)
    return os.path.expanduser(data_home)


def bad_file_hint(path):
    """How to recover from a corrupt or wrong local data file: the end of error messages."""
    return (
        f"Delete {path!r} so that the official file is downloaded again, or point data_home "
        f"(or the {DATA_HOME_ENV} environment variable) at a folder that holds a good copy."
    )


def get_user_cache_home():
    """Per-user cache folder: ``SKTRANSFER_CACHE``, else ``~/.cache/sktransfer``."""
    return os.path.expanduser(os.environ.get(CACHE_ENV) or _DEFAULT_CACHE_HOME)


# --------------------------------------------------------------------------------------------
# Remote files, checksums, download
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """A file of a public data set: its official name, where to get it, known checksums.

    ``urls`` are tried in order (official location first, then mirrors). A downloaded file
    is accepted when its md5 or its sha256 equals a known one.
    """

    filename: str
    urls: tuple
    md5: str = None
    sha256: str = None


class ChecksumError(OSError, ValueError):
    """A downloaded file does not have the expected checksum (the file has been deleted)."""


def file_digests(path):
    """Return ``(md5, sha256)`` hex digests of a file, read once."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            md5.update(block)
            sha256.update(block)
    return md5.hexdigest(), sha256.hexdigest()


def _describe_expected(remote):
    known = (("sha256", remote.sha256), ("md5", remote.md5))
    return " or ".join(f"{algo} {value}" for algo, value in known if value)


def verify_checksum(path, remote):
    """Return ``(ok, expected, actual)``; ``ok`` is True when no checksum is known."""
    md5, sha256 = file_digests(path)
    if remote.sha256 is None and remote.md5 is None:
        return True, "", f"sha256 {sha256}"
    ok = sha256 == remote.sha256 or md5 == remote.md5
    return ok, _describe_expected(remote), f"sha256 {sha256} (md5 {md5})"


def _download_url(url, path, timeout=_DOWNLOAD_TIMEOUT):
    """Write the bytes served at ``url`` into ``path`` (tests replace this function)."""
    request = urllib.request.Request(url, headers={"User-Agent": "sktransfer"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(path, "wb") as f:
        shutil.copyfileobj(response, f, _CHUNK)


def _missing_message(remote, dest, looked_at, reason):
    others = [p for p in looked_at if p != dest]
    also = f" (also looked for {', '.join(repr(p) for p in others)})" if others else ""
    return (
        f"{reason} No local copy of {remote.filename!r}: expected it at {dest!r}{also}. "
        f"Download it from {remote.urls[0]} and save it as {dest!r}, or point data_home "
        f"(or the {DATA_HOME_ENV} environment variable) at the folder that holds it."
    )


def download(remote, dest):
    """Download ``remote`` to ``dest``: temp file in the same folder, checksum, atomic rename.

    The URLs of ``remote`` are tried in order. A download whose checksum does not match is
    deleted; if no URL gives a good file, :class:`ChecksumError` is raised when some URL
    served a wrong file, else :class:`FileNotFoundError` with the path and the URL.
    """
    folder = os.path.dirname(dest)
    try:
        writable, cause = _writable_dir(folder), None
    except OSError as exc:
        writable, cause = False, exc
    if not writable:
        reason = f"Cannot download into {folder!r}: the folder is not writable."
        blocking = _first_non_folder(folder)
        if blocking is not None:
            reason = (f"Cannot download into {folder!r}: {blocking!r} is a file, not a "
                      "folder.")
        raise FileNotFoundError(_missing_message(remote, dest, [dest], reason)) from cause
    failures, checksum_error, last_exc = [], None, None
    for url in remote.urls:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{remote.filename}.", suffix=".part")
        os.close(fd)
        try:
            logger.info("Downloading %s to %s", url, dest)
            try:
                _download_url(url, tmp)
            except (OSError, http.client.HTTPException) as exc:
                failures.append(f"{url}: {exc}")
                last_exc = exc
                continue
            ok, expected, actual = verify_checksum(tmp, remote)
            if not ok:
                checksum_error = ChecksumError(
                    f"Downloaded file {remote.filename!r} from {url} has a wrong checksum: "
                    f"expected {expected}, got {actual}. The download was deleted "
                    f"(it would have been saved as {dest!r}). The server may have sent an "
                    "error page or a truncated file: try again later, or save a good copy "
                    f"as {dest!r} yourself (local copies are checked by their content, "
                    "not their checksum)."
                )
                failures.append(f"{url}: wrong checksum")
                continue
            os.chmod(tmp, 0o644)  # mkstemp creates files readable by their owner only
            os.replace(tmp, dest)
            return dest
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    if checksum_error is not None:
        raise checksum_error
    reason = f"Could not download {remote.filename!r} ({'; '.join(failures)})."
    raise FileNotFoundError(_missing_message(remote, dest, [dest], reason)) from last_exc


def fetch_file(remote, data_home, subdir, *, download_if_missing=True, alt_names=()):
    """Path to a local copy of ``remote``, downloading it if needed.

    Looks for ``<data_home>/<subdir>/<name>`` then ``<data_home>/<name>`` for the official
    name and then each of ``alt_names`` (for example an uncompressed copy). A local file is
    returned as is: the loaders validate its layout when they parse it, since user-supplied
    copies may legitimately differ byte-wise from the official file. When nothing is found
    the official file is downloaded (checksum-verified) to ``<data_home>/<subdir>/<name>``.

    Returns
    -------
    path : str
    downloaded : bool
    """
    dest = os.path.join(data_home, subdir, remote.filename)
    looked_at = []
    for name in (remote.filename, *alt_names):
        for candidate in (os.path.join(data_home, subdir, name), os.path.join(data_home, name)):
            looked_at.append(candidate)
            if os.path.isfile(candidate):
                return candidate, False
    if not download_if_missing:
        raise FileNotFoundError(
            _missing_message(remote, dest, looked_at, "download_if_missing=False.")
        )
    return download(remote, dest), True


def find_local_dir(data_home, subdir, name):
    """First existing ``<data_home>/<subdir>/<name>/`` or ``<data_home>/<name>/``, else None."""
    for candidate in (os.path.join(data_home, subdir, name), os.path.join(data_home, name)):
        if os.path.isdir(candidate):
            return candidate
    return None


# --------------------------------------------------------------------------------------------
# Decoded-array cache
# --------------------------------------------------------------------------------------------

_CACHE_FORMAT = 1
_KEY_FIELD = "__cache_key__"


def source_fingerprint(path):
    """Identity of a source file or folder: resolved path, sizes and modification times."""
    h = hashlib.sha256(f"v{_CACHE_FORMAT}|".encode())
    real = os.path.realpath(path)
    if os.path.isdir(real):
        h.update(f"dir|{real}".encode())
        for root, dirs, files in os.walk(real):
            dirs.sort()
            for name in sorted(files):
                st = os.stat(os.path.join(root, name))
                rel = os.path.relpath(os.path.join(root, name), real)
                h.update(f"|{rel}|{st.st_size}|{st.st_mtime_ns}".encode())
    else:
        st = os.stat(real)
        h.update(f"file|{real}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _cache_dirs(data_home):
    return [os.path.join(data_home, _CACHE_SUBDIR), get_user_cache_home()]


def _cache_file_name(name, key):
    return f"{name}-{key[:16]}.npz"


def _nearest_existing(path):
    """``path`` itself if it exists, else its nearest existing ancestor (None if none)."""
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            return None
        probe = parent
    return probe


def _first_non_folder(path):
    """The nearest existing ancestor of ``path`` (or itself) if it is not a folder, else None."""
    probe = _nearest_existing(path)
    return None if probe is None or os.path.isdir(probe) else probe


def _writable_dir(path):
    """Create ``path`` if its nearest existing ancestor looks writable; return whether it is.

    A folder without any write permission bit counts as read-only even for root, so that a
    data folder meant to be read-only (say, a shared copy) is not written into by accident.
    """
    probe = _nearest_existing(path)
    if probe is None:
        return False
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        return False
    if not os.stat(probe).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        return False
    os.makedirs(path, exist_ok=True)
    return True


def load_cache(name, key, data_home):
    """Arrays saved by :func:`save_cache` under ``name`` for ``key``, or None on a miss."""
    file_name = _cache_file_name(name, key)
    for folder in _cache_dirs(data_home):
        path = os.path.join(folder, file_name)
        if not os.path.isfile(path):
            continue
        try:
            with np.load(path, allow_pickle=False) as npz:
                if str(npz[_KEY_FIELD]) != key:
                    continue
                return {k: npz[k] for k in npz.files if k != _KEY_FIELD}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            logger.info("Ignoring unreadable cache file %s (%s)", path, exc)
    return None


def save_cache(name, key, arrays, data_home):
    """Save ``arrays`` atomically as ``<folder>/<name>-<key>.npz``; return the path or None.

    The folder is ``<data_home>/cache/`` when writable, else the user cache folder. Older
    entries with the same ``name`` (stale keys) in that folder are removed. A failure to
    write is reported with a warning and never raised.
    """
    file_name = _cache_file_name(name, key)
    stale = re.compile(re.escape(name) + r"-[0-9a-f]{16}\.npz")
    errors = []
    for folder in _cache_dirs(data_home):
        tmp = None
        try:
            if not _writable_dir(folder):
                errors.append(f"{folder}: not writable")
                continue
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".npz.part")
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, **arrays, **{_KEY_FIELD: np.array(key)})
            path = os.path.join(folder, file_name)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            errors.append(f"{folder}: {exc}")
            continue
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.remove(tmp)
        for other in os.listdir(folder):
            if other != file_name and stale.fullmatch(other):
                try:
                    os.remove(os.path.join(folder, other))
                except OSError:
                    pass
        return path
    warnings.warn(
        f"Could not cache decoded data {name!r} ({'; '.join(errors)}); the next load will "
        f"decode it again. Set {CACHE_ENV} to a writable folder to enable the cache.",
        RuntimeWarning,
        stacklevel=3,
    )
    return None
