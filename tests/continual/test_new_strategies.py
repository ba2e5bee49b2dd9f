"""DER, DER++, ER-ACE, GDumb, iCaRL, MAS, GEM and the scenario warning."""

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn
from torch.nn import functional as F

from sktransfer.base import MASK_VALUE
from sktransfer.continual import (
    DER,
    ERACE,
    EWC,
    GEM,
    MAS,
    STRATEGIES,
    ContinualClassifier,
    DERPlusPlus,
    GDumb,
    ICaRL,
    LwF,
    Replay,
    ReservoirBuffer,
    SynapticIntelligence,
    gem_projection,
    herding_selection,
    mas_importance,
)
from sktransfer.continual._base import ContinualModule
from sktransfer.continual._er_ace import mask_absent_classes
from sktransfer.continual._gdumb import greedy_balanced_update
from sktransfer.datasets import make_split_tasks

FAST = dict(hidden_layer_sizes=(32,), max_epochs=3, lr=0.01, batch_size=32, random_state=0)
NEW = ["der", "derpp", "er_ace", "gdumb", "icarl", "mas", "gem"]


@pytest.fixture(scope="module")
def split():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    idx = np.random.RandomState(0).permutation(len(y))[:900]
    return make_split_tasks(X[idx], y[idx], n_tasks=3,
                            classes=[[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]])


def _quiet(clf, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return clf.fit(*args, **kwargs)


def test_names_are_registered():
    classes = {"der": DER, "derpp": DERPlusPlus, "er_ace": ERACE, "gdumb": GDumb,
               "icarl": ICaRL, "mas": MAS, "gem": GEM}
    for name, cls in classes.items():
        assert STRATEGIES[name] is cls
        assert ContinualClassifier(strategy=name)._get_strategies()[0].__class__ is cls


@pytest.mark.parametrize("scenario", ["task", "domain", "class"])
@pytest.mark.parametrize("strategy", NEW)
def test_each_runs_in_every_scenario_and_pickles(split, strategy, scenario):
    X, y, t = split
    if scenario == "domain":
        X, y, t = make_split_tasks(X, y, classes=[[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]],
                                   relabel=True)
    clf = _quiet(ContinualClassifier(strategy=strategy, scenario=scenario, **FAST),
                 X, y, task_ids=t)
    tid = 2 if scenario == "task" else None
    last = t == 2
    # chance 0.25; MAS's penalty slows the later tasks down the most
    assert clf.score(X[last], y[last], task_ids=tid) > (0.35 if strategy == "mas" else 0.45)
    kw = {"task_ids": t} if scenario == "task" else {}
    proba = clf.predict_proba(X[:7], task_ids=t[:7] if scenario == "task" else None)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict(X, **kw), clf.predict(X, **kw))


# ------------------------------------------------------------------ DER
def test_reservoir_buffer_keeps_logits_with_their_samples():
    torch.manual_seed(0)
    buf = ReservoirBuffer(6)
    X = torch.arange(40.0)[:, None]
    logits = torch.stack([torch.arange(40.0), -torch.arange(40.0)], 1)
    for start in range(0, 40, 8):
        sl = slice(start, start + 8)
        buf.add(X[sl], torch.arange(40)[sl], torch.zeros(8, dtype=torch.long),
                logits=logits[sl])
    assert buf.size == 6 and buf.n_seen == 40
    torch.testing.assert_close(buf.logits[:, 0], buf.X[:, 0])  # the same rows
    Xs, ys, _, zs = buf.sample(20, return_logits=True)
    torch.testing.assert_close(zs[:, 1], -Xs[:, 0])
    with pytest.raises(ValueError, match="logits"):
        buf.add(X[:2], torch.arange(2), torch.zeros(2, dtype=torch.long))


