"""BlackBoxMetaClassifier: a sequence model that reads the support set (SNAIL / MANN family)."""

import torch
from torch import nn

from ..base import parameter_constraints
from ._base import META_PARAMETER_CONSTRAINTS
from ._learner import trunk_width
from ._metric_learner import MetricFewShotClassifier, MetricModule

__all__ = ["BlackBoxMetaClassifier"]


class BlackBoxModule(MetricModule):
    """A transformer over ``[support tokens, query tokens]`` and an attention read-out.

    A token is ``[projected embedding, label-slot embedding]``: support
    tokens carry the slot of their label, query tokens an "unknown label"
    slot. ``n_layers`` pre-norm transformer layers mix the sequence (a query
    attends to the support set and to itself, never to other queries, so
    queries are classified independently); a final attention from every
    query to the support tokens reads out a label half, and the logits are
    its dot products with the slot embeddings of the episode's classes.
    The read-out starts as a nearest-neighbour lookup (queries and keys
    compare the feature halves, values copy the label half), so training
    starts from a reader that works and learns from there; from a random
    start such copy mechanisms need orders of magnitude more episodes.

    Every training episode gives its classes random distinct slots out of
    ``n_slots``, so the model cannot tie a slot to a class and must read the
    labels from the sequence.
    """

    def __init__(self, trunk, width, n_slots, d_model, n_heads, n_layers):
        super().__init__(trunk)
        self.n_slots = n_slots
        half = d_model // 2
        self.half = half
        self.proj = nn.Linear(width, half)
        self.slots = nn.Embedding(n_slots + 1, d_model - half)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=2 * d_model,
                                           dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.readout = nn.MultiheadAttention(d_model, 1, batch_first=True)
        with torch.no_grad():
            eye = torch.eye(half)
            w = torch.zeros(3 * d_model, d_model)
            w[:half, :half] = 3.0 * eye                     # query: feature half
            w[d_model:d_model + half, :half] = eye          # key: feature half
            w[2 * d_model + half:, half:] = torch.eye(d_model - half)  # value: label half
            self.readout.in_proj_weight.copy_(w)
            self.readout.in_proj_bias.zero_()
            self.readout.out_proj.weight.copy_(torch.eye(d_model))
            self.readout.out_proj.bias.zero_()

    def run(self, fs, support_slots, fq, class_slots):
        n_s, n_q = fs.shape[0], fq.shape[0]
        unknown = torch.full((n_q,), self.n_slots, dtype=torch.long, device=fq.device)
        tokens = torch.cat([torch.cat([self.proj(fs), self.slots(support_slots)], 1),
                            torch.cat([self.proj(fq), self.slots(unknown)], 1)])
        blocked = torch.ones(n_s + n_q, n_s + n_q, dtype=torch.bool, device=fq.device)
        blocked[:, :n_s] = False
        blocked[n_s:, n_s:] = ~torch.eye(n_q, dtype=torch.bool, device=fq.device)
        h = self.encoder(tokens.unsqueeze(0), mask=blocked)
        read = self.readout(h[:, n_s:], h[:, :n_s], h[:, :n_s], need_weights=False)[0][0]
        return read[:, self.half:] @ self.slots(class_slots).T

    def episode_logits(self, state, fq):
        fs = state["support"]
        class_slots = torch.randperm(self.n_slots, device=fs.device)[:state["n_classes"]]
        return self.run(fs, class_slots[state["labels"]], fq, class_slots)

    def query_logits(self, state, fq):
        slots = torch.arange(state["n_classes"], device=fq.device)
        return self.run(state["support"], slots[state["labels"]], fq, slots)


