"""The metric, baseline, Reptile and black-box few-shot classifiers."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from sktransfer.meta import (
    BaselineFewShotClassifier,
    BlackBoxMetaClassifier,
    MatchingClassifier,
    PrototypicalClassifier,
    RelationClassifier,
    ReptileClassifier,
)
from sktransfer.metrics import few_shot_score
from tests._data import needs_omniglot


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


FAST = {
    PrototypicalClassifier: dict(max_epochs=2, episodes_per_epoch=100),
    MatchingClassifier: dict(max_epochs=2, episodes_per_epoch=100),
    RelationClassifier: dict(max_epochs=3, episodes_per_epoch=100),
    BlackBoxMetaClassifier: dict(max_epochs=3, episodes_per_epoch=100),
    BaselineFewShotClassifier: dict(max_epochs=10),
    ReptileClassifier: dict(n_way=5, max_epochs=3, inner_lr=0.3),
}
# 5-way 1-shot accuracy on the five digits unseen in fit; chance is 0.2.
MIN_ACCURACY = {
    PrototypicalClassifier: 0.5,
    MatchingClassifier: 0.4,
    RelationClassifier: 0.4,
    BlackBoxMetaClassifier: 0.35,
    BaselineFewShotClassifier: 0.45,
    ReptileClassifier: 0.45,
}


@pytest.mark.parametrize("cls", list(FAST), ids=lambda c: c.__name__)
def test_learns_unseen_classes_and_keeps_meta_model(cls, digits):
    X, y = digits
    est = cls(random_state=0, **FAST[cls]).fit(X[y < 5], y[y < 5])
    assert est.score(X[y < 5], y[y < 5]) > 0.7
    mean, _ = few_shot_score(est, X[y >= 5], y[y >= 5], n_way=5, k_shot=1, n_query=5,
                             n_episodes=30, random_state=0)
    assert mean > MIN_ACCURACY[cls], mean
    before = {k: v.clone() for k, v in est.net_.module_.state_dict().items()}
    idx = np.concatenate([np.flatnonzero(y == c)[:3] for c in range(5, 10)])
    new = est.adapt(X[idx], y[idx].astype(str))
    assert new.classes_.tolist() == ["5", "6", "7", "8", "9"]
    assert new.predict(X[:4]).dtype == new.classes_.dtype
    np.testing.assert_allclose(new.predict_proba(X[:4]).sum(1), 1, rtol=1e-5)
    after = est.net_.module_.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert est.classes_.tolist() == [0, 1, 2, 3, 4]
    restored = pickle.loads(pickle.dumps(new))
    np.testing.assert_array_equal(restored.predict(X[:20]), new.predict(X[:20]))


@pytest.mark.parametrize("cls", [PrototypicalClassifier, BaselineFewShotClassifier],
                         ids=lambda c: c.__name__)
def test_same_seed_gives_the_same_fit_and_adaptation(cls, digits):
    X, y = digits
    kw = dict(FAST[cls], max_epochs=1)
    a = cls(random_state=3, **kw).fit(X[y < 5], y[y < 5])
    b = cls(random_state=3, **kw).fit(X[y < 5], y[y < 5])
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    idx = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(5, 8)])
    np.testing.assert_array_equal(a.adapt(X[idx], y[idx]).predict_proba(X[:30]),
                                  b.adapt(X[idx], y[idx]).predict_proba(X[:30]))


def test_metric_learners_take_any_number_of_classes(digits):
    X, y = digits
    proto = PrototypicalClassifier(n_way=3, random_state=0, **FAST[PrototypicalClassifier])
    proto.fit(X[y < 5], y[y < 5])
    idx = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(5, 10)])
    assert proto.adapt(X[idx], y[idx]).classes_.tolist() == [5, 6, 7, 8, 9]
    with pytest.raises(ValueError, match="at least 2 classes"):
        proto.adapt(X[:3], [1, 1, 1])


def test_baseline_cosine_head_keeps_its_scale_and_bad_params_raise(digits):
    X, y = digits
    cos = BaselineFewShotClassifier(head="cosine", max_epochs=3, random_state=0)
    cos.fit(X[y < 5], y[y < 5])
    assert "scale" in cos.adapted_state_
    with pytest.raises(ValueError, match="The 'head' parameter of BaselineFewShotClassifier "
                       "must be a str among"):
        BaselineFewShotClassifier(head="mlp").fit(X[y < 5], y[y < 5])
    with pytest.raises(ValueError, match=r"The 'adapt_steps' parameter of "
                       r"BaselineFewShotClassifier must be an int in the range \[0, inf\)"):
        cos.set_params(adapt_steps=-1).adapt(X[:10], y[:10])


def test_blackbox_reads_at_most_n_slots_classes_and_checks_d_model(digits):
    X, y = digits
    bb = BlackBoxMetaClassifier(n_way=3, d_model=16, n_layers=1, max_epochs=1,
                                episodes_per_epoch=10, random_state=0)
    bb.fit(X[y < 4], y[y < 4])
    assert bb.n_slots_ == 4
    with pytest.raises(ValueError, match="reads at most n_slots_=4"):
        bb.adapt(X[y >= 4][:50], y[y >= 4][:50])
    with pytest.raises(ValueError, match="divisible by n_heads"):
        BlackBoxMetaClassifier(d_model=10, n_heads=4).fit(X[y < 4], y[y < 4])


def test_reptile_needs_n_way_classes(digits):
    X, y = digits
    rep = ReptileClassifier(n_way=3, max_epochs=1, episodes_per_epoch=8, random_state=0)
    rep.fit(X[y < 5], y[y < 5])
    with pytest.raises(ValueError, match="meta-trained for n_way=3"):
        rep.adapt(X[:40], y[:40] % 4)


def test_groups_restrict_episodes_to_one_group(digits):
    X, y = digits
    mask = y < 5
    groups = (y[mask] >= 3).astype(int)  # "alphabets" {0, 1, 2} and {3, 4}
    proto = PrototypicalClassifier(n_way=4, max_epochs=1, episodes_per_epoch=20,
                                   random_state=0)
    with pytest.raises(ValueError, match="no group has n_way=4"):
        proto.fit(X[mask], y[mask], groups=groups)
    proto.set_params(n_way=3).fit(X[mask], y[mask], groups=groups)
    assert proto.n_way_ == 3


def _episodes_in_epoch(est):
    return len(est.net_.history[0]["batches"])


@pytest.mark.parametrize("cls", [PrototypicalClassifier, MatchingClassifier])
def test_image_default_way_and_epoch_length(cls):
    """ProtoNet and MatchingNet train up to 20-way by default, 500 // n_way
    episodes per epoch, so an epoch draws about 500 classes whatever the way."""
    rng = np.random.RandomState(0)
    X = rng.rand(30 * 4, 6).astype(np.float32)
    y = np.repeat(np.arange(30), 4)
    est = cls(max_epochs=1, random_state=0).fit(X, y)
    assert est.n_way_ == 20 and _episodes_in_epoch(est) == 25
    # fewer classes: all of them, and more episodes
    few = cls(max_epochs=1, random_state=0).fit(X[y < 10], y[y < 10])
    assert few.n_way_ == 10 and _episodes_in_epoch(few) == 50
    # an explicit episodes_per_epoch is kept
    est.set_params(episodes_per_epoch=7).fit(X, y)
    assert _episodes_in_epoch(est) == 7
    # with groups: at most the classes of the largest group
    groups = np.where(y < 12, 0, 1)            # 12 and 18 classes
    grouped = cls(max_epochs=1, random_state=0).fit(X, y, groups=groups)
    assert grouped.n_way_ == 18 and _episodes_in_epoch(grouped) == 27


def test_default_way_counts_only_classes_with_a_query():
    """n_way=None leaves out classes too small for k_shot support plus a query."""
    rng = np.random.RandomState(0)
    X = rng.rand(60, 4).astype(np.float32)
    y = np.r_[np.repeat(np.arange(8), 6), np.arange(8, 20)]   # 12 one-example classes
    proto = PrototypicalClassifier(max_epochs=1, episodes_per_epoch=2, random_state=0)
    assert proto.fit(X, y).n_way_ == 8
    # the other learners keep their five-way default
    reptile = ReptileClassifier(max_epochs=1, episodes_per_epoch=2, random_state=0)
    assert reptile.fit(X, y).n_way_ == 5
    with pytest.raises(ValueError, match="at least 2 classes with more than k_shot=1"):
        proto.fit(X[:2], [0, 1])


def test_episodes_per_epoch_none_only_where_documented():
    X = np.random.RandomState(0).rand(40, 4).astype(np.float32)
    y = np.repeat(np.arange(4), 10)
    with pytest.raises(ValueError, match="episodes_per_epoch"):
        ReptileClassifier(episodes_per_epoch=None).fit(X, y)




@needs_omniglot
def test_protonet_on_real_omniglot():
    from sktransfer.datasets import load_omniglot

    data = load_omniglot("background_small1")
    X, y, groups = data.data, data.target, data.groups
    alphabets = np.unique(groups)
    train = np.isin(groups, alphabets[:4])
    proto = PrototypicalClassifier(n_way=5, k_shot=1, n_query=5, max_epochs=2,
                                   episodes_per_epoch=50,
                                   module=lambda: __import__("sktransfer").modules.Conv4(
                                       hidden_channels=16),
                                   random_state=0)
    proto.fit(X[train], y[train], groups=groups[train])
    mean, ci = few_shot_score(proto, X[~train], y[~train], n_way=5, k_shot=1, n_query=5,
                              n_episodes=30, random_state=0)
    assert mean > 0.5, (mean, ci)  # chance 0.2
