"""The one support/query encoding of the metric learners (ProtoNet, matching networks,
relation networks, the black-box reader)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from sktransfer.meta import (
    BlackBoxMetaClassifier,
    MatchingClassifier,
    PrototypicalClassifier,
    RelationClassifier,
)
from sktransfer.meta._base import PREDICT_CHUNK
from sktransfer.meta._metric_learner import encode_support_query

FAST = dict(max_epochs=1, episodes_per_epoch=5, hidden_layer_sizes=(16,), random_state=0)
LEARNERS = {
    "proto": lambda: PrototypicalClassifier(**FAST),
    "matching": lambda: MatchingClassifier(**FAST),
    "matching_fce": lambda: MatchingClassifier(fce=True, fce_steps=2, **FAST),
    "relation": lambda: RelationClassifier(**FAST),
    "blackbox": lambda: BlackBoxMetaClassifier(d_model=16, n_heads=2, n_layers=1, **FAST),
}


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


def _episode(X, y, n_way=3, k_shot=2, n_query=4):
    s = np.concatenate([np.flatnonzero(y == c)[:k_shot] for c in range(n_way)])
    q = np.concatenate([np.flatnonzero(y == c)[k_shot:k_shot + n_query] for c in range(n_way)])
    return (torch.tensor(X[s]), torch.tensor(y[s]), torch.tensor(X[q]), torch.tensor(y[q]))


def _record_trunk_calls(module):
    calls = []
    handle = module.trunk.register_forward_hook(
        lambda m, inp, out: calls.append((inp[0].shape[0], torch.is_grad_enabled())))
    return calls, handle


@pytest.mark.parametrize("name", LEARNERS)
def test_each_learner_embeds_an_episode_through_the_one_helper(name, digits):
    X, y = digits
    est = LEARNERS[name]().fit(X[y < 5], y[y < 5])
    module = est.net_.module_
    Xs, ys, Xq, yq = _episode(X, y)
    calls, handle = _record_trunk_calls(module)
    try:
        # meta-training: support and query rows in one forward pass, with gradients
        module.meta_step(tuple(t.unsqueeze(0) for t in (Xs, ys, Xq, yq)), backward=False)
        assert calls == [(len(Xs) + len(Xq), True)]
        calls.clear()
        # adapting: the support set alone, without gradients, in chunks
        Xbig = torch.tensor(X[:PREDICT_CHUNK + 3])
        ybig = torch.tensor(y[:PREDICT_CHUNK + 3] % 3)
        state = module.adapt_state(Xbig, ybig, 3)
        assert calls == [(PREDICT_CHUNK, False), (3, False)]
        calls.clear()
        # predicting: the queries alone
        logits = module.predict_logits(state, Xq)
        assert [n for n, _ in calls] == [len(Xq)]
    finally:
        handle.remove()
    assert logits.shape == (len(Xq), 3)
    # the adapted state is the learner's support_state of the embedded support set
    again, fq = encode_support_query(module, Xbig, ybig, Xq, 3)
    assert again.keys() == state.keys()
    torch.testing.assert_close(fq, module.embed_rows(Xq))


@pytest.mark.parametrize("name", ["proto", "matching", "matching_fce", "relation"])
def test_prediction_applies_the_rule_of_meta_training(name, digits):
    """Adapting and predicting encode the episode as meta-training does: the same
    logits (the relation scores on the log scale) up to float rounding."""
    X, y = digits
    module = LEARNERS[name]().fit(X[y < 5], y[y < 5]).net_.module_.eval()
    Xs, ys, Xq, _ = _episode(X, y)
    with torch.no_grad():
        state, fq = encode_support_query(module, Xs, ys, Xq, 3, meta_training=True)
        episode = module.episode_logits(state, fq)
        predicted = module.predict_logits(module.adapt_state(Xs, ys, 3), Xq)
    if name == "relation":
        episode = torch.log(episode.clamp_min(1e-12))
    torch.testing.assert_close(predicted, episode, rtol=1e-4, atol=1e-5)