@parameter_constraints(**META_PARAMETER_CONSTRAINTS)
class BlackBoxMetaClassifier(MetricFewShotClassifier):
    """A black-box meta-learner: attention over the labelled support set as a sequence.

    Every example is embedded by the trunk; the support examples, each with
    the embedding of its label, and the query examples form one sequence
    that a small transformer encoder reads (the attention-based members of
    the SNAIL / memory-augmented family: Mishra et al., 2018; Santoro et
    al., 2016). The network itself is the learning algorithm: there is no
    inner loop, and :meth:`adapt` only stores the embedded support set.
    Labels are given to the sequence as slot embeddings, assigned at random
    per training episode, so a support set of up to ``n_slots_`` classes
    can be read (``n_slots_`` is the larger of ``n_way_`` and the number of
    classes in ``fit``, so ``predict`` after ``fit`` reads up to 20 training
    rows per class of ``fit``, at most about 1000 in all).

    Parameters
    ----------
    d_model : int, default=64
        Width of the transformer.
    n_heads : int, default=4
    n_layers : int, default=2
    n_way : int or None, default=None
    k_shot : int, default=1
    n_query : int or None, default=None
    episodes_per_epoch : int, default=100
    module : None, nn.Module class, factory or instance, default=None
        The embedding network (MLP for 2-D X, Conv4 for images).
    hidden_layer_sizes : tuple of int, default=(64,)
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=1e-3
    max_epochs : int, default=10
    batch_size : int, default=1
        Episodes per optimiser step.
    callbacks, train_split, device, random_state, verbose, net_params
        See :class:`~sktransfer.base.NeuralEstimatorMixin`.

    Attributes
    ----------
    net_ : skorch.NeuralNet
    classes_ : ndarray
    n_way_, n_query_ : int
    n_slots_ : int
        The largest number of classes a support set may have.
    adapted_state_ : dict
    n_features_in_ : int
    input_shape_ : tuple

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.meta import BlackBoxMetaClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> bb = BlackBoxMetaClassifier(max_epochs=3, random_state=0).fit(X[y < 5], y[y < 5])
    >>> new = bb.adapt(X[y >= 5][:50], y[y >= 5][:50])
    >>> new.score(X[y >= 5][50:], y[y >= 5][50:]) > 0.3
    True
    """

    def __init__(
        self,
        d_model=64,
        n_heads=4,
        n_layers=2,
        n_way=None,
        k_shot=1,
        n_query=None,
        episodes_per_epoch=100,
        module=None,
        hidden_layer_sizes=(64,),
        optimizer=torch.optim.Adam,
        lr=1e-3,
        max_epochs=10,
        batch_size=1,
        callbacks=None,
        train_split=None,
        device="cpu",
        random_state=None,
        verbose=0,
        net_params=None,
    ):
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.n_way = n_way
        self.k_shot = k_shot
        self.n_query = n_query
        self.episodes_per_epoch = episodes_per_epoch
        self.module = module
        self.hidden_layer_sizes = hidden_layer_sizes
        self.optimizer = optimizer
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.callbacks = callbacks
        self.train_split = train_split
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.net_params = net_params

    def _check_params(self):
        d, h = int(self.d_model), int(self.n_heads)
        if d % h:
            raise ValueError(f"d_model={d} must be divisible by n_heads={h}")

    def _build_module(self, sample_shape, sizes, n_way, *, k_shot, n_query, device):
        trunk = self._make_trunk(sample_shape, sizes)
        return BlackBoxModule(trunk, trunk_width(trunk, sample_shape),
                              max(n_way, self._n_classes_fit), int(self.d_model),
                              int(self.n_heads), int(self.n_layers))

    def _resolve_episodes(self, y_enc, n_way, k_shot, n_query, groups=None):
        self._n_classes_fit = int(y_enc.max()) + 1
        return super()._resolve_episodes(y_enc, n_way, k_shot, n_query, groups)

    def _after_fit(self, net):
        self.n_slots_ = net.module_.n_slots
        del self._n_classes_fit

    def _check_support_classes(self, n_classes):
        super()._check_support_classes(n_classes)
        if n_classes > self.n_slots_:
            raise ValueError(f"the support set has {n_classes} classes but "
                             f"{type(self).__name__} reads at most n_slots_={self.n_slots_}")