def test_der_stores_the_logits_of_insertion_time(split):
    X, y, t = split
    first = t == 0
    clf = ContinualClassifier(strategy=DER(memory_size=40), max_epochs=1, lr=0.05,
                              hidden_layer_sizes=(16,), batch_size=32, random_state=0)
    clf.partial_fit(X[first], y[first], classes=np.unique(y))
    buf = clf.net_.plugins[0].buffer
    module = clf.net_.module_
    with torch.no_grad():
        now = module(buf.X, buf.t, masked=False)
    # the network moved after the samples were stored: stored logits are older
    assert not torch.allclose(now, buf.logits, atol=1e-3)
    # ...and they are the raw head outputs (no masked value stored)
    assert bool((buf.logits > MASK_VALUE / 2).all())
    # an optimiser that barely moves: the stored logits are the current ones
    clf0 = ContinualClassifier(strategy=DER(memory_size=40), max_epochs=1, lr=1e-9,
                               hidden_layer_sizes=(16,), batch_size=32, random_state=0)
    clf0.partial_fit(X[first], y[first], classes=np.unique(y))
    b0 = clf0.net_.plugins[0].buffer
    with torch.no_grad():
        torch.testing.assert_close(clf0.net_.module_(b0.X, b0.t, masked=False), b0.logits,
                                   atol=1e-5, rtol=1e-5)


def test_der_loss_is_alpha_mse_plus_beta_ce():
    torch.manual_seed(0)
    module = ContinualModule(nn.Flatten(), 3, 4, "domain")

    class Net:
        module_ = module

        @staticmethod
        def training_device():
            return "cpu"

    plugin = DERPlusPlus(memory_size=5, alpha=0.7, beta=0.0)._build("domain")
    Xm = torch.randn(5, 3)
    zm = torch.randn(5, 4)
    plugin.buffer.add(Xm, torch.tensor([0, 1, 2, 3, 0]), torch.zeros(5, dtype=torch.long),
                      logits=zm)
    torch.manual_seed(1)
    X = {"X": torch.randn(2, 3), "task_ids": torch.zeros(2, dtype=torch.long)}
    y = torch.tensor([0, 1])
    plugin.augment_batch(Net, X, y)
    torch.manual_seed(2)
    loss = plugin.extra_loss(Net, X, module(X["X"], X["task_ids"]), y)
    torch.manual_seed(2)
    idx = torch.randint(5, (2,))
    expected = 0.7 * F.mse_loss(module(Xm[idx], None), zm[idx])
    torch.testing.assert_close(loss, expected)
    assert plugin.buffer.n_seen == 7  # the batch was stored


# --------------------------------------------------------------- ER-ACE
def test_er_ace_incoming_loss_is_the_masked_cross_entropy(split):
    X, y, t = split
    clf = ContinualClassifier(strategy=ERACE(memory_size=50), **FAST)
    clf.partial_fit(X[t == 0], y[t == 0], classes=np.unique(y))
    net = clf.net_
    plugin = net.plugins[0]
    rows = np.flatnonzero(t == 1)[:16]
    Xb = {"X": torch.as_tensor(X[rows]), "task_ids": torch.zeros(16, dtype=torch.long)}
    yb = torch.as_tensor(np.searchsorted(clf.classes_, y[rows]))
    plugin.augment_batch(net, Xb, yb)
    logits = torch.randn(16, 10)
    masked = plugin.loss_logits(net, Xb, logits, yb)
    present = torch.zeros(10, dtype=torch.bool)
    present[yb] = True
    assert bool((masked[:, ~present] == MASK_VALUE).all())
    torch.testing.assert_close(masked[:, present], logits[:, present])
    ce = F.cross_entropy(masked, yb)
    hand = -(logits[:, present].log_softmax(1)[torch.arange(16),
             torch.searchsorted(torch.nonzero(present).squeeze(1), yb)]).mean()
    torch.testing.assert_close(ce, hand)
    assert torch.allclose(mask_absent_classes(logits, yb), masked)


def test_er_ace_data_loss_in_the_net(split):
    X, y, t = split
    clf = ContinualClassifier(strategy=ERACE(memory_size=50), **FAST)
    clf.partial_fit(X[t == 0], y[t == 0], classes=np.unique(y))
    net = clf.net_
    plugin = net.plugins[0]
    Xb = {"X": torch.as_tensor(X[t == 1][:8]), "task_ids": torch.zeros(8, dtype=torch.long)}
    yb = torch.as_tensor(np.searchsorted(clf.classes_, y[t == 1][:8]))
    logits = torch.randn(8, 10)
    buffer = copy.deepcopy(plugin.buffer)
    plugin.augment_batch(net, Xb, yb)
    torch.manual_seed(3)
    total = net.get_loss(logits, yb, X=Xb, training=True)
    assert plugin.buffer.n_seen == buffer.n_seen + 8  # the batch went to the reservoir
    plugin.buffer = buffer
    plugin.augment_batch(net, Xb, yb)
    torch.manual_seed(3)
    replay = plugin.extra_loss(net, Xb, logits, yb)
    torch.testing.assert_close(total, F.cross_entropy(mask_absent_classes(logits, yb), yb)
                               + replay)


