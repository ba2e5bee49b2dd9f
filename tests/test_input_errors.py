"""Bad input to the public API gets a clear ValueError / TypeError naming the problem.

Every case here used to raise a low-level error (``zipfile.BadZipFile``,
``PIL.UnidentifiedImageError``, ``IndexError``, a numpy broadcasting or conversion error)
or, worse, to return garbage (an all-zero task for a NaN angle, 0x0 images). Tiny inputs,
no network, no real data: seconds in all.
"""

import gzip
import io
import urllib.error
import zipfile

import numpy as np
import pytest
from PIL import Image
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import InvalidParameterError

from sktransfer.datasets import (
    _fetch,
    load_mnist,
    load_omniglot,
    make_multi_mnist,
    make_permuted_tasks,
    make_rotated_tasks,
    make_sinusoid_tasks,
    make_split_tasks,
)
from sktransfer.metrics import (
    average_accuracy,
    backward_transfer,
    few_shot_score,
    forgetting,
    forward_transfer,
    get_task_scorer,
    make_few_shot_scorer,
)

SMALL1 = "images_background_small1.zip"
MEMBER = "images_background_small1/Alpha/character01/0001_{:02d}.png"
MNIST_IMAGES = "t10k-images-idx3-ubyte.gz"


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    """User cache in tmp_path; any download attempt fails at once."""
    monkeypatch.setenv("SKTRANSFER_CACHE", str(tmp_path / "user_cache"))

    def no_network(url, path, timeout=None):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(_fetch, "_download_url", no_network)


def _png(seed=0):
    ink = np.random.default_rng(seed).random((105, 105)) < 0.1
    buffer = io.BytesIO()
    Image.fromarray(np.where(ink, 0, 255).astype(np.uint8)).convert("1").save(buffer, "PNG")
    return buffer.getvalue()


def _good_zip(path, n=3):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for drawer in range(1, n + 1):
            zf.writestr(MEMBER.format(drawer), _png(drawer))
    return path.read_bytes()


def _corrupt_member(path):
    """Flip one byte inside the first member's data: a CRC error when it is read."""
    good = _good_zip(path)
    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[0]
    data_start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    bad = bytearray(good)
    bad[data_start + 40] ^= 0xFF
    path.write_bytes(bytes(bad))


def _truncated_zip(path):
    path.write_bytes(_good_zip(path)[:-100])  # the central directory is cut off


def _not_an_image(path):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(MEMBER.format(1), b"GIF89a, or rather not a PNG at all")


def _wrong_layout(path):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("images_background_small1/0001_01.png", _png())
        zf.writestr("README.txt", b"some other archive")


# ------------------------------------------------------------------ 1. corrupt data files
@pytest.mark.parametrize(
    "corrupt, problem",
    [
        (_corrupt_member, r"is corrupt: its member '.*0001_01\.png' cannot be read \(BadZipFile"),
        (_truncated_zip, r"is not a readable zip file, probably truncated or corrupt"),
        (_not_an_image, r"Cannot decode '.*0001_01\.png' .*: it is not an image file"),
        (_wrong_layout, r"does not have the Omniglot layout"),
    ],
    ids=["corrupt-member", "truncated", "not-an-image", "no-layout"],
)
def test_corrupt_omniglot_zip_is_a_value_error_naming_file_and_fix(tmp_path, corrupt, problem):
    home = tmp_path / "home"
    home.mkdir()
    corrupt(home / SMALL1)
    with pytest.raises(ValueError, match=problem) as info:
        load_omniglot("background_small1", data_home=home, download_if_missing=False)
    message = str(info.value)
    assert str(home / SMALL1) in message
    assert "so that the official file is downloaded again" in message
    assert "SKTRANSFER_DATA" in message
    assert not isinstance(info.value, zipfile.BadZipFile)


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"\x1f\x8b" + bytes(range(60)), r"not a valid gzip file, probably truncated or corrupt"),
        ("truncated", r"not a valid gzip file, probably truncated or corrupt \(EOFError"),
        ("wrong-magic", r"not an MNIST images IDX file: magic number 0x00000801"),
    ],
    ids=["garbage-gz", "truncated-gz", "wrong-magic"],
)
def test_corrupt_mnist_file_is_a_value_error_naming_file_and_fix(tmp_path, content, problem):
    folder = tmp_path / "mnist"
    folder.mkdir()
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    idx = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in images.shape)
    if content == "truncated":
        content = gzip.compress(idx + images.tobytes())[:-12]
    elif content == "wrong-magic":
        content = gzip.compress((0x801).to_bytes(4, "big") + idx[4:] + images.tobytes())
    (folder / MNIST_IMAGES).write_bytes(content)
    labels = (0x801).to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes(2)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    with pytest.raises(ValueError, match=problem) as info:
        load_mnist("test", data_home=tmp_path, download_if_missing=False)
    assert str(folder / MNIST_IMAGES) in str(info.value)
    assert "downloaded again" in str(info.value)


