"""The private skorch net behind the fine-tuning estimators.

It differs from a plain :class:`skorch.NeuralNet` in these hooks:

* ``initialize_optimizer`` builds one parameter group per layer group, with
  the group's learning-rate scale times ``lr`` (discriminative learning
  rates); frozen parameters are in the optimizer too and simply get no
  gradient, so opening a group later needs no new optimizer;
* ``on_epoch_begin`` applies the plan of the epoch: which parameters require
  a gradient, which batch-norm layers keep their running statistics; it
  records ``trainable_groups`` and ``trainable_params`` in ``history``;
* ``infer`` puts those batch-norm layers in eval mode during training;
* ``get_loss`` adds the L2-SP penalty and the feature regularisers (BSS,
  DELTA) while training; ``infer`` captures the features they read.

A batch may carry per-row weights (see :mod:`sktransfer._weights`): then it
is a dict ``{"X": X, "sample_weight": w}`` and the loss a weighted mean.
"""

import torch
from skorch import NeuralNet

from .._weights import WeightedLossMixin
from ..base import AutocastMixin, LeanNotifyMixin
from ._regularizers import Capture

__all__ = ["FineTuneNet"]


class FineTuneNet(WeightedLossMixin, AutocastMixin, LeanNotifyMixin, NeuralNet):
    """skorch net that trains a pretrained network following a :class:`TransferPlan`."""

    def __init__(self, *args, plan=None, penalty=None, regularizers=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.plan = plan
        self.penalty = penalty
        self.regularizers = list(regularizers)

    # ------------------------------------------------------------- optimizer
    def initialize_optimizer(self, triggered_directly=None):
        kwargs = self.get_params_for("optimizer")
        if "param_groups" in kwargs:
            raise ValueError("the fine-tuning estimators build the optimizer's parameter groups "
                             "themselves; set backbone_lr / layer_lr_decay instead of "
                             "optimizer__param_groups")
        lr = kwargs.pop("lr", self.lr)
        params = dict(self.module_.named_parameters())
        groups = [g for g in self.plan.backbone] + [self.plan.head]
        pgroups = [{"params": [params[n] for n in g], "lr": lr * scale}
                   for g, scale in zip(groups, self.plan.lr_scales) if g]
        self.optimizer_ = self.optimizer(pgroups, lr=lr, **kwargs)
        return self

    def rebuild_optimizer(self):
        """A new optimizer over the module's current parameters (after the strategy
        changed the network), keeping the state of the parameters the old one had."""
        old = self.optimizer_
        self.initialize_optimizer()
        for group in self.optimizer_.param_groups:
            for p in group["params"]:
                if p in old.state:
                    self.optimizer_.state[p] = old.state[p]
        return self

    def count_trainable(self, epoch):
        """The number of parameters that train in epoch ``epoch`` (0-based)."""
        trainable = self.plan.trainable_names(epoch)
        return int(sum(p.numel() for n, p in self.module_.named_parameters() if n in trainable))

    # ------------------------------------------------------------ the plan
    def _apply_plan(self, epoch):
        trainable = self.plan.trainable_names(epoch)
        params = dict(self.module_.named_parameters())
        for name, p in params.items():
            p.requires_grad_(name in trainable)
        self.frozen_bn_ = [self.module_.get_submodule(m) for m in
                             self.plan.eval_layers(epoch)]
        self.named_params_ = params
        return trainable

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        super().on_epoch_begin(net, dataset_train=dataset_train, dataset_valid=dataset_valid,
                               **kwargs)
        epoch = len(self.history) - 1
        trainable = self._apply_plan(epoch)
        self.history.record("trainable_groups", self.plan.n_open(epoch))
        self.history.record("trainable_params", int(sum(
            p.numel() for n, p in self.named_params_.items() if n in trainable)))

    def infer(self, x, **fit_params):
        if not self.module_.training:
            return super().infer(x, **fit_params)
        for layer in self.__dict__.get("frozen_bn_", ()):
            layer.eval()
        regularizers = self.__dict__.get("regularizers") or ()
        if not regularizers:
            return super().infer(x, **fit_params)
        # the regularisers read inputs and outputs of submodules of this pass
        wanted = sorted({key for r in regularizers for key in r.watch()})
        with Capture(self.module_, wanted) as seen:
            out = super().infer(x, **fit_params)
        self.captured_ = seen
        return out

    def get_loss(self, y_pred, y_true, X=None, training=False):
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if training and self.penalty is not None:
            extra = self.penalty(self.named_params_)
            if extra is not None:
                loss = loss + extra
        if training and self.__dict__.get("regularizers"):
            inputs = X.get("X") if isinstance(X, dict) else X
            inputs = torch.as_tensor(inputs).to(self.device)
            for r in self.regularizers:
                extra = r.penalty(self.captured_, inputs)
                if extra is not None:
                    loss = loss + extra
            self.captured_ = None
        return loss

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("frozen_bn_", None)
        state.pop("named_params_", None)
        state.pop("captured_", None)
        return state