# ---------------------------------------------------------------- GDumb
def test_gdumb_greedy_memory_is_class_balanced():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 50)  # task 1
    slots = greedy_balanced_update(np.empty(0, dtype=np.int64), labels, 20, rng)
    mem = labels[slots]
    assert np.bincount(mem).tolist() == [20, 0] or np.bincount(mem).tolist() == [10, 10]
    labels2 = np.repeat([2, 3, 4, 5], 30)
    slots2 = greedy_balanced_update(mem, labels2, 20, rng)
    both = np.concatenate([mem, labels2])[slots2]
    counts = np.bincount(both, minlength=6)
    assert counts.sum() == 20 and counts.max() - counts.min() <= 1


def test_gdumb_memory_balanced_and_network_reinitialised(split):
    X, y, t = split
    clf = ContinualClassifier(strategy=GDumb(memory_size=90), **FAST)
    clf.partial_fit(X[t == 0], y[t == 0], classes=np.unique(y))
    plugin = clf.net_.plugins[0]
    assert np.bincount(plugin.memory.y.numpy()).tolist() == [30, 30, 30]
    clf.partial_fit(X[t == 1], y[t == 1])
    assert np.bincount(plugin.memory.y.numpy(), minlength=6).tolist() == [15] * 6
    # the net trains from a fresh initialisation on the memory only: the same as
    # training a fresh net on that memory
    calls = []
    orig = plugin.before_task

    def spy(net, task):
        before = {k: v.clone() for k, v in net.module_.state_dict().items()}
        orig(net, task)
        after = net.module_.state_dict()
        calls.append(any(not torch.equal(before[k], after[k]) for k in before
                         if k != "head_mask"))

    plugin.before_task = spy
    clf.partial_fit(X[t == 2], y[t == 2])
    assert calls == [True]
    assert len(plugin.memory) == 90 and plugin.n_retrained == 3
    assert np.bincount(plugin.memory.y.numpy()).tolist() == [9] * 10


# ---------------------------------------------------------------- iCaRL
def test_herding_picks_the_sample_closest_to_the_mean_first():
    torch.manual_seed(0)
    f = F.normalize(torch.randn(30, 5), dim=1)
    order = herding_selection(f, 30)
    mu = f.mean(0)
    assert int(order[0]) == int(((f - mu) ** 2).sum(1).argmin())
    assert sorted(order.tolist()) == list(range(30))  # without replacement
    # the k-th pick minimises the distance of the running mean
    k2 = ((mu - (f[order[0]] + f) / 2) ** 2).sum(1)
    k2[order[0]] = float("inf")
    assert int(order[1]) == int(k2.argmin())


def test_icarl_nme_matches_a_hand_computation(split):
    X, y, t = split
    clf = ContinualClassifier(strategy=ICaRL(memory_size=60), **FAST)
    clf.partial_fit(X[t == 0], y[t == 0], classes=np.unique(y))
    clf.partial_fit(X[t == 1], y[t == 1])
    plugin = clf.net_.plugins[0]
    assert sorted(c for _, c in plugin.exemplars) == [0, 1, 2, 3, 4, 5]
    assert all(len(ex) == 10 for ex in plugin.exemplars.values())  # 60 / 6 classes
    module = clf.net_.module_.eval()
    Xq = torch.as_tensor(X[:50])
    with torch.no_grad():
        phi = lambda a: F.normalize(module.features(a), dim=1)  # noqa: E731
        means = torch.stack([F.normalize(phi(plugin.exemplars[(0, c)].X).mean(0), dim=0)
                             for c in range(6)])
        dist = ((phi(Xq)[:, None] - means[None]) ** 2).sum(-1)
    expected = clf.classes_[dist.argmin(1).numpy()]
    np.testing.assert_array_equal(clf.predict(X[:50]), expected)
    proba = clf.predict_proba(X[:50])
    np.testing.assert_allclose(proba[:, :6], torch.softmax(-dist, 1).numpy(), rtol=1e-4,
                               atol=1e-6)
    assert np.all(proba[:, 6:] == 0)


