"""The diagonal of the Fisher information matrix of a classifier network.

For a network that maps an input ``x`` to class log-probabilities
``log p(c | x, theta)`` the Fisher information is

.. math::

    F = \\mathbb{E}_{x}\\, \\sum_c p(c \\mid x)\\,
        \\Big(\\frac{\\partial \\log p(c \\mid x)}{\\partial \\theta}\\Big)^2

(diagonal only: the element-wise square of *per-sample* gradients). The four
``kind`` values of :func:`fisher_diagonal` differ in the label whose
log-likelihood is differentiated:

``"exact"``
    The expectation over the model's own predictive distribution, one
    gradient per class weighted by ``p(c | x)``: the true Fisher.
``"sampled"``
    One label drawn from ``p(c | x)`` per sample: an unbiased Monte-Carlo
    estimate of ``"exact"`` (Kirkpatrick et al., 2017).
``"empirical"``
    The true label ``y``: the "empirical Fisher" (a different matrix, not an
    estimate of the Fisher).
``"batched"``
    The square of the gradient of the *mean* loss of a mini-batch of
    ``batch_size`` samples (true labels), averaged over mini-batches. This is
    what most libraries compute; it is biased: for independent per-sample
    gradients ``g_n`` with mean near zero, ``(mean_n g_n)^2`` is about
    ``mean_n g_n^2 / batch_size``, a Fisher about ``batch_size`` times too
    small. With ``batch_size=1`` it equals ``"empirical"``. Offered only for
    parity with other libraries.

All kinds are means over samples and are computed with the network in
``eval()`` mode (no dropout, batch norm on running statistics).

Three methods compute the per-sample squares:

``"hooks"`` (the fast path)
    For ``nn.Linear`` the per-sample weight gradient is
    ``outer(delta_n, a_n)`` (output gradient times input activation), so its
    square is ``outer(delta_n ** 2, a_n ** 2)`` and the sum over samples is
    one matrix product ``(delta ** 2).T @ a ** 2``. Activations are captured
    with forward hooks and output gradients ``delta`` with one batched
    ``torch.autograd.grad`` per class (``"exact"``) or per batch (the
    others). ``nn.Conv2d`` gets its per-sample gradients from the unfolded
    input. It is used when every module that owns parameters is a
    ``Linear`` or ``Conv2d`` applied at most once per forward pass.
``"vmap"``
    ``torch.func.vmap`` over samples of ``grad`` (or ``jacrev`` over classes
    for ``"exact"``) of a ``functional_call``: any layer.
``"loop"``
    One backward pass per sample (and per class): the slow reference.

``"auto"`` picks ``"hooks"`` when it applies, else ``"vmap"``.
"""

import contextlib

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["fisher_diagonal", "FISHER_KINDS"]

FISHER_KINDS = ("exact", "sampled", "empirical", "batched")
_METHODS = ("auto", "hooks", "vmap", "loop")
# Largest number of output-gradient values (classes x layer outputs of a batch)
# for which the exact Fisher runs every class in one vmapped backward pass.
_BATCHED_LIMIT = 1 << 25


@contextlib.contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _named_trainable(model):
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _hooks_apply(model):
    """Whether the closed-form hook path covers every trainable parameter."""
    for module in model.modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if isinstance(module, nn.Linear):
            continue
        if (isinstance(module, nn.Conv2d) and module.groups == 1
                and module.padding_mode == "zeros" and not isinstance(module.padding, str)):
            continue
        return False
    return True


def _slice_kwargs(kwargs, idx):
    return {k: (v[idx] if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}


def _draw_labels(model, X, kwargs, batch_size, generator):
    """One label per sample drawn from the model's predictive distribution."""
    out = []
    with torch.no_grad():
        for start in range(0, X.shape[0], batch_size):
            idx = slice(start, start + batch_size)
            logp = torch.log_softmax(model(X[idx], **_slice_kwargs(kwargs, idx)).float(), -1)
            out.append(torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1))
    return torch.cat(out)