def test_bad_data_home_and_checksum_messages(tmp_path, monkeypatch):
    with pytest.raises(TypeError, match="data_home must be a folder path"):
        load_mnist(data_home=3)
    # A download with a wrong checksum says what to do about it.
    monkeypatch.setattr(_fetch, "_download_url", lambda url, path, timeout=None: open(
        path, "wb").write(b"<html>rate limited</html>"))
    with pytest.raises(OSError, match=r"wrong checksum: expected .*try again later"):
        load_omniglot("background_small1", data_home=tmp_path)
    # data_home that is a file, not a folder: said so, not "not writable".
    (tmp_path / "a_file").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"a_file' is a file, not a folder"):
        load_mnist(data_home=tmp_path / "a_file")


# ------------------------------------------------------------------ 2. metrics
class _TaskModel(BaseEstimator):
    """Predicts class 0 for every row, whatever the task."""

    classes_ = np.array([0, 1])

    def predict(self, X, task_ids=None):
        return np.zeros(len(X), dtype=int)


class _FewShotModel(BaseEstimator):
    def __init__(self, shape=None):
        self.shape = shape

    def fit(self, X, y):
        self.fitted_ = True
        return self

    def adapt(self, X, y):
        self.label_ = y[0]
        return self

    def predict(self, X):
        return np.full(self.shape or len(X), self.label_)


def test_metrics_reject_mismatched_lengths_shapes_and_nan():
    X, y, t = np.zeros((6, 2)), np.array([0, 1, 0, 1, 0, 1]), np.array([0, 0, 0, 1, 1, 1])
    scorer = get_task_scorer("accuracy")
    assert scorer(_TaskModel(), X, y, task_ids=t) == 0.5
    # used to be an IndexError (boolean index did not match)
    for args, found in [
        ((X, y[:4], t), "X has 6, y has 4, task_ids has 6"),
        ((X, y, t[:5]), "X has 6, y has 6, task_ids has 5"),
        ((X[:5], y, t), "X has 5, y has 6, task_ids has 6"),
    ]:
        with pytest.raises(ValueError, match=f"lengths of X/y/task_ids differ \\({found}\\)"):
            scorer(_TaskModel(), *args[:2], task_ids=args[2])
    with pytest.raises(ValueError, match=r"lengths of X/y differ \(X has 6, y has 5\)"):
        get_task_scorer("accuracy", average="samples")(_TaskModel(), X, y[:5])
    with pytest.raises(ValueError, match=r"task_ids must be 1-D"):
        scorer(_TaskModel(), X, y, task_ids=np.c_[t, t])

    # Continual metrics: ragged, non-numeric, infinite, NaN where not allowed.
    with pytest.raises(ValueError, match=r"R must be a square \(T, T\) accuracy matrix of "
                                         r"numbers.*inhomogeneous"):
        average_accuracy([[0.9, 0.1], [0.8]])
    with pytest.raises(ValueError, match="R must be a square .* of numbers.*'a'"):
        backward_transfer([["a", "b"], ["c", "d"]])
    with pytest.raises(ValueError, match=r"R holds infinite values \(at \[\(1, 0\)\]\)"):
        forgetting([[0.9, 0.1], [np.inf, 0.8]])
    with pytest.raises(ValueError, match=r"square \(T, T\) accuracy matrix, got shape \(2, 3\)"):
        forgetting(np.zeros((2, 3)))
    R = [[0.9, 0.3], [0.6, 0.8]]
    with pytest.raises(ValueError, match=r"reference holds NaN for tasks \[1\]"):
        forward_transfer(R, [0.1, np.nan])  # used to return nan
    assert forward_transfer(R, [np.nan, 0.1]) == pytest.approx(0.2)  # b_1 is never used
    with pytest.raises(ValueError, match=r"reference holds infinite values"):
        forward_transfer(R, [0.1, np.inf])

    # Few-shot scoring: a scalar X, NaN labels, predictions of the wrong shape.
    Xf, yf = np.random.RandomState(0).rand(12, 2), np.repeat([0, 1, 2], 4)
    model = _FewShotModel().fit(Xf, yf)
    kwargs = dict(n_way=2, k_shot=1, n_query=2, n_episodes=2, random_state=0)
    assert few_shot_score(model, Xf, yf, **kwargs)[0] == 0.5
    with pytest.raises(ValueError, match="X must be an array with one row per sample"):
        few_shot_score(model, 3.0, yf, **kwargs)  # used to be an IndexError
    with pytest.raises(ValueError, match="y holds 4 NaN labels"):
        few_shot_score(model, Xf, np.where(yf == 2, np.nan, yf), **kwargs)
    with pytest.raises(ValueError, match=r"predict returned shape \(4, 1\) for 4 query"):
        few_shot_score(_FewShotModel(shape=(4, 1)).fit(Xf, yf), Xf, yf, **kwargs)
    with pytest.raises(InvalidParameterError, match="'n_way' parameter of make_few_shot"):
        make_few_shot_scorer(n_way="5")  # fails here, not after a search has fitted