# ------------------------------------------------------------------ MAS
def test_mas_importance_matches_hand_autograd():
    torch.manual_seed(0)
    module = ContinualModule(nn.Sequential(nn.Linear(3, 4), nn.Tanh()), 4, 3, "class")
    module.add_task(0, np.array([True, True, False]))
    X = torch.randn(7, 3)
    tids = torch.zeros(7, dtype=torch.long)
    got = mas_importance(module, X, tids, batch_size=3)
    names = [n for n, _ in module.named_parameters()]
    hand = {n: torch.zeros_like(p) for n, p in module.named_parameters()}
    for x in X:
        out = module(x[None], tids[:1])[:, :2]  # the unmasked classes
        grads = torch.autograd.grad((out ** 2).sum(), list(module.parameters()))
        for n, g in zip(names, grads):
            hand[n] += g.abs() / len(X)
    for n in names:
        torch.testing.assert_close(got[n], hand[n])
    assert float(got["heads.0.weight"][2].abs().sum()) == 0  # the masked class


def test_mas_penalty_is_lambda_omega_squared_distance(split):
    X, y, t = split
    clf = ContinualClassifier(strategy=MAS(mas_lambda=3.0, n_samples=100),
                              scenario="task", **FAST)
    clf.partial_fit(X[t == 0], y[t == 0], classes=np.unique(y), task_id=0)
    plugin = clf.net_.plugins[0]
    net = clf.net_
    with torch.no_grad():
        for p in net.params:
            p.add_(0.01)
    expected = sum(3.0 * float((plugin.A[n] * (p.detach() - plugin.B[n] / plugin.A[n]
                                               .clamp(min=1e-30)) ** 2).sum())
                   for n, p in zip(net.param_names, net.params))
    assert plugin.penalty(net) == pytest.approx(expected, rel=1e-3)


# ------------------------------------------------------------------ GEM
def test_gem_projection_satisfies_every_constraint():
    rng = np.random.default_rng(0)
    g = rng.normal(size=20)
    G = rng.normal(size=(4, 20))
    G[0] = -g + 0.1 * rng.normal(size=20)  # a conflict
    new = gem_projection(g, G, margin=0.0, eps=0.0)
    assert np.all(G @ new >= -1e-8)
    # the closest such vector: KKT of min ||g~ - g||^2 s.t. G g~ >= 0
    v = np.linalg.lstsq(G.T, new - g, rcond=None)[0]
    assert np.all(v >= -1e-8)
    np.testing.assert_allclose(v * (G @ new), 0, atol=1e-8)
    # with a margin (dual variables >= margin) every constraint still holds
    assert np.all(G @ gem_projection(g, G, margin=0.5, eps=0.0) >= -1e-8)


def test_gem_with_one_constraint_is_agem_projection():
    rng = np.random.default_rng(1)
    g, ref = rng.normal(size=10), rng.normal(size=10)
    ref = ref if g @ ref < 0 else -ref
    agem = g - (g @ ref) / (ref @ ref) * ref
    np.testing.assert_allclose(gem_projection(g, ref[None], margin=0.0, eps=0.0), agem,
                               rtol=1e-10, atol=1e-12)


def test_gem_projects_in_training_and_memory_split_over_tasks(split):
    X, y, t = split
    clf = ContinualClassifier(strategy=GEM(memory_size=60), **FAST)
    clf.fit(X, y, task_ids=t)
    plugin = clf.net_.plugins[0]
    assert sorted(plugin.memories) == [0, 1, 2]
    assert [len(m) for m in plugin.memories.values()] == [20, 20, 20]
    assert plugin.n_projected > 0


# ------------------------------------------------------------- learning
def test_memory_methods_beat_naive_class_incremental():
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    idx = np.random.RandomState(1).permutation(len(y))
    train, test = idx[:1300], idx[1300:]
    Xs, ys, t = make_split_tasks(X[train], y[train], n_tasks=5)
    kw = dict(hidden_layer_sizes=(64,), max_epochs=5, lr=0.01, batch_size=32, random_state=0)
    scores = {}
    for name in ["naive", "replay", "derpp", "icarl", "gdumb"]:
        strategy = name if name == "naive" else STRATEGIES[name](memory_size=200)
        clf = ContinualClassifier(strategy=strategy, **kw).fit(Xs, ys, task_ids=t)
        scores[name] = clf.score(X[test], y[test])
    assert scores["naive"] < 0.3, scores
    for name in ["replay", "derpp", "icarl", "gdumb"]:
        assert scores[name] > scores["naive"] + 0.4, scores


