"""augment=: training-time augmentation of the images of meta-training episodes."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone

from sktransfer.meta import (
    BaselineFewShotClassifier,
    MAMLClassifier,
    MatchingClassifier,
    PrototypicalClassifier,
    R2D2Classifier,
    RandomShift,
    RelationClassifier,
    SimpleShotClassifier,
)
from sktransfer.metrics import few_shot_score
from tests._data import needs_omniglot

LEARNERS = [PrototypicalClassifier, MatchingClassifier, R2D2Classifier, RelationClassifier,
            MAMLClassifier]
BATCH_LEARNERS = [BaselineFewShotClassifier, SimpleShotClassifier]


def _images(n_classes=6, per_class=12, size=16, seed=0):
    """Classes of noisy random blobs on a (1, size, size) grid."""
    rng = np.random.RandomState(seed)
    protos = (rng.rand(n_classes, 1, size, size) > 0.7).astype(np.float32)
    X = np.repeat(protos, per_class, axis=0)
    X = X + 0.3 * rng.randn(*X.shape).astype(np.float32)
    y = np.repeat(np.arange(n_classes), per_class)
    return X.astype(np.float32), y


def _recorder():
    """An augmentation that changes nothing and records the shape of every call."""
    calls = []

    def record(images):
        calls.append(tuple(images.shape))
        return images

    return calls, record


def _small(cls, **params):
    small = dict(n_way=3, k_shot=1, n_query=2, episodes_per_epoch=3, max_epochs=1,
                 random_state=0)
    if cls is MAMLClassifier:
        small.update(batch_size=1, inner_steps=1)
    return cls(**{**small, **params})


# ---------------------------------------------------------------- RandomShift
def test_random_shift_moves_each_image_within_range_zero_padded():
    X = torch.zeros(200, 1, 9, 9)
    X[:, :, 4, 4] = 1.0                       # one lit pixel in the centre
    torch.manual_seed(0)
    moved = RandomShift(max_shift=2)(X)
    assert moved.shape == X.shape
    assert torch.equal(moved.sum(dim=(1, 2, 3)), torch.ones(200))   # nothing lost
    rows, cols = moved[:, 0].flatten(1).argmax(1) // 9, moved[:, 0].flatten(1).argmax(1) % 9
    assert set(rows.tolist()) == set(range(2, 7)) and set(cols.tolist()) == set(range(2, 7))
    # images are moved independently, and zero comes in from the border
    full = torch.ones(50, 2, 6, 6)
    out = RandomShift(max_shift=3)(full)
    assert len({tuple(img[0].sum(1).tolist()) for img in out}) > 5
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out[:, 0], out[:, 1])  # the channels of an image move together


def test_random_shift_draws_from_the_seeded_torch_generator():
    X = torch.rand(20, 3, 8, 8)
    torch.manual_seed(3)
    a = RandomShift()(X)
    torch.manual_seed(3)
    b = RandomShift()(X)
    assert torch.equal(a, b)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError),
                                        (1.5, TypeError), (True, TypeError)])
def test_random_shift_checks_max_shift(bad, error):
    with pytest.raises(error, match="max_shift"):
        RandomShift(max_shift=bad)


def test_random_shift_needs_images():
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        RandomShift()(torch.zeros(4, 12))


def test_random_shift_repr_and_equality_survive_clone_and_pickle():
    proto = PrototypicalClassifier(augment=RandomShift(2))
    assert clone(proto).augment == RandomShift(2) != RandomShift(3)
    assert pickle.loads(pickle.dumps(proto)).augment == RandomShift(2)
    assert repr(RandomShift(2)) == "RandomShift(max_shift=2)"


# ------------------------------------------------------------- the estimators
@pytest.mark.parametrize("cls", LEARNERS)
def test_augment_reaches_every_training_episode_and_only_those(cls):
    X, y = _images()
    calls, record = _recorder()
    est = _small(cls, augment=record).fit(X, y)
    # support (3 x 1) and query (3 x 2) images of each of the 3 episodes
    assert sorted(set(calls)) == [(3, 1, 16, 16), (6, 1, 16, 16)]
    assert len(calls) == 6
    calls.clear()
    est.adapt(X[::12][:3], y[::12][:3]).predict(X[:5])
    est.predict(X[:5])
    assert calls == []                        # adaptation and prediction are not augmented


def test_validation_episodes_are_not_augmented():
    from skorch.dataset import ValidSplit

    X, y = _images()
    calls, record = _recorder()
    est = _small(PrototypicalClassifier, augment=record, episodes_per_epoch=10,
                 train_split=ValidSplit(5)).fit(X, y)
    history = est.net_.history
    assert "valid_loss" in history[-1]
    # 8 training episodes of 10 (2 held out for validation): support and query
    assert len(calls) == 2 * history[-1, "train_batch_count"]


@pytest.mark.parametrize("cls", [PrototypicalClassifier, MAMLClassifier])
def test_shift_changes_training_and_a_seed_still_fixes_it(cls):
    X, y = _images()
    plain = _small(cls).fit(X, y)
    shifted = _small(cls, augment="shift").fit(X, y)
    again = _small(cls, augment="shift").fit(X, y)
    w = [next(e.net_.module_.parameters()).detach().clone() for e in (plain, shifted, again)]
    assert not torch.allclose(w[0], w[1])
    assert torch.equal(w[1], w[2])
    np.testing.assert_array_equal(shifted.predict_proba(X), again.predict_proba(X))
    # the global generator is left as it was
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    _small(cls, augment="shift").fit(X, y)
    assert torch.equal(torch.rand(3), expected)


def test_shift_needs_images_and_fails_before_training():
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 5).astype(np.float32), np.repeat(np.arange(6), 10)
    proto = _small(PrototypicalClassifier, augment="shift")
    with pytest.raises(ValueError, match=r"augment='shift'.*\(n_samples, C, H, W\)"):
        proto.fit(X, y)
    assert not hasattr(proto, "net_")
    # a callable may augment any rows: 2-D X is fine
    _small(PrototypicalClassifier, augment=lambda rows: rows + 0.0).fit(X, y)


@pytest.mark.parametrize("bad", ["rotate", 3, ["shift"]])
def test_unknown_augment_is_a_clear_error(bad):
    X, y = _images()
    with pytest.raises((ValueError, TypeError), match="augment"):
        _small(PrototypicalClassifier, augment=bad).fit(X, y)


def test_an_augmentation_that_changes_the_shape_fails_atomically():
    X, y = _images()
    proto = _small(PrototypicalClassifier).fit(X, y)
    before = {k: v.clone() for k, v in proto.net_.module_.state_dict().items()}
    proto.set_params(augment=lambda images: images[:, :, :8, :8])
    with pytest.raises(ValueError, match=r"augment must return a tensor of the shape"):
        proto.fit(X, y)
    after = proto.net_.module_.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    proto.set_params(augment=None)
    proto.predict(X[:3])


# ------------------------------------------- the batch learners (Baseline, SimpleShot)
def _small_batch(cls, **params):
    return cls(**{**dict(batch_size=24, max_epochs=2, random_state=0), **params})


@pytest.mark.parametrize("cls", BATCH_LEARNERS)
@pytest.mark.parametrize("weighted", [False, True])
def test_batch_learners_augment_every_training_batch_and_only_those(cls, weighted):
    X, y = _images()                          # 72 images: 3 batches of 24 per epoch
    calls, record = _recorder()
    w = np.linspace(0.5, 1.5, len(y)) if weighted else None
    est = _small_batch(cls, augment=record).fit(X, y, sample_weight=w)
    assert calls == [(24, 1, 16, 16)] * 6
    calls.clear()
    est.adapt(X[::12][:3], y[::12][:3]).predict(X[:5])
    est.predict(X[:5])
    assert calls == []                        # adaptation and prediction are not augmented


def test_batch_learners_do_not_augment_validation_batches():
    from skorch.dataset import ValidSplit

    X, y = _images()
    calls, record = _recorder()
    est = _small_batch(BaselineFewShotClassifier, augment=record, max_epochs=1,
                       train_split=ValidSplit(4, stratified=True)).fit(X, y)
    assert "valid_loss" in est.net_.history[-1]
    assert sum(shape[0] for shape in calls) == 54   # the 3/4 of the rows trained on, once


@pytest.mark.parametrize("cls", BATCH_LEARNERS)
def test_batch_learners_shift_changes_training_and_a_seed_still_fixes_it(cls):
    X, y = _images()
    plain = _small_batch(cls).fit(X, y)
    shifted = _small_batch(cls, augment="shift").fit(X, y)
    again = clone(shifted).fit(X, y)
    w = [next(e.net_.module_.parameters()).detach().clone() for e in (plain, shifted, again)]
    assert not torch.allclose(w[0], w[1])
    assert torch.equal(w[1], w[2])
    np.testing.assert_array_equal(shifted.predict_proba(X), again.predict_proba(X))
    restored = pickle.loads(pickle.dumps(shifted))
    np.testing.assert_array_equal(restored.predict_proba(X), shifted.predict_proba(X))


def test_batch_learners_shift_needs_images_and_fail_atomically():
    rng = np.random.RandomState(0)
    X2, y2 = rng.randn(60, 5).astype(np.float32), np.repeat(np.arange(6), 10)
    base = _small_batch(BaselineFewShotClassifier, augment="shift")
    with pytest.raises(ValueError, match=r"augment='shift'.*\(n_samples, C, H, W\)"):
        base.fit(X2, y2)
    assert not hasattr(base, "net_")
    X, y = _images()
    simple = _small_batch(SimpleShotClassifier).fit(X, y)
    before = {k: v.clone() for k, v in simple.net_.module_.state_dict().items()}
    mean_before = simple.feature_mean_.copy()
    simple.set_params(augment=lambda images: images[:, :, :8, :8])
    with pytest.raises(ValueError, match=r"augment must return a tensor of the shape"):
        simple.fit(X, y)
    after = simple.net_.module_.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    np.testing.assert_array_equal(simple.feature_mean_, mean_before)
    with pytest.raises((ValueError, TypeError), match="augment"):
        _small_batch(SimpleShotClassifier, augment="rotate").fit(X, y)




def _five_way_one_shot_on_real_omniglot(make, groups_in_fit):
    """Train ``make(Conv4 factory)`` on 4 alphabets of the small Omniglot split;
    the mean 5-way 1-shot accuracy (and its interval) on the others."""
    from sktransfer.datasets import load_omniglot
    from sktransfer.modules import Conv4

    data = load_omniglot("background_small1")
    X, y, groups = data.data, data.target, data.groups
    train = np.isin(groups, np.unique(groups)[:4])
    est = make(lambda: Conv4(hidden_channels=16))
    est.fit(X[train], y[train], **({"groups": groups[train]} if groups_in_fit else {}))
    return few_shot_score(est, X[~train], y[~train], n_way=5, k_shot=1, n_query=5,
                          n_episodes=30, random_state=0)


@needs_omniglot
def test_protonet_learns_with_shifted_episodes_on_real_omniglot():
    mean, ci = _five_way_one_shot_on_real_omniglot(
        lambda conv4: PrototypicalClassifier(n_way=5, k_shot=1, n_query=5, max_epochs=2,
                                             episodes_per_epoch=50, augment="shift",
                                             module=conv4, random_state=0),
        groups_in_fit=True)
    assert mean > 0.5, (mean, ci)  # chance 0.2


@needs_omniglot
def test_simpleshot_learns_with_shifted_batches_on_real_omniglot():
    mean, ci = _five_way_one_shot_on_real_omniglot(
        lambda conv4: SimpleShotClassifier(max_epochs=5, augment="shift", module=conv4,
                                           random_state=0),
        groups_in_fit=False)
    assert mean > 0.5, (mean, ci)  # chance 0.2