def fisher_diagonal(model, X, y=None, *, kind="exact", batch_size=256, method="auto",
                    forward_kwargs=None, random_state=None):
    """Diagonal Fisher information of a classifier network, a mean over samples.

    Parameters
    ----------
    model : nn.Module
        Maps ``X`` (and ``forward_kwargs``) to logits of shape
        (n_samples, n_classes). It is put in ``eval()`` mode during the
        computation and restored after.
    X : Tensor of shape (n_samples, ...)
        Inputs.
    y : Tensor of shape (n_samples,) or None
        Integer class indices; needed by ``"empirical"`` and ``"batched"``.
    kind : {"exact", "sampled", "empirical", "batched"}, default="exact"
        Which Fisher (see the module documentation). ``"batched"`` squares the
        gradient of mini-batch mean losses and is biased (about
        ``batch_size`` times too small).
    batch_size : int, default=256
        Samples per forward pass (and the mini-batch of ``"batched"``).
    method : {"auto", "hooks", "vmap", "loop"}, default="auto"
        How per-sample gradients are obtained; all give the same result up to
        rounding. ``"loop"`` is the slow reference.
    forward_kwargs : dict or None
        Extra keyword arguments of ``model``; tensors whose first dimension is
        n_samples (e.g. per-sample task ids) are sliced with ``X``.
    random_state : int or None
        Seeds the labels drawn by ``"sampled"``.

    Returns
    -------
    dict of str to Tensor
        The diagonal Fisher: one tensor per trainable parameter (by
        ``named_parameters`` name), of the parameter's shape.

    Examples
    --------
    >>> import torch
    >>> from sktransfer.continual import fisher_diagonal
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> fisher = fisher_diagonal(net, torch.randn(50, 4))
    >>> sorted(fisher), fisher["0.weight"].shape
    (['0.bias', '0.weight', '2.bias', '2.weight'], torch.Size([8, 4]))
    """
    if kind not in FISHER_KINDS:
        raise ValueError(f"kind must be one of {FISHER_KINDS}, got {kind!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if kind in ("empirical", "batched") and y is None:
        raise ValueError(f"kind={kind!r} needs the true labels y")
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size}")
    kwargs = dict(forward_kwargs or {})
    n = X.shape[0]
    if n == 0:
        raise ValueError("fisher_diagonal needs at least one sample")
    named = _named_trainable(model)
    with _eval_mode(model):
        if kind == "batched":
            fisher = _fisher_batched(model, named, X, y, kwargs, batch_size)
            return fisher
        if kind == "sampled":
            gen = torch.Generator(device=X.device)
            gen.manual_seed(0 if random_state is None else int(random_state))
            y = _draw_labels(model, X, kwargs, batch_size, gen)
        labels = None if kind == "exact" else y.to(X.device).long()
        if method == "auto":
            method = "hooks" if _hooks_apply(model) else "vmap"
        if method == "hooks" and not _hooks_apply(model):
            raise ValueError("method='hooks' needs a network whose parametrised layers are all "
                             "nn.Linear or nn.Conv2d (groups=1, zero padding); use 'vmap'")
        fn = {"hooks": _fisher_hooks, "vmap": _fisher_vmap, "loop": _fisher_loop}[method]
        fisher = fn(model, named, X, labels, kwargs, batch_size)
        if fisher is None:  # a layer was applied twice: the closed form does not hold
            fisher = _fisher_vmap(model, named, X, labels, kwargs, batch_size)
    return {k: v / n for k, v in fisher.items()}


# --------------------------------------------------------------------- batched
def _fisher_batched(model, named, X, y, kwargs, batch_size):
    params = [p for _, p in named]
    acc = [torch.zeros_like(p) for p in params]
    n_batches = 0
    for start in range(0, X.shape[0], batch_size):
        idx = slice(start, start + batch_size)
        logits = model(X[idx], **_slice_kwargs(kwargs, idx))
        loss = F.cross_entropy(logits.float(), y[idx].to(logits.device).long())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for a, g in zip(acc, grads):
            if g is not None:
                a.add_(g.detach() ** 2)
        n_batches += 1
    return {name: a / n_batches for (name, _), a in zip(named, acc)}


