"""Adaptation strategies of BaselineFewShotClassifier: fine-tuning, transductive
fine-tuning and TIM, and the X_query argument of adapt."""


import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from sktransfer.meta import TIM, Adaptation, BaselineFewShotClassifier, TransductiveFineTuning
from sktransfer.meta._adaptation import marginal_entropy, mean_entropy
from tests._data import needs_omniglot


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    return BaselineFewShotClassifier(head="cosine", max_epochs=5, random_state=0).fit(
        X[y < 5], y[y < 5])


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_tim_loss_terms_match_a_hand_computation():
    rng = np.random.RandomState(0)
    s, ys, q = rng.randn(6, 3), np.array([0, 0, 1, 1, 2, 2]), rng.randn(8, 3)
    ps, pq = _softmax(s), _softmax(q)
    ce = -np.mean(np.log(ps[np.arange(6), ys]))
    cond = -np.mean((pq * np.log(pq)).sum(1))
    pbar = pq.mean(0)
    marg = -(pbar * np.log(pbar)).sum()
    S, Y, Q = torch.as_tensor(s), torch.as_tensor(ys), torch.as_tensor(q)
    assert float(mean_entropy(Q)) == pytest.approx(cond, rel=1e-12)
    assert float(marginal_entropy(Q)) == pytest.approx(marg, rel=1e-12)
    tim = TIM(ce_weight=0.3, marginal_weight=0.7, conditional_weight=0.2)
    assert float(tim.loss(S, Y, Q)) == pytest.approx(0.3 * ce - 0.7 * marg + 0.2 * cond,
                                                     rel=1e-12)
    ft = TransductiveFineTuning(entropy_weight=0.5)
    assert float(ft.loss(S, Y, Q)) == pytest.approx(ce + 0.5 * cond, rel=1e-12)
    assert float(Adaptation().loss(S, Y, Q)) == pytest.approx(ce, rel=1e-12)


def test_transductive_heads_start_from_the_prototypes():
    feats = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([0, 0, 1])
    state = {"weight": torch.zeros(2, 2), "scale": torch.tensor(10.0)}
    for strategy in (TIM(), TransductiveFineTuning()):
        head = strategy.init_head(state, feats, y, 2, "cosine")
        torch.testing.assert_close(head["weight"], torch.tensor([[2.0, 0.0], [0.0, 2.0]]))
    assert Adaptation().init_head(state, feats, y, 2, "cosine") is state


def test_default_adaptation_is_unchanged(fitted, digits):
    X, y = digits
    Xs, ys, Xq = X[y >= 5][:25], y[y >= 5][:25], X[y >= 5][25:]
    plain = fitted.adapt(Xs, ys)
    assert fitted.adaptation == "finetune"
    # an inductive adaptation ignores the query set
    np.testing.assert_array_equal(plain.predict_proba(Xq),
                                  fitted.adapt(Xs, ys, X_query=Xq).predict_proba(Xq))
    explicit = fitted.set_params(adaptation=Adaptation()).adapt(Xs, ys)
    np.testing.assert_array_equal(plain.predict_proba(Xq), explicit.predict_proba(Xq))
    fitted.set_params(adaptation="finetune")


@pytest.mark.parametrize("adaptation", ["transductive", "tim"])
def test_transductive_methods_need_the_query_set(fitted, digits, adaptation):
    X, y = digits
    est = fitted.set_params(adaptation=adaptation)
    with pytest.raises(ValueError, match="X_query=X_query"):
        est.adapt(X[y >= 5][:25], y[y >= 5][:25])
    with pytest.raises(ValueError, match="64 features"):
        est.adapt(X[y >= 5][:25], y[y >= 5][:25], X_query=X[:5, :10])
    fitted.set_params(adaptation="finetune")


