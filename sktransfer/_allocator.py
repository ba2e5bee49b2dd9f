"""The memory-allocator policy while an estimator trains.

Training a convolutional network allocates and frees the same large
activation buffers at every step. glibc's ``malloc`` serves blocks above
its mmap threshold with fresh ``mmap`` calls and returns freed memory at the
top of the heap to the kernel once more than its trim threshold is free, so
each step faults its buffers back in page by page: on a Conv4 ProtoNet
episode half of the time went to the kernel (millions of minor page faults;
see the Benchmarks page).

While an estimator trains on the CPU, :func:`keep_freed_memory` therefore
asks glibc to serve every block from its heap (``M_MMAP_MAX = 0``) and to
keep freed memory for reuse (``M_TRIM_THRESHOLD`` of 1 GiB). When the last
training section of the process ends it sets both back to glibc's defaults
and, when more than 64 MiB lie free, returns them to the kernel
(``malloc_trim``), so the process does not keep its peak memory.

Nothing happens on other C libraries (macOS, Windows, musl), when the user
tunes malloc through the environment (``MALLOC_MMAP_MAX_``,
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TOP_PAD_`` or ``GLIBC_TUNABLES``), or with
``SKTRANSFER_TUNE_MALLOC=0``.
"""

import contextlib
import ctypes
import ctypes.util
import os
import sys
import threading

__all__ = ["keep_freed_memory", "malloc_tuning_active"]

# glibc's mallopt parameters and defaults (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_DEFAULT_MMAP_MAX = 65536
_KEEP_TRIM_THRESHOLD = 1 << 30
#: free heap memory above which the end of training returns it to the kernel
_TRIM_WHEN_FREE = 64 << 20

_USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_",
                  "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")

_lock = threading.Lock()
_depth = 0
_libc = None
_libc_checked = False


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _glibc():
    """glibc's ``mallopt`` / ``malloc_trim`` / ``mallinfo2``, or None where they are not."""
    global _libc, _libc_checked
    if _libc_checked:
        return _libc
    _libc_checked = True
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl has none)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    try:
        libc.mallinfo2.restype = _Mallinfo2
    except AttributeError:  # glibc before 2.33: trim without looking
        pass
    _libc = libc
    return libc


def _enabled():
    if os.environ.get("SKTRANSFER_TUNE_MALLOC", "1").strip().lower() in ("0", "false", "no"):
        return False
    return not any(name in os.environ for name in _USER_SETTINGS)


def malloc_tuning_active():
    """Whether a training section holds the allocator policy right now."""
    return _depth > 0


def _free_heap_bytes(libc):
    try:
        return int(libc.mallinfo2().fordblks)
    except AttributeError:
        return _TRIM_WHEN_FREE + 1


@contextlib.contextmanager
def keep_freed_memory():
    """Keep freed memory in the process while the block runs (see the module docstring).

    Sections nest and may run in several threads: the first to enter sets
    the policy, the last to leave restores glibc's defaults.
    """
    global _depth
    libc = _glibc() if _enabled() else None
    if libc is None:
        yield
        return
    with _lock:
        if _depth == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_TRIM_THRESHOLD)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                if _free_heap_bytes(libc) > _TRIM_WHEN_FREE:
                    libc.malloc_trim(0)
