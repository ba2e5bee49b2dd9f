"""Tests of the data-set loaders (no network: downloads are monkeypatched).

Tests on the real files need ``SKTRANSFER_DATA`` pointing at a folder holding the official
files (``omniglot/images_background_small1.zip``, ``mnist/t10k-*-ubyte.gz``); without it they
are skipped. The other tests build small synthetic files in ``tmp_path``.
"""

import gzip
import hashlib
import io
import os
import shutil
import stat
import time
import urllib.error
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from sktransfer.datasets import _fetch, _omniglot, get_data_home, load_mnist, load_omniglot
from tests.datasets._offline import _isolated  # noqa: F401 (autouse fixture)

torch.set_num_threads(1)

SMALL1 = "images_background_small1.zip"
SMALL1_ALPHABETS = ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"]
MNIST_TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------


def real_file(*parts):
    """Path of a real data file under $SKTRANSFER_DATA, or skip the test."""
    root = os.environ.get("SKTRANSFER_DATA")
    if not root:
        pytest.skip(
            "SKTRANSFER_DATA is not set: point it at a folder holding the official data "
            "files (for example ../shared/data) to run the tests on real data."
        )
    path = os.path.join(root, *parts)
    if not os.path.isfile(path):
        pytest.skip(f"real data file {path} not found (SKTRANSFER_DATA={root}).")
    return path




@pytest.fixture(scope="module")
def small1():
    """The real background_small1 set, decoded once for the module, without any cache."""
    path = real_file("omniglot", SMALL1)
    return load_omniglot(
        "background_small1",
        data_home=os.path.dirname(path),
        download_if_missing=False,
        cache=False,
    )


@pytest.fixture
def small1_home(tmp_path):
    """A writable data home whose omniglot/ folder links to the real small1 zip."""
    source = real_file("omniglot", SMALL1)
    home = tmp_path / "home"
    (home / "omniglot").mkdir(parents=True)
    (home / "omniglot" / SMALL1).symlink_to(source)
    return home


def png_bytes(ink):
    """PNG of a binary image, black strokes (ink True) on white, like Omniglot's."""
    image = Image.fromarray(np.where(ink, 0, 255).astype(np.uint8)).convert("1")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def make_omniglot_zip(path, set_name="images_background_small1", seed=0, size=105):
    """Write a tiny Omniglot-layout zip; return the ink images in the loader's order."""
    rng = np.random.default_rng(seed)
    # Written out of order (and with a junk entry) to check sorting and filtering.
    layout = {"Beta_script": 2, "Alpha": 1}
    expected = {}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{set_name}/", b"")
        zf.writestr("__MACOSX/._junk", b"junk")
        for alphabet, n_chars in layout.items():
            for c in range(n_chars, 0, -1):
                for drawer in (3, 1, 2):
                    ink = rng.random((size, size)) < 0.1
                    name = f"{set_name}/{alphabet}/character{c:02d}/{c:04d}_{drawer:02d}.png"
                    zf.writestr(name, png_bytes(ink))
                    expected[alphabet, c, drawer] = ink
    return [expected[k] for k in sorted(expected)]


def write_idx(path, array, magic, compress=True):
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + np.asarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def make_mnist(folder, n=5, seed=0, compress=True):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    write_idx(folder / ("t10k-images-idx3-ubyte" + suffix), images, 0x803, compress)
    write_idx(folder / ("t10k-labels-idx1-ubyte" + suffix), labels, 0x801, compress)
    return images, labels


def assert_bunches_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            assert a[key] == b[key]


# --------------------------------------------------------------------------------------------
# get_data_home
# --------------------------------------------------------------------------------------------


