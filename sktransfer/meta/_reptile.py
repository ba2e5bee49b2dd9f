"""ReptileClassifier: first-order meta-learning by moving toward adapted weights
(Nichol, Achiam & Schulman, 2018)."""

from numbers import Integral

import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval

from ..base import NeuralEstimatorMixin, parameter_constraints
from ._base import META_PARAMETER_CONSTRAINTS, FewShotClassifierMixin
from ._inner_loop import InnerLoopModule
from ._inner_update import SGDUpdate
from ._learner import Learner, build_trunk, trunk_width, use_fused_batch_norm

__all__ = ["ReptileClassifier", "ReptileModule"]


class ReptileModule(InnerLoopModule):
    """Reptile's outer update on top of the shared inner loop.

    For every task of a meta-batch, ``inner_steps`` inner steps of
    ``inner_update`` (plain SGD) on the task's data, support and query
    together, from the current weights ``theta`` give adapted weights
    ``phi`` (:meth:`~sktransfer.meta._inner_loop.InnerLoopModule.adapt_params`,
    which runs :func:`~sktransfer.meta.inner_loop`); the meta-gradient is the
    mean of ``theta - phi``, left in ``.grad`` for the outer optimizer.
    Adaptation after meta-training is the same inner loop on a support set.
    """

    def _upgrade_state(self, state):
        state = super()._upgrade_state(state)
        for key in ("first_order", "task_batching", "task_batching_reason", "compile_step"):
            state.pop(key, None)  # a ReptileModule pickled before 0.2 was a MAMLModule
        return state

    def meta_step(self, tasks, backward=True):
        """Mean loss and accuracy of the last inner step over a meta-batch; with
        ``backward``, the meta-gradient ``theta - phi`` in ``.grad``."""
        n_tasks = tasks[0].shape[0]
        params = dict(self.learner.named_parameters())
        theta = {k: v.detach() for k, v in params.items()}
        delta = {k: torch.zeros_like(params[k]) for k in self.adapt_names}
        total, correct = 0.0, 0.0
        for t in range(n_tasks):
            Xs, ys, Xq, yq = (a[t] for a in tasks)
            X, y = torch.cat([Xs, Xq]), torch.cat([ys, yq])
            phi, out, loss = self.adapt_params(theta, X, y, max(self.inner_steps, 1),
                                               self.inner_update, return_last=True)
            total += loss.detach()
            correct += (out.argmax(1) == y).float().mean().item()
            for k in delta:
                delta[k] += (theta[k] - phi[k]) / n_tasks
        if backward:
            for k, p in params.items():
                p.grad = delta[k] if k in delta else torch.zeros_like(p)
        return total / n_tasks, correct / n_tasks


@parameter_constraints(**{**META_PARAMETER_CONSTRAINTS,
                          "inner_steps": [Interval(Integral, 1, None, closed="left")]})
class ReptileClassifier(FewShotClassifierMixin, NeuralEstimatorMixin, ClassifierMixin,
                        BaseEstimator):
    """Reptile: first-order meta-learning without a query/support split in training.

    For each task of a meta-batch, ``inner_steps`` SGD steps at ``inner_lr``
    on all of the task's examples (support and query together) give adapted
    weights ``phi``; the meta-gradient is the mean of ``theta - phi``, which
    ``optimizer`` applies (plain SGD with ``lr`` = the step size epsilon of
    Nichol et al., 2018). Adapting to a new task is the same inner loop
    (``inner_steps_test`` steps) on its support set; :meth:`adapt` needs
    exactly ``n_way_`` classes, and ``predict`` after ``fit`` works as in
    :class:`MAMLClassifier`.

    Parameters
    ----------
    n_way : int or None, default=None
    k_shot : int, default=1
    n_query : int or None, default=None
        Extra examples per class in each training task (Reptile trains on
        ``k_shot + n_query`` per class).
    episodes_per_epoch : int, default=100
    inner_lr : float, default=0.1
    inner_steps : int, default=5
    inner_steps_test : int or None, default=None
        ``None`` uses ``inner_steps``.
    adapt_layers : "all", "head" or list of str, default="all"
        See :class:`MAMLClassifier`.
    module : None, nn.Module class, factory or instance, default=None
    hidden_layer_sizes : tuple of int, default=(64,)
    optimizer : torch optimizer class, default=torch.optim.SGD
    lr : float, default=1.0
        The outer step size epsilon (``1.0`` jumps to the mean adapted weights).
    max_epochs : int, default=10
    batch_size : int, default=4
        Tasks per meta-iteration.
    callbacks, train_split, device, random_state, verbose, net_params
        See :class:`~sktransfer.base.NeuralEstimatorMixin`.

    Attributes
    ----------
    net_ : skorch.NeuralNet
    classes_ : ndarray
    n_way_, n_query_ : int
    adapted_state_ : dict of str to Tensor
    n_features_in_ : int
    input_shape_ : tuple

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sktransfer.meta import ReptileClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16
    >>> rep = ReptileClassifier(n_way=5, max_epochs=2, random_state=0).fit(X[y < 5], y[y < 5])
    >>> rep.adapt(X[y >= 5][:25], y[y >= 5][:25]).classes_.tolist()
    [5, 6, 7, 8, 9]
    """

    _fixed_way = True

    def __init__(
        self,
        n_way=None,
        k_shot=1,
        n_query=None,
        episodes_per_epoch=100,
        inner_lr=0.1,
        inner_steps=5,
        inner_steps_test=None,
        adapt_layers="all",
        module=None,
        hidden_layer_sizes=(64,),
        optimizer=torch.optim.SGD,
        lr=1.0,
        max_epochs=10,
        batch_size=4,
        callbacks=None,
        train_split=None,
        device="cpu",
        random_state=None,
        verbose=0,
        net_params=None,
    ):
        self.n_way = n_way
        self.k_shot = k_shot
        self.n_query = n_query
        self.episodes_per_epoch = episodes_per_epoch
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.inner_steps_test = inner_steps_test
        self.adapt_layers = adapt_layers
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

    def _adapt_options(self):
        steps = self.inner_steps if self.inner_steps_test is None else self.inner_steps_test
        return {"steps": int(steps)}

    def _build_module(self, sample_shape, sizes, n_way, *, k_shot, n_query, device):
        trunk = build_trunk(self, sample_shape, sizes)
        learner = Learner(trunk, trunk_width(trunk, sample_shape), n_way)
        if self.module is None:
            use_fused_batch_norm(learner)  # Reptile never vmaps
        steps = self.inner_steps if self.inner_steps_test is None else self.inner_steps_test
        return ReptileModule(learner, SGDUpdate(self.inner_lr), adapt_layers=self.adapt_layers,
                             inner_steps=self.inner_steps, inner_steps_test=steps)