# ------------------------------------------------------------------ 3. generators
X8, Y6 = np.random.RandomState(0).rand(6, 8, 8), np.array([0, 1, 2, 3, 0, 1])


@pytest.mark.parametrize(
    "make, kwargs, error, match",
    [
        (make_rotated_tasks, dict(angles=[0, np.nan]), ValueError, r"angles\[1\] = nan"),
        (make_rotated_tasks, dict(angles=[0, np.inf]), ValueError, r"angles\[1\] = inf"),
        (make_rotated_tasks, dict(angles="90"), TypeError, "angles must be an array-like"),
        (make_rotated_tasks, dict(angles=[True]), TypeError, "angles must be an array-like"),
        (make_rotated_tasks, dict(n_tasks=0), ValueError, "'n_tasks' parameter"),
        (make_rotated_tasks, dict(n_tasks=2.5), TypeError, "'n_tasks' parameter"),
        (make_rotated_tasks, dict(flat=True, image_shape=(8.0, 8.0)), TypeError,
         "image_shape must be a tuple of ints"),
        (make_rotated_tasks, dict(flat=True, image_shape=(-8, -8)), ValueError,
         r"image_shape must be \(H, W\) or \(C, H, W\) with every size >= 1"),
        (make_permuted_tasks, dict(n_tasks=np.nan), ValueError, "'n_tasks' parameter"),
        (make_permuted_tasks, dict(n_tasks=True), TypeError, "'n_tasks' parameter"),
        (make_permuted_tasks, dict(keep_first="no"), TypeError, "'keep_first' parameter"),
        (make_split_tasks, dict(n_tasks=-1), ValueError, "'n_tasks' parameter"),
        (make_split_tasks, dict(classes=3), TypeError, "'classes' parameter"),
        (make_split_tasks, dict(nan_label=True), ValueError, "y holds 2 NaN labels"),
        (make_sinusoid_tasks, dict(noise=np.nan), ValueError, "'noise' parameter"),
        (make_sinusoid_tasks, dict(noise=np.inf), ValueError, "'noise' parameter"),
        (make_sinusoid_tasks, dict(n_samples_per_task=0), ValueError,
         "'n_samples_per_task' parameter"),
        (make_sinusoid_tasks, dict(x_range=(-np.inf, np.inf)), ValueError,
         "x_range must be a pair of finite numbers"),
        (make_sinusoid_tasks, dict(amplitude_range=3), TypeError,
         r"amplitude_range must be a \(low, high\) pair"),
        (make_multi_mnist, dict(max_shift=1.5), TypeError, "max_shift must be an int"),
        (make_multi_mnist, dict(n_samples=True), TypeError, "n_samples must be a positive int"),
        (make_multi_mnist, dict(X=np.zeros((0, 28, 28))), ValueError,
         "X must hold at least one image"),
        (make_multi_mnist, dict(X=np.full((2, 28, 28), np.nan)), ValueError,
         "NaN or infinite pixel"),
    ],
)
def test_generators_reject_nan_inf_bad_sizes_and_types(make, kwargs, error, match):
    kwargs = dict(kwargs)
    if make is make_sinusoid_tasks:
        args = ()
    elif make is make_multi_mnist:
        X = kwargs.pop("X", np.zeros((2, 28, 28)))
        kwargs.setdefault("n_samples", 2)
        args = (X, np.arange(len(X)))
    else:
        X = X8.reshape(6, 64) if kwargs.pop("flat", False) else X8
        y = np.where(Y6 == 1, np.nan, Y6) if kwargs.pop("nan_label", False) else Y6
        args = (X, y)
    with pytest.raises(error, match=match):
        make(*args, **kwargs)


def test_rotated_tasks_nan_angle_no_longer_gives_a_blank_task():
    # Valid angles give the same numbers as before; a NaN angle is an error, not zeros.
    Xt, _, t = make_rotated_tasks(X8, Y6, angles=[0, 90])
    np.testing.assert_allclose(Xt[t == 1], np.rot90(X8, 1, axes=(1, 2)), atol=1e-6)
    with pytest.raises(ValueError, match="angles must hold finite numbers"):
        make_rotated_tasks(X8, Y6, angles=[0, float("nan")])


# ------------------------------------------------------------------ 4. MultiMNIST size
@pytest.mark.parametrize("image_size", [0, 1, 8])
def test_multi_mnist_image_size_too_small_names_smallest_valid_value(image_size):
    X = np.zeros((2, 28, 28), dtype=np.float32)
    with pytest.raises(ValueError, match=rf"image_size={image_size} is too small for the two "
                                         r"digits: the smallest valid value is 9"):
        make_multi_mnist(X, np.arange(2), n_samples=2, image_size=image_size)
    with pytest.raises(TypeError, match="image_size must be an int, got float 9.0"):
        make_multi_mnist(X, np.arange(2), n_samples=2, image_size=9.0)
    Xm, _ = make_multi_mnist(X, np.arange(2), n_samples=2, image_size=9, random_state=0)
    assert Xm.shape == (2, 1, 9, 9)
