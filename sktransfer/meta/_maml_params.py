"""The parameter checks and the meta-model shared by MAMLClassifier and MAMLRegressor."""

from ._inner_update import InnerUpdate
from ._learner import Learner, build_trunk, trunk_width
from ._maml_module import build_maml_module

__all__ = ["MAMLParamsMixin"]


class MAMLParamsMixin:
    """Parameter checks and the meta-model shared by the MAML-family estimators."""

    def _check_params(self):
        update = self.inner_optimizer
        if not isinstance(update, str) and not (isinstance(update, type)
                                                and issubclass(update, InnerUpdate)):
            raise ValueError("inner_optimizer must be 'sgd', 'meta_lstm' or an InnerUpdate "
                             f"subclass, got {update!r}")
        if self.learn_inner_lr and update != "sgd":
            name = repr(update) if isinstance(update, str) else update.__name__
            raise ValueError(f"learn_inner_lr=True (Meta-SGD) and inner_optimizer={name} "
                             "are two different learned update rules; choose one")

    def _maml_module(self, sample_shape, sizes, n_out, support_size, query_size, device, task):
        trunk = build_trunk(self, sample_shape, sizes)
        learner = Learner(trunk, trunk_width(trunk, sample_shape), n_out)
        return build_maml_module(
            learner, inner_lr=self.inner_lr, inner_steps=self.inner_steps,
            inner_steps_test=self.inner_steps_test, first_order=self.first_order,
            learn_inner_lr=self.learn_inner_lr, adapt_layers=self.adapt_layers,
            inner_optimizer=self.inner_optimizer, task_batching=self.task_batching,
            compile_step=self.compile_step, task=task, device=device,
            sample_shape=sample_shape, support_size=support_size, query_size=query_size,
            fuse_batch_norm=self.module is None)

    def _adapt_options(self):
        steps = self.inner_steps if self.inner_steps_test is None else self.inner_steps_test
        return {"steps": int(steps)}

    def _after_fit(self, net):
        runner = net.module_.runner
        self.task_batching_ = runner.task_batching
        self.task_batching_reason_ = runner.reason