def test_get_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SKTRANSFER_DATA", str(tmp_path / "env"))
    assert get_data_home(tmp_path / "arg") == str(tmp_path / "arg")
    assert get_data_home() == str(tmp_path / "env")
    monkeypatch.delenv("SKTRANSFER_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert get_data_home() == str(tmp_path / "sktransfer_data")
    assert not (tmp_path / "sktransfer_data").exists()  # nothing created


# --------------------------------------------------------------------------------------------
# Omniglot on the real files
# --------------------------------------------------------------------------------------------


def test_omniglot_small1_contents(small1):
    X, y = small1.data, small1.target
    assert X.shape == (2720, 1, 28, 28) and X.dtype == np.float32
    assert y.shape == (2720,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert 0.01 < X.mean() < 0.3  # ink is sparse: the images were inverted
    assert X[:, 0, [0, -1]].mean() < 0.01  # borders are background
    assert len(small1.target_names) == 136 and set(y) == set(range(136))
    assert np.all(np.diff(y) >= 0)  # sorted by character
    assert list(small1.group_names) == SMALL1_ALPHABETS
    assert small1.groups.dtype == np.int64 and set(small1.groups) == set(range(5))
    assert small1.target_names[0] == "Balinese/character01"
    for c in range(136):
        mask = y == c
        assert mask.sum() == 20
        assert sorted(small1.drawers[mask]) == list(range(1, 21))
        (alphabet,) = np.unique(small1.groups[mask])  # each character in one alphabet
        assert small1.target_names[c].split("/")[0] == small1.group_names[alphabet]
    assert "Omniglot" in small1.DESCR


def test_omniglot_original_size(small1):
    real = real_file("omniglot", SMALL1)
    full = load_omniglot(
        "background_small1", image_size=None, data_home=os.path.dirname(real), cache=False
    )
    assert full.data.shape == (2720, 1, 105, 105) and full.data.dtype == np.float32
    assert set(np.unique(full.data)) == {0.0, 1.0}
    np.testing.assert_array_equal(full.target, small1.target)
    # area interpolation preserves the amount of ink, roughly
    np.testing.assert_allclose(full.data.mean(), small1.data.mean(), rtol=0.05)


def test_omniglot_cache_round_trip(small1, small1_home, monkeypatch):
    first = load_omniglot("background_small1", data_home=small1_home)
    assert_bunches_equal(first, small1)
    cached = list((small1_home / "cache").glob("omniglot-images_background_small1-28-*.npz"))
    assert len(cached) == 1

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(_omniglot, "_decode", no_decode)
    start = time.perf_counter()
    second = load_omniglot("background_small1", data_home=small1_home)
    assert time.perf_counter() - start < 0.5
    assert_bunches_equal(second, small1)
    X, y = load_omniglot("background_small1", data_home=small1_home, return_X_y=True)
    np.testing.assert_array_equal(X, small1.data)
    np.testing.assert_array_equal(y, small1.target)


def test_omniglot_read_only_data_home(small1, small1_home, tmp_path, monkeypatch):
    folders = [small1_home / "omniglot", small1_home]
    for folder in folders:
        folder.chmod(0o555)
    try:
        first = load_omniglot("background_small1", data_home=small1_home)
        assert not (small1_home / "cache").exists()
        assert len(list((tmp_path / "user_cache").glob("*.npz"))) == 1
        monkeypatch.setattr(_omniglot, "_decode", None)  # must not be called
        second = load_omniglot("background_small1", data_home=small1_home)
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert_bunches_equal(first, small1)
    assert_bunches_equal(second, small1)


def test_omniglot_download_verifies_checksum(small1, tmp_path, monkeypatch):
    real = real_file("omniglot", SMALL1)
    urls = []

    def fake_download(url, path, timeout=None):
        urls.append(url)
        shutil.copyfile(real, path)

    monkeypatch.setattr(_fetch, "_download_url", fake_download)
    home = tmp_path / "home"
    X, y = load_omniglot("background_small1", data_home=home, return_X_y=True, cache=False)
    assert urls == ["https://github.com/brendenlake/omniglot/raw/master/python/" + SMALL1]
    assert (home / "omniglot" / SMALL1).is_file()
    assert os.listdir(home / "omniglot") == [SMALL1]  # no temporary file left
    np.testing.assert_array_equal(X, small1.data)


def test_omniglot_local_file_with_other_checksum_is_accepted():
    # The shared copy of images_background.zip has re-encoded PNGs (not the official
    # checksum); its layout is what gets validated.
    path = real_file("omniglot", "images_background.zip")
    md5, _ = _fetch.file_digests(path)
    assert md5 != _omniglot._REMOTES["background"].md5
    source = _omniglot._ZipImages(path, "images_background")
    try:
        assert len(source.records) == 19280
    finally:
        source.close()


# --------------------------------------------------------------------------------------------
# Omniglot on synthetic files
# --------------------------------------------------------------------------------------------


def test_omniglot_synthetic_layout_and_labels(tmp_path):
    home = tmp_path / "home"
    (home / "omniglot").mkdir(parents=True)
    inks = make_omniglot_zip(home / "omniglot" / SMALL1)
    b = load_omniglot("background_small1", image_size=None, data_home=home)
    assert b.data.shape == (9, 1, 105, 105)
    np.testing.assert_array_equal(b.data[:, 0], np.array(inks, dtype=np.float32))  # ink = 1
    assert list(b.group_names) == ["Alpha", "Beta_script"]
    assert list(b.target_names) == [
        "Alpha/character01",
        "Beta_script/character01",
        "Beta_script/character02",
    ]
    np.testing.assert_array_equal(b.target, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(b.groups, [0, 0, 0, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(b.drawers, [1, 2, 3] * 3)

    small = load_omniglot("background_small1", image_size=15, data_home=home)
    expected = np.array(inks, dtype=np.float32).reshape(9, 15, 7, 15, 7).mean(axis=(2, 4))
    np.testing.assert_allclose(small.data[:, 0], expected, atol=1e-6)  # exact 7x7 averages


def test_omniglot_extracted_folder_and_flat_home(tmp_path):
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    make_omniglot_zip(zipped / SMALL1)  # zip directly in data_home
    reference = load_omniglot("background_small1", data_home=zipped, cache=False)
    assert reference.data.shape == (9, 1, 28, 28)

    extracted = tmp_path / "extracted"
    with zipfile.ZipFile(zipped / SMALL1) as zf:
        zf.extractall(extracted / "omniglot")
    b = load_omniglot("background_small1", data_home=extracted)
    assert_bunches_equal(b, reference)
    assert len(list((extracted / "cache").glob("*.npz"))) == 1


def test_omniglot_cache_invalidated_when_source_changes(tmp_path):
    home = tmp_path / "home"
    (home / "omniglot").mkdir(parents=True)
    path = home / "omniglot" / SMALL1
    make_omniglot_zip(path, seed=0)
    first = load_omniglot("background_small1", data_home=home)
    make_omniglot_zip(path, seed=1)
    os.utime(path, ns=(0, 10**18))  # make sure size or mtime differs
    second = load_omniglot("background_small1", data_home=home)
    assert not np.array_equal(first.data, second.data)
    assert len(list((home / "cache").glob("*.npz"))) == 1  # the stale entry was replaced
    other_size = load_omniglot("background_small1", image_size=14, data_home=home)
    assert other_size.data.shape == (9, 1, 14, 14)
    assert len(list((home / "cache").glob("*.npz"))) == 2


def test_omniglot_cache_false_writes_nothing(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    make_omniglot_zip(home / SMALL1)
    load_omniglot("background_small1", data_home=home, cache=False)
    assert sorted(os.listdir(home)) == [SMALL1]
    assert not (tmp_path / "user_cache").exists()


def test_omniglot_cache_write_failure_warns(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    make_omniglot_zip(home / SMALL1)
    reference = load_omniglot("background_small1", data_home=home, cache=False)
    monkeypatch.setattr(_fetch, "_writable_dir", lambda path: False)
    with pytest.warns(RuntimeWarning, match="Could not cache"):
        b = load_omniglot("background_small1", data_home=home)
    assert_bunches_equal(b, reference)


def test_omniglot_corrupt_cache_is_ignored(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    make_omniglot_zip(home / SMALL1)
    reference = load_omniglot("background_small1", data_home=home)
    (cache_file,) = (home / "cache").glob("*.npz")
    cache_file.write_bytes(b"not an npz file")
    assert_bunches_equal(load_omniglot("background_small1", data_home=home), reference)


def test_omniglot_bad_layout_is_rejected(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with zipfile.ZipFile(home / SMALL1, "w") as zf:
        zf.writestr("images_background_small1/Alpha/0001_01.png", png_bytes(np.eye(105) > 0))
    with pytest.raises(ValueError, match="layout"):
        load_omniglot("background_small1", data_home=home)
    (home / SMALL1).write_bytes(b"garbage, not a zip")
    with pytest.raises(ValueError, match="not a readable zip"):
        load_omniglot("background_small1", data_home=home)
    with zipfile.ZipFile(home / SMALL1, "w") as zf:
        zf.writestr("images_background_small1/Alpha/character01/0001_01.png", b"not a png")
    with pytest.raises(ValueError, match="Cannot decode"):
        load_omniglot("background_small1", data_home=home, cache=False)


@pytest.mark.parametrize("download_if_missing", [False, True])
def test_omniglot_missing_file_says_where(tmp_path, download_if_missing):
    home = tmp_path / "home"
    with pytest.raises(OSError) as info:
        load_omniglot("evaluation", data_home=home, download_if_missing=download_if_missing)
    message = str(info.value)
    assert str(home / "omniglot" / "images_evaluation.zip") in message
    assert "https://github.com/brendenlake/omniglot/raw/master/python/images_evaluation.zip" in (
        message
    )


def test_download_with_wrong_checksum_is_deleted(tmp_path, monkeypatch):
    garbage_bytes = b"this is not the file you are looking for"

    def garbage(url, path, timeout=None):
        with open(path, "wb") as f:
            f.write(garbage_bytes)

    monkeypatch.setattr(_fetch, "_download_url", garbage)
    home = tmp_path / "home"
    with pytest.raises(OSError) as info:
        load_omniglot("background_small2", data_home=home)
    assert isinstance(info.value, ValueError)  # ChecksumError is both
    message = str(info.value)
    assert "images_background_small2.zip" in message
    assert _omniglot._REMOTES["background_small2"].sha256 in message  # expected
    assert hashlib.sha256(garbage_bytes).hexdigest() in message  # actual
    assert os.listdir(home / "omniglot") == []  # neither the file nor a temporary remains


@pytest.mark.parametrize("image_size", [0, -3, 2.5, True, "28"])
def test_omniglot_bad_arguments(image_size, tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        load_omniglot("background_small1", image_size=image_size, data_home=tmp_path)
    with pytest.raises(ValueError, match="subset"):
        load_omniglot("images_background", data_home=tmp_path)


# --------------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------------


def test_mnist_test_split_real():
    images = real_file("mnist", MNIST_TEST[0])
    real_file("mnist", MNIST_TEST[1])
    home = os.path.dirname(os.path.dirname(images))
    b = load_mnist("test", data_home=home, download_if_missing=False)
    assert b.data.shape == (10000, 1, 28, 28) and b.data.dtype == np.float32
    assert b.target.shape == (10000,) and b.target.dtype == np.int64
    assert b.data.min() == 0.0 and b.data.max() == 1.0
    assert 0.05 < b.data.mean() < 0.25  # white digits on black: ink is already 1
    counts = np.bincount(b.target, minlength=10)
    assert len(counts) == 10 and counts.sum() == 10000 and np.all(np.abs(counts - 1000) < 150)
    np.testing.assert_array_equal(b.target[:5], [7, 2, 1, 0, 4])
    np.testing.assert_array_equal(b.target_names, np.arange(10))
    X, y = load_mnist("test", data_home=home, return_X_y=True, flatten=True)
    assert X.shape == (10000, 784)
    np.testing.assert_array_equal(X, b.data.reshape(10000, 784))
    np.testing.assert_array_equal(y, b.target)


def test_mnist_download_falls_back_to_mirror(tmp_path, monkeypatch):
    sources = {name: real_file("mnist", name) for name in MNIST_TEST}
    urls = []

    def fake_download(url, path, timeout=None):
        urls.append(url)
        if "lecun.com" in url:
            raise urllib.error.HTTPError(url, 403, "Forbidden", None, None)
        shutil.copyfile(sources[url.rsplit("/", 1)[1]], path)

    monkeypatch.setattr(_fetch, "_download_url", fake_download)
    X, y = load_mnist("test", data_home=tmp_path, return_X_y=True)
    assert X.shape == (10000, 1, 28, 28)
    assert sorted(os.listdir(tmp_path / "mnist")) == sorted(MNIST_TEST)
    assert len(urls) == 4 and "ossci-datasets" in urls[1]


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_reads_synthetic_idx_files_plain_and_gzipped(tmp_path, compress):
    images, labels = make_mnist(tmp_path / "mnist", compress=compress)
    b = load_mnist(data_home=tmp_path, download_if_missing=False)
    np.testing.assert_array_equal(b.data[:, 0], images.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(b.target, labels)
    assert "MNIST" in b.DESCR


def test_mnist_corrupt_files(tmp_path):
    folder = tmp_path / "mnist"
    images, labels = make_mnist(folder)
    path = folder / MNIST_TEST[0]
    write_idx(path, images, 0x801)  # labels' magic number on the images file
    with pytest.raises(ValueError, match="magic number"):
        load_mnist(data_home=tmp_path)
    write_idx(path, images[:, :, :27], 0x803)
    with pytest.raises(ValueError, match="28x28"):
        load_mnist(data_home=tmp_path)
    path.write_bytes(gzip.compress((0x803).to_bytes(4, "big") + bytes(8)))
    with pytest.raises(ValueError, match="incomplete header"):
        load_mnist(data_home=tmp_path)
    good = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (5, 28, 28))
    path.write_bytes(gzip.compress(good + images.tobytes()[:-10]))  # truncated body
    with pytest.raises(ValueError, match="corrupt"):
        load_mnist(data_home=tmp_path)
    path.write_bytes(gzip.compress(good + images.tobytes())[:-20])  # truncated gzip stream
    with pytest.raises(ValueError, match="Cannot read"):
        load_mnist(data_home=tmp_path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="too short"):
        load_mnist(data_home=tmp_path)
    write_idx(path, images, 0x803)
    write_idx(folder / MNIST_TEST[1], labels[:3], 0x801)
    with pytest.raises(ValueError, match="labels"):
        load_mnist(data_home=tmp_path)


@pytest.mark.parametrize("download_if_missing", [False, True])
def test_mnist_missing_file_says_where(tmp_path, download_if_missing):
    with pytest.raises(OSError) as info:
        load_mnist("train", data_home=tmp_path, download_if_missing=download_if_missing)
    message = str(info.value)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in message
    assert "http://yann.lecun.com/exdb/mnist/train-images-idx3-ubyte.gz" in message


def test_mnist_bad_subset(tmp_path):
    with pytest.raises(ValueError, match="subset"):
        load_mnist("validation", data_home=tmp_path)


def test_mnist_data_home_with_mode_bits_readonly(tmp_path):
    make_mnist(tmp_path / "mnist")
    (tmp_path / "mnist").chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert load_mnist(data_home=tmp_path).data.shape == (5, 1, 28, 28)
    finally:
        (tmp_path / "mnist").chmod(0o755)


def test_no_download_into_read_only_data_home(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(_fetch, "_download_url", lambda *args, **kwargs: calls.append(args))
    home = tmp_path / "home"
    (home / "omniglot").mkdir(parents=True)
    (home / "omniglot").chmod(0o555)
    try:
        with pytest.raises(OSError, match="not writable") as info:
            load_omniglot("background_small1", data_home=home)
        assert os.listdir(home / "omniglot") == [] and calls == []
    finally:
        (home / "omniglot").chmod(0o755)
    assert str(home / "omniglot" / SMALL1) in str(info.value)
