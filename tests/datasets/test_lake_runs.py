"""The official one-shot runs loader: layout, preprocessing, scoring, errors."""

import hashlib
import io
import os
import zipfile

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.distance import cdist
from sklearn.base import BaseEstimator

from sktransfer.datasets import (
    _fetch,
    _lake_runs,
    load_omniglot,
    load_one_shot_runs,
    make_one_shot_runs,
)
from sktransfer.metrics import score_one_shot_runs
from tests.datasets._offline import _isolated  # noqa: F401 (autouse fixture)

OFFICIAL_URL = ("https://github.com/brendenlake/omniglot/raw/master/python/"
                "one-shot-classification/all_runs.zip")

# run -> (test item -> training class), as class_labels.txt pairs them
LABELS = {"run01": {1: 3, 2: 1, 3: 2}, "run02": {1: 2, 2: 3, 3: 1}}
# in run02 item03 is drawn like class02 but labelled class01: a pixel
# nearest neighbour gets exactly that one wrong
CONFUSED = ("run02", 3, 2)




def _glyph(seed, size=105):
    """A binary 'character': a few thick random strokes, ink True."""
    rng = np.random.RandomState(seed)
    ink = np.zeros((size, size), bool)
    for _ in range(3):
        r, c = rng.randint(10, size - 10, 2)
        dr, dc = rng.randint(-3, 4, 2)
        for _ in range(25):
            ink[max(r - 2, 0):r + 3, max(c - 2, 0):c + 3] = True
            r, c = np.clip([r + dr, c + dc], 3, size - 4)
    return ink


def _png(ink):
    """PNG bytes as the official files store them: 1-bit, black strokes on white."""
    buf = io.BytesIO()
    Image.fromarray(~ink).convert("1").save(buf, format="PNG")
    return buf.getvalue()


def _official_members(size=105):
    """``{name: bytes}`` of a 2-run, 3-class file in the official layout."""
    members = {}
    for r, (run, labels) in enumerate(LABELS.items()):
        glyphs = {k: _glyph(10 * r + k, size) for k in (1, 2, 3)}
        lines = []
        for item, cls in labels.items():
            members[f"{run}/training/class{cls:02d}.png"] = _png(glyphs[cls])
            drawn = glyphs[CONFUSED[2]] if (run, item) == CONFUSED[:2] else glyphs[cls]
            other = drawn.copy()
            other[50:53, 50:53] ^= True  # another drawing: a few pixels differ
            members[f"{run}/test/item{item:02d}.png"] = _png(other)
            lines.append(f"{run}/test/item{item:02d}.png {run}/training/class{cls:02d}.png")
        members[f"{run}/class_labels.txt"] = ("\n".join(lines) + "\n").encode()
    return members


def _write_zip(path, members, prefix=""):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(prefix + name, data)
    return path


