"""Rotated classes, Lake-style one-shot runs, and their scorer."""


import numpy as np
import pytest
from sklearn.base import BaseEstimator

from sktransfer.datasets import augment_rotations, make_one_shot_runs
from sktransfer.metrics import score_one_shot_runs
from tests._data import needs_omniglot


def test_rotations_are_new_classes_of_rotated_images():
    X = np.arange(2 * 9, dtype=float).reshape(2, 1, 3, 3)
    X_aug, y_aug, g_aug = augment_rotations(X, ["a", "b"], groups=[7, 8])
    assert X_aug.shape == (8, 1, 3, 3) and len(np.unique(y_aug)) == 8
    np.testing.assert_array_equal(X_aug[2], np.rot90(X[0], 1, axes=(-2, -1)))  # 90
    np.testing.assert_array_equal(X_aug[4], X[0][:, ::-1, ::-1])                # 180
    np.testing.assert_array_equal(X_aug[6], np.rot90(X[0], 3, axes=(-2, -1)))  # 270
    assert y_aug.tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    assert g_aug.tolist() == [7, 8] * 4
    _, y_half, g_none = augment_rotations(X, [0, 1], angles=(180,))
    assert y_half.tolist() == [0, 2, 1, 3] and g_none is None


def test_rotation_errors_name_the_problem():
    with pytest.raises(ValueError, match="90, 180 or 270"):
        augment_rotations(np.zeros((2, 1, 3, 3)), [0, 1], angles=(45,))
    with pytest.raises(ValueError, match="square images"):
        augment_rotations(np.zeros((2, 1, 3, 4)), [0, 1])
    with pytest.raises(ValueError, match="one label per image"):
        augment_rotations(np.zeros((2, 1, 3, 3)), [0])


def _synthetic(n_alphabets=3, n_chars=6, n_drawers=4):
    y = np.repeat(np.arange(n_alphabets * n_chars), n_drawers)
    groups = y // n_chars
    drawers = np.tile(np.arange(n_drawers), n_alphabets * n_chars)
    X = np.arange(len(y), dtype=float).reshape(-1, 1, 1, 1)  # each image is its row number
    return X, y, groups, drawers


def test_runs_have_lakes_layout():
    X, y, groups, drawers = _synthetic()
    runs = make_one_shot_runs(X, y, groups, drawers, n_runs=6, n_way=5, random_state=0)
    assert [run.group for run in runs[:3]] != [runs[0].group] * 3  # alphabets take turns
    assert sorted(r.group for r in runs[:3]) == [0, 1, 2]
    for run in runs:
        train, test = run.X_train.ravel().astype(int), run.X_test.ravel().astype(int)
        assert len(set(run.y_train)) == 5 and sorted(run.y_train) == sorted(run.y_test)
        assert set(groups[train]) == {run.group} and set(groups[test]) == {run.group}
        assert not set(train) & set(test)
        # one drawer for the training drawings, another one for the test drawings
        assert len(set(drawers[train])) == 1 and len(set(drawers[test])) == 1
        assert drawers[train][0] != drawers[test][0]
    again = make_one_shot_runs(X, y, groups, drawers, n_runs=6, n_way=5, random_state=0)
    assert all(np.array_equal(a.X_test, b.X_test) for a, b in zip(runs, again))


def test_runs_errors_name_the_problem():
    X, y, groups, drawers = _synthetic(n_chars=4)
    with pytest.raises(ValueError, match="no alphabet .* has 5 characters"):
        make_one_shot_runs(X, y, groups, n_way=5)
    with pytest.raises(ValueError, match="one entry per sample"):
        make_one_shot_runs(X, y[:-1], groups)
    with pytest.raises(ValueError, match="drawers has"):
        make_one_shot_runs(X, y, groups, drawers[:3], n_way=3)


class _NearestImage(BaseEstimator):
    """A stand-in few-shot estimator: adapt memorises the support set (1-NN on pixels)."""

    def fit(self, X=None, y=None):
        self.fitted_ = True
        return self

    def adapt(self, X, y):
        memory = (np.asarray(X).reshape(len(X), -1), np.asarray(y))

        class _Adapted:
            def predict(self, Xq):
                d = ((np.asarray(Xq).reshape(len(Xq), 1, -1) - memory[0][None]) ** 2).sum(-1)
                return memory[1][d.argmin(1)]

        return _Adapted()


def test_score_one_shot_runs_reports_mean_and_spread():
    rng = np.random.RandomState(0)
    protos = rng.rand(12, 1, 5, 5)
    y = np.repeat(np.arange(12), 2)
    X = protos[y] + 0.01 * rng.rand(24, 1, 5, 5)   # two close drawings of each character
    runs = make_one_shot_runs(X, y, y // 6, n_runs=4, n_way=6, random_state=0)
    result = score_one_shot_runs(_NearestImage().fit(), runs)
    assert result["mean_error"] == 0.0 and result["std_error"] == 0.0
    assert result["errors"].shape == (4,)
    runs[0].y_test = (runs[0].y_test + 1) % 12   # every answer of run 0 is now wrong
    result = score_one_shot_runs(_NearestImage().fit(), runs)
    assert result["errors"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert result["mean_error"] == 0.25 and result["std_error"] == pytest.approx(np.std(
        [1, 0, 0, 0]))
    with pytest.raises(ValueError, match="runs is empty"):
        score_one_shot_runs(_NearestImage().fit(), [])
    with pytest.raises(TypeError, match="no adapt method"):
        score_one_shot_runs(BaseEstimator(), runs)
    with pytest.raises(ValueError, match=r"runs\[0\] must have"):
        score_one_shot_runs(_NearestImage().fit(), [{"X_train": X}])


@needs_omniglot
def test_protonet_beats_chance_on_runs_from_held_out_omniglot_alphabets():
    from sktransfer.datasets import load_omniglot
    from sktransfer.meta import PrototypicalClassifier

    data = load_omniglot("background")
    held_out = data.groups >= 25
    train = ~held_out
    proto = PrototypicalClassifier(n_way=20, k_shot=1, n_query=2, episodes_per_epoch=60,
                                   max_epochs=1, random_state=0)
    proto.fit(data.data[train], data.target[train], groups=data.groups[train])
    runs = make_one_shot_runs(data.data[held_out], data.target[held_out],
                              data.groups[held_out], data.drawers[held_out], n_runs=5,
                              random_state=0)
    result = score_one_shot_runs(proto, runs)
    assert result["mean_error"] < 0.8, result  # chance: 19 / 20 = 0.95; measured 0.64