# ----------------------------------------------------------------------- loop
def _fisher_loop(model, named, X, labels, kwargs, batch_size):
    params = [p for _, p in named]
    acc = [torch.zeros_like(p) for p in params]
    for i in range(X.shape[0]):
        idx = slice(i, i + 1)
        logp = torch.log_softmax(model(X[idx], **_slice_kwargs(kwargs, idx)).float(), -1)[0]
        if labels is None:
            probs = logp.detach().exp()
            classes = [(c, probs[c]) for c in range(logp.shape[0]) if probs[c] > 0]
        else:
            classes = [(int(labels[i]), 1.0)]
        for j, (c, w) in enumerate(classes):
            grads = torch.autograd.grad(logp[c], params, retain_graph=j < len(classes) - 1,
                                        allow_unused=True)
            for a, g in zip(acc, grads):
                if g is not None:
                    a.add_(g.detach() ** 2 * w)
    return {name: a for (name, _), a in zip(named, acc)}


# ----------------------------------------------------------------------- vmap
def _fisher_vmap(model, named, X, labels, kwargs, batch_size):
    from torch.func import functional_call, grad, jacrev, vmap

    names = [n for n, _ in named]
    params = {n: p.detach() for n, p in named}
    buffers = dict(model.named_buffers())
    n_params = sum(p.numel() for p in params.values())
    acc = {n: torch.zeros_like(p) for n, p in params.items()}
    tensor_keys = [k for k, v in kwargs.items() if isinstance(v, torch.Tensor)]
    static = {k: v for k, v in kwargs.items() if k not in tensor_keys}

    def logp_fn(p, x, *targs):
        kw = dict(static, **{k: t[None] for k, t in zip(tensor_keys, targs)})
        out = functional_call(model, (p, buffers), (x[None],), kw)
        return torch.log_softmax(out.float(), -1)[0]

    if labels is None:
        with torch.no_grad():
            n_classes = model(X[:1], **_slice_kwargs(kwargs, slice(0, 1))).shape[-1]
        chunk = max(1, min(batch_size, (1 << 25) // max(1, n_classes * n_params)))

        def per_sample(p, x, *targs):
            jac = jacrev(logp_fn)(p, x, *targs)  # name -> (C, *shape)
            probs = logp_fn(p, x, *targs).detach().exp()
            return {k: torch.einsum("c,c...->...", probs, v ** 2) for k, v in jac.items()}

        fn = vmap(per_sample, in_dims=(None, 0) + (0,) * len(tensor_keys))
    else:
        chunk = max(1, min(batch_size, (1 << 25) // max(1, n_params)))

        def per_sample(p, x, label, *targs):
            g = grad(lambda q: logp_fn(q, x, *targs)[label])(p)
            return {k: v ** 2 for k, v in g.items()}

        fn = vmap(per_sample, in_dims=(None, 0, 0) + (0,) * len(tensor_keys))
    for start in range(0, X.shape[0], chunk):
        idx = slice(start, start + chunk)
        targs = [kwargs[k][idx] for k in tensor_keys]
        if labels is None:
            out = fn(params, X[idx], *targs)
        else:
            out = fn(params, X[idx], labels[idx], *targs)
        for k in names:
            acc[k].add_(out[k].sum(0))
    return acc


# ---------------------------------------------------------------------- hooks
class _Capture:
    """Forward hooks that keep each parametrised layer's input and output."""

    def __init__(self, model):
        self.layers = [m for m in model.modules()
                       if any(p.requires_grad for p in m.parameters(recurse=False))]
        self.records = {}
        self.twice = False
        self.handles = [m.register_forward_hook(self._hook) for m in self.layers]

    def _hook(self, module, inputs, output):
        if module in self.records:
            self.twice = True
        self.records[module] = (inputs[0].detach(), output)

    def remove(self):
        for h in self.handles:
            h.remove()


def _layer_square_grads(module, a, delta):
    """Sum over samples of squared per-sample gradients: {param_name: tensor}."""
    out = {}
    if isinstance(module, nn.Linear):
        if a.dim() == 2:
            d2 = delta ** 2
            if module.weight.requires_grad:
                out["weight"] = d2.t() @ (a ** 2)
            if module.bias is not None and module.bias.requires_grad:
                out["bias"] = d2.sum(0)
            return out
        # inputs with extra dimensions: per-sample gradients sum over positions
        a3 = a.reshape(a.shape[0], -1, a.shape[-1])
        d3 = delta.reshape(delta.shape[0], -1, delta.shape[-1])
        if module.weight.requires_grad:
            out["weight"] = (torch.bmm(d3.transpose(1, 2), a3) ** 2).sum(0)
        if module.bias is not None and module.bias.requires_grad:
            out["bias"] = (d3.sum(1) ** 2).sum(0)
        return out
    # Conv2d
    n = a.shape[0]
    d = delta.reshape(n, delta.shape[1], -1)
    if module.weight.requires_grad:
        u = F.unfold(a, module.kernel_size, dilation=module.dilation, padding=module.padding,
                     stride=module.stride)
        g = torch.bmm(d, u.transpose(1, 2)) ** 2  # (n, out, in * k * k)
        out["weight"] = g.sum(0).reshape(module.weight.shape)
    if module.bias is not None and module.bias.requires_grad:
        out["bias"] = (d.sum(2) ** 2).sum(0)
    return out


def _fisher_hooks(model, named, X, labels, kwargs, batch_size):
    acc = {n: torch.zeros_like(p) for n, p in named}
    prefix = {m: name for name, m in model.named_modules()}

    def add(m, values):
        for pname, value in values.items():
            acc[f"{prefix[m]}.{pname}" if prefix[m] else pname].add_(value)

    capture = _Capture(model)
    try:
        for start in range(0, X.shape[0], batch_size):
            idx = slice(start, start + batch_size)
            capture.records = {}
            logits = model(X[idx], **_slice_kwargs(kwargs, idx))
            if capture.twice:
                return None
            logp = torch.log_softmax(logits.float(), -1)
            layers = list(capture.records)
            outputs = [capture.records[m][1] for m in layers]
            # For a Linear layer on 2-D inputs the squared per-sample gradient is
            # outer(delta ** 2, a ** 2), so the squared output gradients of all
            # passes are summed first and multiplied by a ** 2 once.
            linear = {m for m in layers
                      if isinstance(m, nn.Linear) and capture.records[m][0].dim() == 2}
            squares = {}

            def consume(m, delta, linear=linear, squares=squares):
                if m in linear:
                    squares[m] = delta ** 2 if m not in squares else squares[m].addcmul_(
                        delta, delta)
                else:
                    add(m, _layer_square_grads(m, capture.records[m][0], delta))

            # Samples are independent in eval mode, so the gradient of
            # sum_n sqrt(w_n) log p(c_n | x_n) holds sqrt(w_n) times each
            # sample's own output gradient: its square carries the weight w_n,
            # also for layers applied to a subset of the rows.
            if labels is not None:
                deltas = torch.autograd.grad(logp.gather(1, labels[idx, None]).squeeze(1),
                                             outputs, grad_outputs=logp.new_ones(logp.shape[0]),
                                             allow_unused=True)
                for m, delta in zip(layers, deltas):
                    if delta is not None:
                        consume(m, delta)
            else:
                probs = logp.detach().exp()
                active = [c for c in range(logp.shape[1]) if bool((probs[:, c] > 0).any())]
                sqrt_p = probs.sqrt()
                size = len(active) * sum(o.numel() for o in outputs)
                batched = None
                if size <= _BATCHED_LIMIT:
                    # every class in one vmapped backward pass
                    onehot = logp.new_zeros((len(active),) + tuple(logp.shape))
                    for i, c in enumerate(active):
                        onehot[i, :, c] = sqrt_p[:, c]
                    try:
                        batched = torch.autograd.grad(logp, outputs, grad_outputs=onehot,
                                                      is_grads_batched=True, allow_unused=True)
                    except RuntimeError:  # an operation without a batching rule
                        batched = None
                if batched is not None:
                    for m, delta in zip(layers, batched):
                        if delta is None:
                            continue
                        if m in linear:
                            squares[m] = (delta ** 2).sum(0)
                        else:
                            for d in delta:
                                consume(m, d)
                else:
                    for j, c in enumerate(active):
                        deltas = torch.autograd.grad(logp[:, c], outputs,
                                                     grad_outputs=sqrt_p[:, c],
                                                     retain_graph=j < len(active) - 1,
                                                     allow_unused=True)
                        for m, delta in zip(layers, deltas):
                            if delta is not None:
                                consume(m, delta)
            for m, sq in squares.items():
                a = capture.records[m][0]
                values = {}
                if m.weight.requires_grad:
                    values["weight"] = sq.t() @ (a ** 2)
                if m.bias is not None and m.bias.requires_grad:
                    values["bias"] = sq.sum(0)
                add(m, values)
    finally:
        capture.remove()
    return acc