def _write_folder(root, members):
    for name, data in members.items():
        path = root.joinpath(*name.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture
def runs_zip(tmp_path):
    return _write_zip(tmp_path / "all_runs.zip", _official_members())


class _PixelNN(BaseEstimator):
    """Few-shot 'estimator': nearest training image in pixel space."""

    def fit(self, X=None, y=None):
        self.fitted_ = True
        return self

    def adapt(self, X, y):
        adapted = _PixelNN().fit()
        adapted.X_, adapted.y_ = np.asarray(X).reshape(len(X), -1), np.asarray(y)
        return adapted

    def predict(self, X):
        d = cdist(np.asarray(X).reshape(len(X), -1), self.X_, "sqeuclidean")
        return self.y_[d.argmin(1)]


def test_runs_from_zip_have_the_official_labels(runs_zip):
    runs = load_one_shot_runs(runs_zip)
    assert [r.name for r in runs] == ["run01", "run02"]
    first = runs[0]
    assert first.train_files == [f"run01/training/class0{k}.png" for k in (1, 2, 3)]
    assert first.test_files == [f"run01/test/item0{k}.png" for k in (1, 2, 3)]
    assert first.y_train.tolist() == [0, 1, 2]
    assert first.y_test.tolist() == [2, 0, 1]       # item01 -> class03, ...
    assert runs[1].y_test.tolist() == [1, 2, 0]
    assert first.X_train.shape == (3, 1, 28, 28) and first.X_test.shape == (3, 1, 28, 28)
    assert first.group is None


def test_zip_folder_and_prefixed_zip_give_the_same_runs(runs_zip, tmp_path):
    members = _official_members()
    folder = _write_folder(tmp_path / "extracted", members)
    prefixed = _write_zip(tmp_path / "prefixed.zip", members, prefix="all_runs/")
    expected = load_one_shot_runs(runs_zip, image_size=None)
    for other in (load_one_shot_runs(folder, image_size=None),
                  load_one_shot_runs(str(prefixed), image_size=None)):
        assert len(other) == len(expected)
        for a, b in zip(expected, other):
            assert a.keys() == b.keys() and a.name == b.name
            for key in ("X_train", "y_train", "X_test", "y_test"):
                np.testing.assert_array_equal(a[key], b[key])


def test_layout_is_that_of_make_one_shot_runs(runs_zip):
    loaded = load_one_shot_runs(runs_zip)
    X = np.random.RandomState(0).rand(12, 1, 28, 28).astype(np.float32)
    y = np.repeat(np.arange(6), 2)
    made = make_one_shot_runs(X, y, groups=np.zeros(12, int), n_runs=2, n_way=3,
                              random_state=0)
    assert type(loaded) is type(made) and type(loaded[0]) is type(made[0])
    for run in loaded:
        assert set(made[0]) <= set(run)
        for key in ("X_train", "y_train", "X_test", "y_test"):
            assert isinstance(run[key], np.ndarray)
            assert run[key].dtype.kind == made[0][key].dtype.kind
            assert run[key].shape == made[0][key].shape
        assert run.X_train.dtype == np.float32 and run.y_train.dtype == np.int64


def test_images_are_preprocessed_like_load_omniglot(runs_zip, tmp_path):
    # the same PNG bytes, in an Omniglot images zip and in the runs file
    members = _official_members()
    home = tmp_path / "home"
    (home / "omniglot").mkdir(parents=True)
    with zipfile.ZipFile(home / "omniglot" / "images_background_small1.zip", "w") as z:
        for k in (1, 2, 3):
            z.writestr(f"images_background_small1/A/character01/0001_0{k}.png",
                       members[f"run01/training/class0{k}.png"])
    for size in (28, 20, None):
        omniglot = load_omniglot("background_small1", data_home=home, image_size=size,
                                 download_if_missing=False, cache=False)
        run = load_one_shot_runs(runs_zip, image_size=size)[0]
        np.testing.assert_array_equal(run.X_train, omniglot.data)
        assert run.X_train.dtype == omniglot.data.dtype == np.float32
    # ink is 1.0 on a 0.0 background, as in load_omniglot
    native = load_one_shot_runs(runs_zip, image_size=None)[0].X_train
    assert set(np.unique(native)) == {0.0, 1.0} and native.mean() < 0.5


def test_score_one_shot_runs_scores_the_loaded_runs(runs_zip):
    runs = load_one_shot_runs(runs_zip, image_size=None)
    result = score_one_shot_runs(_PixelNN().fit(), runs)
    np.testing.assert_allclose(result["errors"], [0.0, 1 / 3])
    assert result["mean_error"] == pytest.approx(1 / 6)


def test_looks_in_data_home_zip_flat_and_extracted(tmp_path):
    members = _official_members()
    for where in ("omniglot/all_runs.zip", "all_runs.zip", "omniglot/all_runs"):
        home = tmp_path / where.replace("/", "_")
        target = home.joinpath(*where.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        if where.endswith(".zip"):
            _write_zip(target, members)
        else:
            _write_folder(target, members)
        runs = load_one_shot_runs(data_home=home, download_if_missing=False)
        assert [r.y_test.tolist() for r in runs] == [[2, 0, 1], [1, 2, 0]]


def test_missing_file_without_download_says_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="all_runs.zip") as info:
        load_one_shot_runs(data_home=tmp_path, download_if_missing=False)
    assert OFFICIAL_URL in str(info.value)
    assert str(tmp_path / "omniglot" / "all_runs.zip") in str(info.value)
    with pytest.raises(FileNotFoundError, match="No one-shot runs at"):
        load_one_shot_runs(tmp_path / "nowhere.zip")


def test_offline_download_fails_with_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="Could not download 'all_runs.zip'"):
        load_one_shot_runs(data_home=tmp_path)


def test_download_is_checksummed(runs_zip, tmp_path, monkeypatch):
    good = runs_zip.read_bytes()
    urls = []

    def serve(data):
        def fake_download(url, path, timeout=None):
            urls.append(url)
            with open(path, "wb") as f:
                f.write(data)
        return fake_download

    # the official digest: a synthetic file is refused and deleted
    monkeypatch.setattr(_fetch, "_download_url", serve(good))
    home = tmp_path / "home"
    with pytest.raises(_fetch.ChecksumError, match="wrong checksum"):
        load_one_shot_runs(data_home=home)
    assert urls == [OFFICIAL_URL] and os.listdir(home / "omniglot") == []
    # a digest that matches: saved under the official name, then read
    remote = _fetch.RemoteFile(_lake_runs._REMOTE.filename, _lake_runs._REMOTE.urls,
                               sha256=hashlib.sha256(good).hexdigest())
    monkeypatch.setattr(_lake_runs, "_REMOTE", remote)
    runs = load_one_shot_runs(data_home=home)
    assert os.listdir(home / "omniglot") == ["all_runs.zip"]
    assert [r.y_test.tolist() for r in runs] == [[2, 0, 1], [1, 2, 0]]


def test_official_digest_is_pinned():
    remote = _lake_runs._REMOTE
    assert remote.urls == (OFFICIAL_URL,)
    assert remote.sha256 == "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325"


