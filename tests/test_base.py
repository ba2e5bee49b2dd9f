"""The shared base: devices, threads, batching, safe weights."""

import os
import pickle

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback
from skorch.dataset import Dataset

from sktransfer.base import (
    _FastBatchIterator,
    default_num_threads,
    load_state_dict,
    resolve_device,
    torch_threads,
)


def test_resolve_device_accepts_cpu_and_auto_and_names_bad_devices():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device(3)
    for bad in ("auto:0", "cuda:x", "cuda:", "cpu0"):
        with pytest.raises(ValueError, match="device must be one of"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device is available"):
            resolve_device("cuda:0")


def test_torch_threads_restores_and_env_variable_sets_the_count(monkeypatch):
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    monkeypatch.setenv("SKTRANSFER_NUM_THREADS", "3")
    assert default_num_threads() == 3
    monkeypatch.setenv("SKTRANSFER_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="SKTRANSFER_NUM_THREADS must be a positive integer"):
        default_num_threads()
    monkeypatch.delenv("SKTRANSFER_NUM_THREADS")
    n_cpus = len(os.sched_getaffinity(0))
    assert default_num_threads() == max(1, min(torch.get_num_threads(), n_cpus // 2))
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("drop_last", [False, True])
def test_fast_batch_iterator_covers_every_row_once(drop_last):
    X = {"X": np.arange(23, dtype=np.float32)[:, None], "task_ids": np.arange(23) % 2}
    y = np.arange(23)
    it = _FastBatchIterator(Dataset(X, y), batch_size=5, shuffle=True, drop_last=drop_last)
    torch.manual_seed(0)
    batches = list(it)
    assert len(batches) == len(it) == (4 if drop_last else 5)
    seen = torch.cat([yb for _, yb in batches]).numpy()
    assert len(seen) == (20 if drop_last else 23) and len(set(seen)) == len(seen)
    for xb, yb in batches:  # rows stay aligned across X, task_ids and y
        np.testing.assert_array_equal(xb["X"][:, 0].numpy(), yb.numpy())
        np.testing.assert_array_equal(xb["task_ids"].numpy(), yb.numpy() % 2)
    assert not np.array_equal(seen, np.sort(seen))  # shuffled
    unshuffled = torch.cat([yb for _, yb in _FastBatchIterator(Dataset(X, y), batch_size=5)])
    np.testing.assert_array_equal(unshuffled.numpy(), y)


def test_fast_batch_iterator_falls_back_for_other_datasets():
    ds = torch.utils.data.TensorDataset(torch.arange(10.0), torch.arange(10))
    it = _FastBatchIterator(ds, batch_size=4)
    assert [len(b[0]) for b in it] == [4, 4, 2]


class _Evil:
    def __reduce__(self):
        return (exec, ("import os; os.environ['SKTRANSFER_PWNED'] = '1'",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_weights_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"w": _Evil()}, fh)
    with pytest.raises(ValueError, match="never unpickled"):
        load_state_dict(path)
    assert "SKTRANSFER_PWNED" not in os.environ
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a state dict"):
        load_state_dict(tmp_path / "list.pt")


def test_mismatched_weights_are_a_clear_error(tmp_path):
    from sklearn.datasets import load_digits

    from sktransfer import MultiTaskClassifier

    X, y = load_digits(n_class=3, return_X_y=True)
    small = MultiTaskClassifier(hidden_layer_sizes=(8,), max_epochs=0).fit(X, y)
    large = MultiTaskClassifier(hidden_layer_sizes=(16,), max_epochs=0).fit(X, y)
    small.save_weights(tmp_path / "small.safetensors")
    with pytest.raises(ValueError, match="do not match this estimator's network"):
        large.load_weights(tmp_path / "small.safetensors")


def test_model_marked_cuda_loads_on_cpu():
    """A model pickled from a GPU machine unpickles on the CPU and predicts."""
    import warnings

    from sklearn.datasets import load_digits

    from sktransfer import MultiTaskClassifier

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    X, y = load_digits(n_class=3, return_X_y=True)
    clf = MultiTaskClassifier(hidden_layer_sizes=(8,), max_epochs=2, random_state=0).fit(X, y)
    expected = clf.predict_proba(X)
    clf.net_.device = "cuda"  # as it would be after training on a GPU
    blob = pickle.dumps(clf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skorch warns that it falls back to the CPU
        restored = pickle.loads(blob)
    assert str(restored.net_.device) == "cpu"
    np.testing.assert_allclose(restored.predict_proba(X), expected)


def test_thread_count_left_alone_in_worker_threads():
    import threading

    seen = []

    def work():
        before = torch.get_num_threads()
        with torch_threads(1):
            seen.append(torch.get_num_threads() == before)

    with torch_threads(2):
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    assert seen == [True]


class CountBatches(Callback):
    def initialize(self):
        self.n = 0
        return self

    def on_batch_end(self, net, **kwargs):
        self.n += 1


def test_lean_notify_calls_only_callbacks_that_implement_batch_hooks():
    from sklearn.datasets import load_digits

    from sktransfer import MultiTaskClassifier

    counter = CountBatches()
    X, y = load_digits(n_class=3, return_X_y=True)
    clf = MultiTaskClassifier(hidden_layer_sizes=(8,), max_epochs=2, batch_size=100,
                              callbacks=[counter], random_state=0).fit(X, y)
    counted = [cb for _, cb in clf.net_.callbacks_ if isinstance(cb, CountBatches)]
    assert counted[0].n == 2 * int(np.ceil(len(X) / 100))
    assert "_hook_cache" not in clf.net_.__getstate__()
    pickle.loads(pickle.dumps(clf)).predict(X[:3])


def test_module_factory_must_return_a_module():
    from sklearn.datasets import load_digits

    from sktransfer import FineTuner, MultiTaskClassifier

    X, y = load_digits(n_class=3, return_X_y=True)
    with pytest.raises(TypeError, match="module must be an nn.Module.*returned int"):
        MultiTaskClassifier(module=lambda: 3, max_epochs=1).fit(X, y)
    with pytest.raises(TypeError, match="pretrained factory must.*returned str"):
        FineTuner(lambda: "net", max_epochs=1).fit(X, y)


def test_lean_infer_fast_path_matches_skorch():
    from sklearn.datasets import load_digits
    from skorch import NeuralNet

    from sktransfer import MultiTaskClassifier

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    task = np.arange(len(y)) % 2
    clf = MultiTaskClassifier(hidden_layer_sizes=(8,), max_epochs=1, random_state=0)
    clf.fit(X[:200], y[:200], task_ids=task[:200])
    net = clf.net_
    batch = {"X": torch.as_tensor(X[:16]), "task_ids": torch.as_tensor(task[:16])}
    torch.testing.assert_close(net.infer(batch), NeuralNet.infer(net, batch))
    # numpy inputs (not the iterator's tensors) take skorch's path and agree
    numpy_batch = {"X": X[:16], "task_ids": task[:16]}
    torch.testing.assert_close(net.infer(numpy_batch), net.infer(batch))


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all", b"\xff" * 64])
def test_garbage_safetensors_file_is_a_value_error_naming_the_path(tmp_path, content):
    from sklearn.datasets import load_digits
    from torch import nn

    from sktransfer import MultiTaskClassifier
    from sktransfer.transfer import FineTuner

    path = tmp_path / "weights.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{path}.*not a valid safetensors file"):
        load_state_dict(path)
    X, y = load_digits(n_class=3, return_X_y=True)
    ft = FineTuner((lambda: nn.Sequential(nn.Linear(64, 3)), str(path)), max_epochs=1)
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        ft.fit(X, y)
    assert not hasattr(ft, "net_")
    clf = MultiTaskClassifier(hidden_layer_sizes=(4,), max_epochs=1, random_state=0).fit(X, y)
    before = clf.predict_proba(X[:5])
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        clf.load_weights(path)
    np.testing.assert_array_equal(before, clf.predict_proba(X[:5]))
    with pytest.raises(ValueError, match="does not exist"):
        load_state_dict(tmp_path / "missing.safetensors")


def test_whole_module_file_is_explained_without_unsafe_advice(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(ValueError) as info:
        load_state_dict(path)
    message = str(info.value)
    assert "torch.nn.modules.linear.Linear" in message
    assert "model.state_dict()" in message and "never unpickled" in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert "\x1b[" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize("content", [b"hello world", b"\x80\x02garbage", b""])
def test_garbage_torch_file_is_a_short_clear_error(tmp_path, content):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="is not a weights file .*never unpickled") as info:
        load_state_dict(path)
    assert "weights_only=False" not in str(info.value) and "False" not in str(info.value)


def test_lean_train_step_keeps_closures_and_gradient_callbacks():
    from sklearn.datasets import load_digits
    from skorch.callbacks import Callback

    from sktransfer import MultiTaskClassifier

    X, y = load_digits(return_X_y=True)
    X, y = X[:200] / 16, y[:200]
    seen = []

    class GradProbe(Callback):
        def on_grad_computed(self, net, named_parameters, batch=None, **kwargs):
            seen.append(sum(float(p.grad.abs().sum()) for _, p in named_parameters))

    adam = MultiTaskClassifier(hidden_layer_sizes=(8,), max_epochs=1, batch_size=100,
                               callbacks=[GradProbe()], random_state=0).fit(X, y)
    assert len(seen) == 2 and all(g > 0 for g in seen)
    assert len(adam.net_.history[-1, "batches"]) == 2
    # L-BFGS evaluates its closure several times: skorch's own step runs it
    lbfgs = MultiTaskClassifier(hidden_layer_sizes=(8,), optimizer=torch.optim.LBFGS, lr=0.5,
                                max_epochs=3, batch_size=-1, random_state=0).fit(X, y)
    losses = lbfgs.net_.history[:, "train_loss"]
    assert losses[-1] < losses[0]


def _optimizer(est):
    return est.net_.optimizer_


def test_adam_uses_the_fused_kernel_unless_the_user_chose_one():
    from sktransfer import MultiTaskClassifier

    X = np.random.RandomState(0).rand(40, 4).astype(np.float32)
    y = np.tile([0, 1], 20)
    tasks = np.repeat([0, 1], 20)
    fit = dict(max_epochs=1, random_state=0)
    est = MultiTaskClassifier(**fit).fit(X, y, task_ids=tasks)
    assert _optimizer(est).defaults["fused"] is True
    adamw = MultiTaskClassifier(optimizer=torch.optim.AdamW, **fit).fit(X, y, task_ids=tasks)
    assert _optimizer(adamw).defaults["fused"] is True
    # the user's choice of implementation wins, and is not an error
    foreach = MultiTaskClassifier(net_params={"optimizer__foreach": True}, **fit)
    foreach.fit(X, y, task_ids=tasks)
    assert _optimizer(foreach).defaults["foreach"] is True
    assert not _optimizer(foreach).defaults["fused"]
    # every family builds its net through the same keyword arguments
    from sktransfer.continual import ContinualClassifier
    from sktransfer.meta import PrototypicalClassifier

    proto = PrototypicalClassifier(max_epochs=1, episodes_per_epoch=2, random_state=0)
    assert _optimizer(proto.fit(X, y)).defaults["fused"] is True
    continual = ContinualClassifier(**fit).fit(X, y, task_ids=tasks)
    assert _optimizer(continual).defaults["fused"] is True
    # other optimizers are left as they are
    sgd = MultiTaskClassifier(optimizer=torch.optim.SGD, **fit).fit(X, y, task_ids=tasks)
    assert not sgd.net_.optimizer_.defaults.get("fused")
    # the fused step is Adam's step: the same weights up to rounding
    plain = MultiTaskClassifier(net_params={"optimizer__fused": False}, **fit)
    plain.fit(X, y, task_ids=tasks)
    for a, b in zip(est.net_.module_.parameters(), plain.net_.module_.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_batch_losses_are_read_once_per_epoch_and_match_the_eager_record():
    """Without an on_batch_end callback the losses stay tensors until the epoch
    ends; the history holds the same floats as when each is read at once."""
    from skorch.callbacks import Callback

    from sktransfer import MultiTaskClassifier

    class SeesBatches(Callback):
        def initialize(self):
            self.seen = []
            return self

        def on_batch_end(self, net, **kwargs):
            self.seen.append(net.history[-1]["batches"][-1]["train_loss"])

    X = np.random.RandomState(0).rand(60, 4).astype(np.float32)
    y = np.tile([0, 1, 2], 20)
    tasks = np.repeat([0, 1], 30)
    fit = dict(max_epochs=2, batch_size=16, random_state=0)
    lazy = MultiTaskClassifier(**fit).fit(X, y, task_ids=tasks)
    watcher = SeesBatches()
    eager = MultiTaskClassifier(callbacks=[watcher], **fit).fit(X, y, task_ids=tasks)
    lazy_losses = [b["train_loss"] for row in lazy.net_.history for b in row["batches"]]
    eager_losses = [b["train_loss"] for row in eager.net_.history for b in row["batches"]]
    assert len(lazy_losses) == 8 and all(type(v) is float for v in lazy_losses)
    assert lazy_losses == eager_losses
    # a callback reading the history during the epoch sees floats
    assert watcher.seen == eager_losses
    # the epoch loss is their size-weighted mean, as skorch computes it
    row = lazy.net_.history[-1]
    sizes = [b["train_batch_size"] for b in row["batches"]]
    mean = sum(v * s for v, s in zip(lazy_losses[4:], sizes)) / sum(sizes)
    assert row["train_loss"] == pytest.approx(mean)
