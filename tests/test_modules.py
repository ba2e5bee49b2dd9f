"""Tests of sktransfer.modules: BatchNorm2d and Conv4 under vmap with second-order gradients."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from sktransfer.modules import MLP, BatchNorm2d, Conv4


def _tiny_conv4():
    """The primitive-op batch norm: the one that vmap with second-order gradients needs."""
    torch.manual_seed(0)
    return Conv4(in_channels=1, hidden_channels=4, n_blocks=2, out_features=3, image_size=8,
                 track_running_stats=False, batch_norm="primitive").double()


def _tasks():
    gen = torch.Generator().manual_seed(1)
    Xs = torch.randn(3, 6, 1, 8, 8, generator=gen, dtype=torch.float64)
    Xq = torch.randn(3, 9, 1, 8, 8, generator=gen, dtype=torch.float64)
    ys = torch.arange(3).repeat(2).expand(3, 6).clone()
    yq = torch.arange(3).repeat(3).expand(3, 9).clone()
    return Xs, ys, Xq, yq


def _meta_grads(model, tasks, batched):
    params = dict(model.named_parameters())

    def task_loss(p, Xs, ys, Xq, yq):
        def support_loss(q):
            return F.cross_entropy(functional_call(model, q, (Xs,)), ys)

        g = grad(support_loss)(p)
        fast = {k: p[k] - 0.3 * g[k] for k in p}
        return F.cross_entropy(functional_call(model, fast, (Xq,)), yq)

    if batched:
        loss = vmap(task_loss, in_dims=(None, 0, 0, 0, 0))(params, *tasks).mean()
    else:
        loss = sum(task_loss(params, *(t[i] for t in tasks)) for i in range(3)) / 3
    return torch.autograd.grad(loss, list(params.values()))


def _max_rel_diff(a, b):
    """Largest entry-wise difference relative to the largest gradient entry."""
    scale = max(float(y.abs().max()) for y in b)
    return max(float((x - y).abs().max()) for x, y in zip(a, b)) / scale


def test_conv4_second_order_meta_gradient_vmap_equals_loop():
    model = _tiny_conv4()
    tasks = _tasks()
    batched = _meta_grads(model, tasks, batched=True)
    looped = _meta_grads(model, tasks, batched=False)
    for b, lp in zip(batched, looped):
        torch.testing.assert_close(b, lp, rtol=1e-10, atol=1e-12)


def test_torch_batchnorm_under_vmap_is_less_exact_than_ours():
    ours = _tiny_conv4()
    theirs = copy.deepcopy(ours)
    for i, layer in enumerate(theirs.features):
        if isinstance(layer, BatchNorm2d):
            bn = nn.BatchNorm2d(layer.num_features, track_running_stats=False).double()
            bn.load_state_dict(layer.state_dict())
            theirs.features[i] = bn
    tasks = _tasks()
    ours_diff = _max_rel_diff(_meta_grads(ours, tasks, True), _meta_grads(ours, tasks, False))
    try:
        theirs_batched = _meta_grads(theirs, tasks, True)
    except RuntimeError:  # no batching rule for the fused kernel's double backward
        theirs_diff = float("inf")
    else:
        theirs_diff = _max_rel_diff(theirs_batched, _meta_grads(theirs, tasks, False))
    assert ours_diff < 1e-10
    if theirs_diff == 0.0:
        pytest.skip("torch.nn.BatchNorm2d is exact under vmap on this torch build")
    assert theirs_diff > ours_diff


def test_batchnorm_matches_torch_in_training_mode():
    torch.manual_seed(0)
    X = torch.randn(5, 3, 4, 4)
    ours, theirs = BatchNorm2d(3), nn.BatchNorm2d(3)
    torch.testing.assert_close(ours(X), theirs(X), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.running_var, theirs.running_var)
    ours.eval()
    theirs.eval()
    torch.testing.assert_close(ours(X), theirs(X), rtol=1e-5, atol=1e-5)


def test_conv4_and_mlp_output_shapes():
    assert Conv4(hidden_channels=8)(torch.zeros(2, 1, 28, 28)).shape == (2, 8)
    assert Conv4(hidden_channels=8, out_features=5).out_features_ == 5
    assert MLP(8, (16, 4))(torch.zeros(3, 8)).shape == (3, 4)


def test_conv4_fused_and_primitive_batch_norm_compute_the_same_function():
    from torch import nn

    from sktransfer.modules import BatchNorm2d

    torch.manual_seed(0)
    fused = Conv4(hidden_channels=8)
    torch.manual_seed(0)
    primitive = Conv4(hidden_channels=8, batch_norm="primitive")
    assert any(type(m) is nn.BatchNorm2d for m in fused.modules())
    assert any(type(m) is BatchNorm2d for m in primitive.modules())
    X = torch.randn(6, 1, 28, 28)
    for mode in (True, False):  # batch statistics, then the running ones
        fused.train(mode)
        primitive.train(mode)
        torch.testing.assert_close(fused(X), primitive(X), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="batch_norm must be 'fused' or 'primitive'"):
        Conv4(batch_norm="sync")