def test_the_query_set_changes_the_head(fitted, digits):
    X, y = digits
    Xs, ys, Xq = X[y >= 5][:25], y[y >= 5][:25], X[y >= 5][25:]
    est = fitted.set_params(adaptation="tim")
    a = est.adapt(Xs, ys, X_query=Xq[:100]).adapted_state_["weight"]
    b = est.adapt(Xs, ys, X_query=Xq[100:]).adapted_state_["weight"]
    assert not torch.allclose(a, b)
    fitted.set_params(adaptation="finetune")


def test_backbone_fine_tuning_keeps_its_own_trunk(fitted, digits):
    X, y = digits
    Xs, ys, Xq = X[y >= 5][:25], y[y >= 5][:25], X[y >= 5][25:]
    before = {k: v.detach().clone() for k, v in fitted.net_.module_.trunk.state_dict().items()}
    est = fitted.set_params(adaptation=TransductiveFineTuning(finetune_backbone=True),
                            adapt_steps=20)
    adapted = est.adapt(Xs, ys, X_query=Xq)
    trunk = {k[6:]: v for k, v in adapted.adapted_state_.items() if k.startswith("trunk.")}
    assert set(trunk) == {n for n, _ in fitted.net_.module_.trunk.named_parameters()}
    assert any(not torch.equal(trunk[k], before[k]) for k in trunk)
    for k, v in fitted.net_.module_.trunk.state_dict().items():  # the meta-model is unchanged
        assert torch.equal(v, before[k])
    assert adapted.predict(Xq).shape == (len(Xq),)
    fitted.set_params(adaptation="finetune", adapt_steps=100)


def _transductive_accuracy(est, X, y, n_way, k_shot, n_episodes=15):
    from sktransfer.meta import EpisodeSampler

    sampler = EpisodeSampler(y, n_way, k_shot, 10, random_state=0)
    accs = []
    for _ in range(n_episodes):
        ep = sampler.sample()
        Xq = X[ep.query_index]
        adapted = est.adapt(X[ep.support_index], y[ep.support_index], X_query=Xq)
        accs.append(adapted.score(Xq, y[ep.query_index]))
    return float(np.mean(accs))


@pytest.mark.parametrize("adaptation", ["transductive", "tim"])
def test_learns_new_digits(fitted, digits, adaptation):
    X, y = digits
    acc = _transductive_accuracy(fitted.set_params(adaptation=adaptation), X[y >= 5],
                                 y[y >= 5], n_way=5, k_shot=5, n_episodes=8)
    fitted.set_params(adaptation="finetune")
    assert acc > 0.6, acc  # chance 0.2


def test_bad_parameters(fitted, digits):
    X, y = digits
    with pytest.raises(ValueError, match="adaptation"):
        BaselineFewShotClassifier(adaptation="dhillon").fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="The 'ce_weight' parameter of TIM"):
        fitted.set_params(adaptation=TIM(ce_weight=-1.0)).adapt(X[:30], y[:30], X_query=X[:5])
    with pytest.raises(ValueError, match="entropy_weight"):
        fitted.set_params(adaptation=TransductiveFineTuning(entropy_weight=np.nan)).adapt(
            X[:30], y[:30], X_query=X[:5])
    fitted.set_params(adaptation="finetune")
    # searchable as adaptation__<name>
    est = BaselineFewShotClassifier(adaptation=TIM()).set_params(adaptation__ce_weight=0.5)
    assert est.adaptation.ce_weight == 0.5




@needs_omniglot
def test_tim_on_real_omniglot():
    from sktransfer.datasets import load_omniglot
    from sktransfer.modules import Conv4

    data = load_omniglot("background_small1")
    X, y, groups = data.data, data.target, data.groups
    train = np.isin(groups, np.unique(groups)[:4])
    est = BaselineFewShotClassifier(head="cosine", adaptation="tim", max_epochs=3,
                                    module=lambda: Conv4(hidden_channels=16),
                                    random_state=0).fit(X[train], y[train])
    acc = _transductive_accuracy(est, X[~train], y[~train], n_way=5, k_shot=1)
    assert acc > 0.5, acc  # chance 0.2
