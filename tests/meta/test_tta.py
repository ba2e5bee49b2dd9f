"""tta="shift": test-time shift averaging of the few-shot learners' embeddings (the metric
learners and the batch learners Baseline and SimpleShot)."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone

from sktransfer.meta import (
    BaselineFewShotClassifier,
    MatchingClassifier,
    PrototypicalClassifier,
    R2D2Classifier,
    SimpleShotClassifier,
)
from sktransfer.meta._test_time import SHIFTS, shift_averaged, shift_image


def _images(n_classes=6, per_class=12, size=12, seed=0):
    """Classes of noisy random blobs on a (1, size, size) grid."""
    rng = np.random.RandomState(seed)
    protos = (rng.rand(n_classes, 1, size, size) > 0.7).astype(np.float32)
    X = np.repeat(protos, per_class, axis=0)
    X = X + 0.3 * rng.randn(*X.shape).astype(np.float32)
    y = np.repeat(np.arange(n_classes), per_class)
    return X.astype(np.float32), y


def test_shift_image_moves_by_one_pixel_zero_padded():
    X = torch.arange(9.0).reshape(1, 1, 3, 3)
    down_right = shift_image(X, 1, 1)
    np.testing.assert_array_equal(down_right[0, 0].numpy(),
                                  [[0, 0, 0], [0, 0, 1], [0, 3, 4]])
    up_left = shift_image(X, -1, -1)
    np.testing.assert_array_equal(up_left[0, 0].numpy(),
                                  [[4, 5, 0], [7, 8, 0], [0, 0, 0]])
    np.testing.assert_array_equal(shift_image(X, 0, 0).numpy(), X.numpy())


def test_shift_averaged_needs_images():
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        shift_averaged(lambda x: x, torch.zeros(3, 4))


@pytest.fixture(scope="module")
def fitted():
    X, y = _images()
    proto = PrototypicalClassifier(max_epochs=2, episodes_per_epoch=20, n_way=4,
                                   random_state=0).fit(X[y < 4], y[y < 4])
    return proto, X, y


def test_embedding_is_the_mean_of_the_nine_shifted_embeddings(fitted):
    proto, X, y = fitted
    support, ys = X[y >= 4], y[y >= 4]
    plain = proto.adapt(support, ys)
    shifted = clone(proto).set_params(tta="shift")
    shifted.net_ = proto.net_                       # the same meta-model
    shifted.__dict__.update({k: v for k, v in vars(proto).items() if k.endswith("_")})
    adapted = shifted.adapt(support, ys)
    # by hand: embed every shift of the support images and average
    module = proto.net_.module_
    module.eval()
    Xs = torch.as_tensor(support)
    with torch.no_grad():
        by_hand = torch.stack([module.embed_rows(torch.nn.functional.pad(Xs, (1, 1, 1, 1))[
            ..., 1 - dy:13 - dy, 1 - dx:13 - dx]) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
        by_hand = by_hand.mean(0)
        ys_enc = torch.as_tensor(np.unique(ys, return_inverse=True)[1])
        protos = torch.stack([by_hand[ys_enc == c].mean(0) for c in range(2)])
    np.testing.assert_allclose(adapted.adapted_state_["prototypes"].numpy(), protos.numpy(),
                               rtol=1e-5, atol=1e-5)
    assert not np.allclose(plain.adapted_state_["prototypes"].numpy(), protos.numpy())
    # the queries too: logits are -squared distances to the prototypes
    Xq = torch.as_tensor(support[:5])
    with torch.no_grad():
        fq = torch.stack([module.embed_rows(shift_image(Xq, dy, dx))
                          for dy in (-1, 0, 1) for dx in (-1, 0, 1)]).mean(0)
    expected = torch.softmax(-torch.cdist(fq, protos).pow(2), 1).numpy()
    np.testing.assert_allclose(adapted.predict_proba(support[:5]), expected, rtol=1e-4,
                               atol=1e-5)
    # the module is left as it was: tta is set per call
    assert module.tta is None
    np.testing.assert_allclose(proto.adapt(support, ys).adapted_state_["prototypes"],
                               plain.adapted_state_["prototypes"])


@pytest.mark.parametrize("Estimator", [PrototypicalClassifier, MatchingClassifier,
                                       R2D2Classifier])
def test_predicts_above_chance(Estimator):
    X, y = _images()
    est = Estimator(max_epochs=2, episodes_per_epoch=20, n_way=4, tta="shift",
                    random_state=0).fit(X[y < 4], y[y < 4])
    new = est.adapt(X[y >= 4][::2], y[y >= 4][::2])
    assert new.score(X[y >= 4][1::2], y[y >= 4][1::2]) > 0.8     # 2 classes: chance 0.5
    again = pickle.loads(pickle.dumps(new))
    np.testing.assert_array_equal(again.predict(X[:10]), new.predict(X[:10]))


def _count_embeds(module):
    """Wrap ``module.embed`` to count the rows it embeds; returns the counter list."""
    rows, embed = [], module.embed

    def counting(X):
        rows.append(X.shape[0])
        return embed(X)
    module.embed = counting
    return rows


def test_costs_nine_embeddings_per_row(fitted):
    proto, X, y = fitted
    shifted = pickle.loads(pickle.dumps(proto)).set_params(tta="shift")
    plain_rows = _count_embeds(proto.net_.module_)
    shifted_rows = _count_embeds(shifted.net_.module_)
    np.testing.assert_allclose(shifted.predict_proba(X[:10]).sum(1), 1, rtol=1e-5)
    proto.predict(X[:10])
    assert sum(plain_rows) == 10
    assert sum(shifted_rows) == 9 * 10 and len(shifted_rows) == len(SHIFTS)
    del proto.net_.module_.embed                     # the fixture's module, as it was


_SMALL_FITS = {
    PrototypicalClassifier: dict(max_epochs=1, episodes_per_epoch=2),
    BaselineFewShotClassifier: dict(max_epochs=1, adapt_steps=2),
    SimpleShotClassifier: dict(max_epochs=1),
}


@pytest.mark.parametrize("Estimator", list(_SMALL_FITS))
def test_two_dimensional_input_is_a_clear_error(Estimator):
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 5).astype(np.float32), np.repeat(np.arange(3), 20)
    with pytest.raises(ValueError, match="tta='shift'.*C, H, W"):
        Estimator(tta="shift", **_SMALL_FITS[Estimator]).fit(X, y)
    est = Estimator(**_SMALL_FITS[Estimator]).fit(X, y)
    est.set_params(tta="shift")
    with pytest.raises(ValueError, match="tta='shift'"):
        est.predict(X)
    with pytest.raises(ValueError, match="tta='shift'"):
        est.adapt(X, y)


@pytest.mark.parametrize("Estimator", list(_SMALL_FITS))
def test_bad_tta_value(Estimator):
    X, y = _images()
    with pytest.raises(ValueError, match="tta"):
        Estimator(tta="flip", **_SMALL_FITS[Estimator]).fit(X, y)


# ------------------------------------------------------- the batch learners


@pytest.fixture(scope="module")
def simple_fitted():
    X, y = _images()
    simple = SimpleShotClassifier(max_epochs=3, batch_size=16, random_state=0).fit(
        X[y < 4], y[y < 4])
    return simple, X, y


def _by_hand_shift_mean(module, X):
    """The mean of ``module.embed`` over the 9 shifts of ``X``, written out."""
    module.eval()
    with torch.no_grad():
        return torch.stack([module.embed(shift_image(torch.as_tensor(X), dy, dx))
                            for dy, dx in SHIFTS]).mean(0)


def test_simpleshot_centroids_and_queries_are_shift_averaged(simple_fitted):
    simple, X, y = simple_fitted
    support, ys = X[y >= 4][::2], y[y >= 4][::2]
    queries = X[y >= 4][1::2]
    shifted = pickle.loads(pickle.dumps(simple)).set_params(tta="shift")
    adapted = shifted.adapt(support, ys)
    module = simple.net_.module_
    mean = module.feature_mean

    def transform(f):
        return torch.nn.functional.normalize(f - mean, dim=1)

    zs = transform(_by_hand_shift_mean(module, support))
    ys_enc = torch.as_tensor(np.unique(ys, return_inverse=True)[1])
    centroids = torch.stack([zs[ys_enc == c].mean(0) for c in range(2)])
    np.testing.assert_allclose(adapted.adapted_state_["centroids"].numpy(),
                               centroids.numpy(), rtol=1e-5, atol=1e-6)
    plain = simple.adapt(support, ys)
    assert not np.allclose(plain.adapted_state_["centroids"].numpy(), centroids.numpy())
    zq = transform(_by_hand_shift_mean(module, queries))
    expected = torch.softmax(-torch.cdist(zq, centroids).pow(2), 1).numpy()
    np.testing.assert_allclose(adapted.predict_proba(queries), expected, rtol=1e-4, atol=1e-5)
    # fit is unchanged: the base-class feature mean is the one of the unshifted rows
    np.testing.assert_array_equal(shifted.feature_mean_, simple.feature_mean_)
    assert shifted.net_.module_.tta is None and module.tta is None


def test_baseline_trains_its_new_head_on_shift_averaged_features(simple_fitted, monkeypatch):
    X, y = _images()
    base = BaselineFewShotClassifier(max_epochs=3, batch_size=16, adapt_steps=20,
                                     random_state=0).fit(X[y < 4], y[y < 4])
    support, ys = X[y >= 4][::2], y[y >= 4][::2]
    module = base.net_.module_
    seen = []
    original = type(module).adapt_state

    def spy(self, Xs, ys_, n_classes, **options):
        seen.append(self.embed_rows(Xs))
        return original(self, Xs, ys_, n_classes, **options)
    monkeypatch.setattr(type(module), "adapt_state", spy)
    adapted = base.set_params(tta="shift").adapt(support, ys)
    np.testing.assert_allclose(seen[0].detach().numpy(),
                               _by_hand_shift_mean(module, support).numpy(),
                               rtol=1e-5, atol=1e-6)
    # predict: the new head on the shift-averaged features of the queries
    queries = X[y >= 4][1::2]
    state = adapted.adapted_state_
    logits = _by_hand_shift_mean(module, queries) @ state["weight"].T + state["bias"]
    np.testing.assert_allclose(adapted.predict_proba(queries),
                               torch.softmax(logits, 1).numpy(), rtol=1e-4, atol=1e-5)
    assert module.tta is None


@pytest.mark.parametrize("Estimator", [BaselineFewShotClassifier, SimpleShotClassifier])
def test_batch_learners_with_tta_predict_above_chance(Estimator):
    X, y = _images()
    est = Estimator(max_epochs=10, batch_size=16, tta="shift", random_state=0).fit(
        X[y < 4], y[y < 4])
    assert est.score(X[y < 4], y[y < 4]) > 0.7                      # 4 classes: chance 0.25
    new = est.adapt(X[y >= 4][::2], y[y >= 4][::2])
    assert new.score(X[y >= 4][1::2], y[y >= 4][1::2]) > 0.8        # 2 classes: chance 0.5
    again = pickle.loads(pickle.dumps(new))
    np.testing.assert_array_equal(again.predict(X[:10]), new.predict(X[:10]))


def test_baseline_tta_with_a_finetuned_trunk_still_trains_the_trunk():
    from sktransfer.meta import TransductiveFineTuning

    X, y = _images()
    base = BaselineFewShotClassifier(max_epochs=10, batch_size=16, adapt_steps=30,
                                     adaptation=TransductiveFineTuning(finetune_backbone=True),
                                     tta="shift", random_state=0).fit(X[y < 4], y[y < 4])
    new = base.adapt(X[y >= 4][::2], y[y >= 4][::2], X_query=X[y >= 4][1::2])
    trunk = {k[len("trunk."):]: v for k, v in new.adapted_state_.items()
             if k.startswith("trunk.")}
    assert trunk
    before = dict(base.net_.module_.trunk.named_parameters())
    assert any(not torch.allclose(v, before[k].detach()) for k, v in trunk.items())
    assert new.score(X[y >= 4][1::2], y[y >= 4][1::2]) > 0.8
