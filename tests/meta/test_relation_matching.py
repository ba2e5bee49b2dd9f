"""RelationClassifier's convolutional relation module and MatchingClassifier's full
context embeddings."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

from sktransfer.meta import MatchingClassifier, RelationClassifier
from sktransfer.metrics import few_shot_score
from tests._data import needs_omniglot


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


@pytest.fixture(scope="module")
def digit_images(digits):
    X, y = digits
    return X.reshape(-1, 1, 8, 8), y


def _support(X, y, classes, k):
    idx = np.concatenate([np.flatnonzero(y == c)[:k] for c in classes])
    return X[idx], y[idx]


def _relation_input_shapes(est):
    """Record the shapes of the class and query maps the relation module scores."""
    shapes = []
    handle = est.net_.module_.relation.register_forward_hook(
        lambda m, inp, out: shapes.append(tuple(tuple(t.shape) for t in inp)))
    return shapes, handle


# ----------------------------------------------------------------- relation networks
def test_conv_relation_scores_feature_maps_and_each_row_alone(digit_images):
    X, y = digit_images
    rel = RelationClassifier(max_epochs=2, episodes_per_epoch=60, random_state=0)
    rel.fit(X[y < 5], y[y < 5])
    assert rel.relation_ == "conv"
    module = rel.net_.module_
    # the class's and the query's maps concatenated: 128 input channels
    assert module.relation.pair_conv.weight.shape == (64, 128, 3, 3)
    assert module.relation.fc[-1].in_features == 8  # the paper's hidden width by default
    # 8x8 images: two 2x2 pools give 64x2x2 maps; the relation module sees 128 channels
    assert module.embed(torch.tensor(X[:3])).shape == (3, 64, 2, 2)
    new = rel.adapt(*_support(X, y, range(5, 10), 3))
    assert new.adapted_state_["prototypes"].shape == (5, 64, 2, 2)
    shapes, handle = _relation_input_shapes(new)
    try:
        proba = new.predict_proba(X[:40])
    finally:
        handle.remove()
    assert shapes and all(p[1:] == q[1:] == (64, 2, 2) for p, q in shapes), shapes
    # a row's scores do not depend on the rest of the batch
    by_rows = np.vstack([new.predict_proba(X[i:min(i + 7, 40)]) for i in range(0, 40, 7)])
    np.testing.assert_array_equal(proba, by_rows)
    mean, _ = few_shot_score(rel, X[y >= 5], y[y >= 5], n_way=5, k_shot=1, n_query=5,
                             n_episodes=20, random_state=0)
    assert mean > 0.35, mean  # chance 0.2


@needs_omniglot
def test_conv_relation_learns_on_real_omniglot():
    from sktransfer.datasets import load_omniglot

    data = load_omniglot("background_small1")
    X, y, groups = data.data, data.target, data.groups
    train = np.isin(groups, np.unique(groups)[:4])
    rel = RelationClassifier(n_way=5, k_shot=1, n_query=5, max_epochs=1,
                             episodes_per_epoch=80, random_state=0)
    rel.fit(X[train], y[train])
    assert rel.relation_ == "conv"
    # 28x28 images: 64x7x7 feature maps, concatenated to 128 channels
    assert rel.adapted_state_["prototypes"].shape[1:] == (64, 7, 7)
    shapes, handle = _relation_input_shapes(rel)
    try:
        mean, ci = few_shot_score(rel, X[~train], y[~train], n_way=5, k_shot=1, n_query=5,
                                  n_episodes=30, random_state=0)
    finally:
        handle.remove()
    assert shapes and all(p[1:] == q[1:] == (64, 7, 7) for p, q in shapes), shapes[:3]
    assert mean > 0.4, (mean, ci)  # chance 0.2, on characters never seen in fit


def test_relation_auto_follows_the_trunk(digits, digit_images):
    X, y = digits
    Xi, _ = digit_images
    kw = dict(max_epochs=1, episodes_per_epoch=5, random_state=0)
    assert RelationClassifier(**kw).fit(X, y).relation_ == "mlp"
    mlp_images = RelationClassifier(relation="mlp", **kw).fit(Xi, y)
    assert mlp_images.relation_ == "mlp"
    assert isinstance(mlp_images.net_.module_.relation[0], nn.Linear)

    def maps():  # a user module that keeps feature maps
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())

    user = RelationClassifier(module=maps, relation_hidden=5, **kw).fit(Xi, y)
    assert user.relation_ == "conv"
    assert user.net_.module_.relation.fc[-1].in_features == 5
    assert user.predict(Xi[:5]).shape == (5,)
    flat = RelationClassifier(module=lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 8)),
                              **kw).fit(Xi, y)
    assert flat.relation_ == "mlp"


def test_conv_relation_is_a_conv_of_the_concatenated_maps():
    from sktransfer.meta._relation import ConvRelation

    torch.manual_seed(0)
    relation = ConvRelation((4, 6, 6), hidden=3).double().eval()
    protos, queries = torch.randn(3, 4, 6, 6).double(), torch.randn(5, 4, 6, 6).double()
    pairs = torch.cat([protos.unsqueeze(0).expand(5, -1, -1, -1, -1),
                       queries.unsqueeze(1).expand(-1, 3, -1, -1, -1)], dim=2).flatten(0, 1)
    first = relation.pair_conv(pairs)  # an ordinary convolution of the 8-channel pairs
    expected = relation.fc(relation.blocks(first)).reshape(5, 3)
    torch.testing.assert_close(relation(protos, queries), expected)


# ----------------------------------------------------------------- matching networks
def test_fce_learns_and_reads_the_support_set_in_order(digits):
    X, y = digits
    kw = dict(max_epochs=2, episodes_per_epoch=100, random_state=0)
    plain = MatchingClassifier(**kw).fit(X[y < 5], y[y < 5])
    fce = MatchingClassifier(fce=True, fce_steps=3, **kw).fit(X[y < 5], y[y < 5])
    assert plain.net_.module_.fce is None
    assert fce.net_.module_.fce.steps == 3
    assert not np.allclose(plain.predict_proba(X[:50]), fce.predict_proba(X[:50]))
    mean, _ = few_shot_score(fce, X[y >= 5], y[y >= 5], n_way=5, k_shot=1, n_query=5,
                             n_episodes=30, random_state=0)
    assert mean > 0.4, mean  # chance 0.2
    new = fce.adapt(*_support(X, y, range(5, 10), 3))
    proba = new.predict_proba(X[:40])
    by_rows = np.vstack([new.predict_proba(X[i:min(i + 7, 40)]) for i in range(0, 40, 7)])
    np.testing.assert_allclose(proba, by_rows, rtol=0, atol=1e-7)
    # g reads the support set in order: a different order is a different embedding
    Xs, ys = _support(X, y, range(5, 10), 3)
    order = np.random.RandomState(0).permutation(len(ys))
    shuffled = fce.adapt(Xs[order], ys[order])
    assert not np.allclose(shuffled.adapted_state_["support"][np.argsort(order)],
                           new.adapted_state_["support"])


# ------------------------------------------------------------------------ errors
@pytest.mark.parametrize("cls, params, name", [
    (RelationClassifier, dict(relation="graph"), "relation"),
    (RelationClassifier, dict(relation=None), "relation"),
    (RelationClassifier, dict(relation_hidden=0), "relation_hidden"),
    (MatchingClassifier, dict(fce="yes"), "fce"),
    (MatchingClassifier, dict(fce=True, fce_steps=0), "fce_steps"),
])
def test_invalid_relation_and_fce_params_raise(cls, params, name, digits):
    X, y = digits
    with pytest.raises(ValueError, match=name):
        cls(max_epochs=1, episodes_per_epoch=2, **params).fit(X[:100], y[:100])


def test_conv_relation_needs_feature_maps_and_fit_is_atomic(digits, digit_images):
    X, y = digits
    rel = RelationClassifier(max_epochs=1, episodes_per_epoch=2, random_state=0)
    with pytest.raises(ValueError, match="relation='conv'"):
        clone(rel).set_params(relation="conv").fit(X[:100], y[:100])
    rel.fit(X[:100], y[:100])
    before = rel.predict_proba(X[:10])
    with pytest.raises(ValueError, match="relation='conv'"):
        rel.set_params(relation="conv").fit(X[:100], y[:100])
    assert rel.relation_ == "mlp"
    np.testing.assert_array_equal(rel.predict_proba(X[:10]), before)


# ------------------------------------------------- clone, pickle, reproducibility
@pytest.mark.parametrize("make", [
    lambda: RelationClassifier(relation="conv", max_epochs=1, episodes_per_epoch=20,
                               random_state=5),
    lambda: MatchingClassifier(fce=True, fce_steps=2, max_epochs=1, episodes_per_epoch=20,
                               random_state=5),
], ids=["relation-conv", "matching-fce"])
def test_clone_pickle_and_seed_reproduce_fit_and_adapt(make, digit_images):
    X, y = digit_images
    est = make()
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    a = est.fit(X[y < 5], y[y < 5])
    b = copy.fit(X[y < 5], y[y < 5])
    np.testing.assert_array_equal(a.predict_proba(X[:60]), b.predict_proba(X[:60]))
    Xs, ys = _support(X, y, range(5, 10), 2)
    new = a.adapt(Xs, ys)
    np.testing.assert_array_equal(new.predict_proba(X[:30]), b.adapt(Xs, ys).predict_proba(X[:30]))
    restored = pickle.loads(pickle.dumps(new))
    np.testing.assert_array_equal(restored.predict_proba(X[:30]), new.predict_proba(X[:30]))
    other = clone(est).set_params(random_state=6).fit(X[y < 5], y[y < 5])
    assert not np.array_equal(other.predict_proba(X[:60]), a.predict_proba(X[:60]))


# scikit-learn's checks on the new option (2-D X: the conv relation needs images)
@parametrize_with_checks([MatchingClassifier(fce=True, fce_steps=2, hidden_layer_sizes=(16,),
                                             max_epochs=2, episodes_per_epoch=20, lr=0.01,
                                             random_state=0)])
def test_sklearn_compatible_fce(estimator, check):
    check(estimator)