def test_corrupt_zip(tmp_path, runs_zip):
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match="not a readable zip"):
        load_one_shot_runs(garbage)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(runs_zip.read_bytes()[:-200])
    with pytest.raises(ValueError, match="not a readable zip"):
        load_one_shot_runs(truncated)


def _broken(tmp_path, edit):
    members = _official_members()
    edit(members)
    return _write_zip(tmp_path / "broken.zip", members)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.pop("run01/class_labels.txt") and m.pop("run02/class_labels.txt"),
     "no 'runNN/class_labels.txt'"),
    (lambda m: m.update({"run01/class_labels.txt": b"run01/test/item01.png\n"}),
     "line 1 of 'run01/class_labels.txt'"),
    (lambda m: m.update({"run01/class_labels.txt":
                         b"run01/test/item01.png run02/training/class01.png\n"}),
     "line 1 of 'run01/class_labels.txt'"),
    (lambda m: m.pop("run01/training/class03.png"), "'run01/training/class03.png'.*not in"),
    (lambda m: m.update({"run01/class_labels.txt": b"run01/test/item01.png "
                         b"run01/training/class01.png\nrun01/test/item01.png "
                         b"run01/training/class02.png\n"}), "twice"),
    (lambda m: m.update({"run01/class_labels.txt": b"\n"}), "is empty"),
    (lambda m: m.update({"run01/training/sub/x.png": m["run01/training/class01.png"],
                         "run01/class_labels.txt":
                         b"run01/test/item01.png run01/training/sub/x.png\n"}),
     "not a PNG image directly in run01/training/"),
    (lambda m: m.update({"run01/class_labels.txt": b"\xff\xfe\x00"}), "is not text"),
    (lambda m: m.update({"other/run03/class_labels.txt": m["run01/class_labels.txt"]}),
     "several folders"),
])
def test_wrong_layout_names_the_problem(tmp_path, edit, message):
    with pytest.raises(ValueError, match="layout of the official one-shot runs") as info:
        load_one_shot_runs(_broken(tmp_path, edit))
    assert info.match(message)


def test_bad_images(tmp_path):
    not_png = _broken(tmp_path, lambda m: m.update({"run01/test/item02.png": b"GIF89a..."}))
    with pytest.raises(ValueError, match="Cannot decode 'run01/test/item02.png'"):
        load_one_shot_runs(not_png)
    small = _png(_glyph(0, 50))
    other_size = _broken(tmp_path, lambda m: m.update({"run02/test/item01.png": small}))
    with pytest.raises(ValueError, match="50x50 pixels; the other images are 105x105"):
        load_one_shot_runs(other_size)


@pytest.mark.parametrize("image_size", [0, -3, 2.5, "28", True])
def test_bad_image_size(runs_zip, image_size):
    with pytest.raises((ValueError, TypeError), match="image_size"):
        load_one_shot_runs(runs_zip, image_size=image_size)


def test_bad_path_type():
    with pytest.raises(TypeError, match="path must be"):
        load_one_shot_runs(3)


def _modified_hausdorff(a, b):
    d = cdist(a, b)
    return max(d.min(1).mean(), d.min(0).mean())


def _ink_points(image):
    rows, cols = np.nonzero(image[0] > 0.5)
    points = np.stack([rows, cols], 1).astype(float)
    return points - points.mean(0)


def test_real_official_runs():
    """The official file, when the data folder holds it (skipped otherwise)."""
    try:
        path, _ = _fetch.fetch_file(_lake_runs._REMOTE, _fetch.get_data_home(), "omniglot",
                                    download_if_missing=False)
    except FileNotFoundError:
        pytest.skip("all_runs.zip is not in the data folder (SKTRANSFER_DATA)")
    md5, sha256 = _fetch.file_digests(path)
    assert sha256 == _lake_runs._REMOTE.sha256 and md5 == _lake_runs._REMOTE.md5
    runs = load_one_shot_runs(path, image_size=None)
    assert len(runs) == 20 and [r.name for r in runs][-1] == "run20"
    for run in runs:
        assert run.X_train.shape == run.X_test.shape == (20, 1, 105, 105)
        assert sorted(run.y_test) == list(range(20))
    assert runs[0].y_test[:5].tolist() == [7, 8, 1, 18, 9]  # item01 -> class08, ...
    # the official baseline (demo_classification.py): modified Hausdorff
    # distance between ink points; 45% and 15% errors on runs 1 and 6
    # (38.75% over the 20 runs, the repository's "38.8 percent")
    for k, expected in ((0, 0.45), (5, 0.15)):
        train = [_ink_points(x) for x in runs[k].X_train]
        test = [_ink_points(x) for x in runs[k].X_test]
        pred = [np.argmin([_modified_hausdorff(a, b) for b in train]) for a in test]
        assert np.mean(np.array(pred) != runs[k].y_test) == pytest.approx(expected)
    small = load_one_shot_runs(path)
    assert small[0].X_train.shape == (20, 1, 28, 28)
