"""tta="shift": test-time shift averaging of the metric learners' embeddings."""

import pickle
import time

import numpy as np
import pytest
import torch
from sklearn.base import clone

from sktransfer.meta import MatchingClassifier, PrototypicalClassifier, R2D2Classifier
from sktransfer.meta._metric_learner import shift_averaged, shift_image


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


def test_costs_about_nine_embeddings(fitted):
    proto, X, y = fitted
    shifted = pickle.loads(pickle.dumps(proto)).set_params(tta="shift")
    Xq = np.repeat(X, 4, axis=0)
    proto.predict(Xq[:10])
    shifted.predict(Xq[:10])

    def best_of(est, n=3):
        times = []
        for _ in range(n):
            start = time.perf_counter()
            est.predict(Xq)
            times.append(time.perf_counter() - start)
        return min(times)

    ratio = best_of(shifted) / best_of(proto)
    assert 3 < ratio < 30, ratio


def test_two_dimensional_input_is_a_clear_error():
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 5).astype(np.float32), np.repeat(np.arange(3), 20)
    with pytest.raises(ValueError, match="tta='shift'.*C, H, W"):
        PrototypicalClassifier(max_epochs=1, episodes_per_epoch=2, tta="shift").fit(X, y)
    proto = PrototypicalClassifier(max_epochs=1, episodes_per_epoch=2).fit(X, y)
    proto.set_params(tta="shift")
    with pytest.raises(ValueError, match="tta='shift'"):
        proto.predict(X)
    with pytest.raises(ValueError, match="tta='shift'"):
        proto.adapt(X, y)


def test_bad_tta_value():
    X, y = _images()
    with pytest.raises(ValueError, match="tta"):
        PrototypicalClassifier(max_epochs=1, tta="flip").fit(X, y)