# -------------------------------------------------------------- warning
@pytest.mark.parametrize("strategy", ["ewc", "online_ewc", "si", "mas", "lwf",
                                      [EWC(), SynapticIntelligence()]], ids=str)
def test_regularisers_alone_warn_in_the_class_scenario(split, strategy):
    X, y, t = split
    clf = ContinualClassifier(strategy=strategy, scenario="class", **FAST)
    with pytest.warns(UserWarning, match=r"class-incremental.*Replay.*DERPlusPlus.*ICaRL"
                                         r".*GDumb"):
        clf.partial_fit(X[t == 0], y[t == 0], classes=np.unique(y))
    with warnings.catch_warnings():  # only when learning starts
        warnings.simplefilter("error", UserWarning)
        clf.partial_fit(X[t == 1], y[t == 1])


@pytest.mark.parametrize("strategy, scenario", [
    ("replay", "class"), ("derpp", "class"), ("naive", "class"),
    ([EWC(), Replay(memory_size=50)], "class"), ([LwF(), ICaRL(memory_size=50)], "class"),
    ("ewc", "task"), ("si", "domain"), ("mas", "task")], ids=str)
def test_no_warning_with_a_memory_or_another_scenario(split, strategy, scenario):
    X, y, t = split
    clf = ContinualClassifier(strategy=strategy, scenario=scenario, **FAST)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        clf.partial_fit(X[t == 0], y[t == 0], classes=np.unique(y), task_id=0)


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize("strategy, name", [
    (DER(memory_size=0), "memory_size"), (DER(alpha=-1.0), "alpha"),
    (DERPlusPlus(beta=-0.5), "beta"), (ERACE(replay_batch_size=0), "replay_batch_size"),
    (GDumb(memory_size=2.5), "memory_size"), (ICaRL(memory_size=-3), "memory_size"),
    (ICaRL(alpha=np.nan), "alpha"), (MAS(mas_lambda=-1), "mas_lambda"),
    (MAS(n_samples=0), "n_samples"), (GEM(margin=-0.1), "margin"),
    (GEM(memory_size="big"), "memory_size")], ids=str)
def test_bad_parameters_are_clear_errors(split, strategy, name):
    X, y, t = split
    clf = ContinualClassifier(strategy=strategy, **FAST)
    with pytest.raises(InvalidParameterError, match=rf"'{name}' parameter of "
                                                    rf"{type(strategy).__name__}"):
        clf.fit(X, y, task_ids=t)
    assert not hasattr(clf, "net_")


def test_unknown_name_lists_the_new_ones(split):
    X, y, t = split
    with pytest.raises(ValueError, match=r"'strategy' parameter.*Got 'der\+'") as info:
        ContinualClassifier(strategy="der+").fit(X, y, task_ids=t)
    assert all(f"'{name}'" in str(info.value) for name in NEW)


@pytest.mark.parametrize("strategy", NEW)
def test_weighted_samples_keep_their_weights_in_memory(split, strategy):
    X, y, t = split
    w = np.where(y % 2 == 0, 2.0, 0.5)
    clf = _quiet(ContinualClassifier(strategy=strategy, scenario="class", **FAST),
                 X, y, task_ids=t, sample_weight=w)
    plugin = clf.net_.plugins[0]
    memory = {"der": lambda p: (p.buffer.y, p.buffer.w),
              "derpp": lambda p: (p.buffer.y, p.buffer.w),
              "er_ace": lambda p: (p.buffer.y, p.buffer.w),
              "gdumb": lambda p: (p.memory.y, p.memory.w),
              "icarl": lambda p: (torch.cat([e.y for e in p.exemplars.values()]),
                                  torch.cat([e.w for e in p.exemplars.values()])),
              "gem": lambda p: (torch.cat([m.y for m in p.memories.values()]),
                                torch.cat([m.w for m in p.memories.values()]))}
    if strategy in memory:
        labels, weights = memory[strategy](plugin)
        expected = np.where(clf.classes_[labels.numpy()] % 2 == 0, 2.0, 0.5)
        np.testing.assert_allclose(weights.numpy(), expected)
