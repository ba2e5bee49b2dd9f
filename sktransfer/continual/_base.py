"""The shared base of the continual-learning estimators.

:class:`BaseContinualClassifier` implements the scikit-learn side
(``partial_fit`` one task at a time, ``fit`` over a task sequence, predict,
score, the accuracy matrix); :class:`ContinualNet` is the private skorch net
whose training step runs the strategies' hooks (see
:mod:`sktransfer.continual._strategies`); :class:`ContinualModule` is the
network: a trunk with one head (domain and class scenarios) or one head per
task (task scenario), with masks that switch off the classes a head must
not predict.
"""

from abc import ABCMeta, abstractmethod

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d
from skorch import NeuralNet
from skorch.dataset import unpack_data
from torch import nn

from .._accelerate import AcceleratedNetMixin
from .._weights import (
    CLASS_WEIGHT_CONSTRAINT,
    WeightedLossMixin,
    check_sample_weight,
    class_weight_table,
    combine_weights,
)
from ..base import (
    MASK_VALUE,
    AutocastMixin,
    LeanNotifyMixin,
    NeuralEstimatorMixin,
    to_tensor,
    trunk_output_shape,
)
from ._scenario_warning import warn_unsuited_scenario
from ._strategies import Task

__all__ = ["BaseContinualClassifier", "ContinualModule", "ContinualNet", "SCENARIOS"]

SCENARIOS = ("task", "domain", "class")


def _trunk_width(trunk, sample_shape):
    width = getattr(trunk, "out_features_", None)
    if width is None:
        width = np.prod(trunk_output_shape(trunk, sample_shape))
    return int(width)


def _check_eval_tasks(eval_tasks, n_expected, what):
    """``eval_tasks`` as a list of (X, y) pairs, one per task (``n_expected`` if known)."""
    if eval_tasks is None:
        return None
    if isinstance(eval_tasks, tuple) and len(eval_tasks) == 2 and hasattr(eval_tasks[0], "shape"):
        raise ValueError("eval_tasks must be a list of (X, y) pairs, one per task, not one "
                         "(X, y) pair")
    eval_tasks = list(eval_tasks)
    if n_expected is not None and len(eval_tasks) != n_expected:
        raise ValueError(f"eval_tasks has {len(eval_tasks)} test sets but "
                         f"{what.format(n=n_expected)}; pass one (X, y) pair per task")
    for j, pair in enumerate(eval_tasks):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"eval_tasks[{j}] must be an (X, y) pair")
    return eval_tasks


class ContinualModule(nn.Module):
    """A trunk with one linear head, or one head per task.

    ``head_mask`` (n_heads, n_classes) marks the classes each head may
    predict; the others get a logit of -1e4 (probability 0). In the task
    scenario each head is masked to its task's classes; in the class
    scenario the single head is masked to the classes seen so far; in the
    domain scenario nothing is masked.
    """

    def __init__(self, trunk, width, n_classes, scenario):
        super().__init__()
        self.trunk = trunk
        self.width = width
        self.n_classes = n_classes
        self.scenario = scenario
        self.heads = nn.ModuleList()
        n_heads = 0
        if scenario != "task":
            self.heads.append(nn.Linear(width, n_classes))
            n_heads = 1
        self.register_buffer("head_mask", torch.full((n_heads, n_classes), scenario == "domain"))

    @property
    def n_heads(self):
        return len(self.heads)

    def add_task(self, task_index, class_mask):
        """Make room for a task; ``class_mask`` (n_classes,) marks its classes.

        Returns True when new parameters were created (a new head).
        """
        mask = torch.as_tensor(class_mask, dtype=torch.bool, device=self.head_mask.device)
        if self.scenario == "task":
            if task_index < self.n_heads:
                self.head_mask[task_index] |= mask
                return False
            device = self.head_mask.device
            self.heads.append(nn.Linear(self.width, self.n_classes).to(device))
            self.head_mask = torch.cat([self.head_mask, mask[None]])
            return True
        if self.scenario == "class":
            self.head_mask[0] |= mask
        return False

    def features(self, X):
        return self.trunk(X).flatten(1)

    def heads_forward(self, feats, task_ids, masked=True):
        if self.n_heads == 1:
            out = self.heads[0](feats)
            return out.masked_fill(~self.head_mask[0], MASK_VALUE) if masked else out
        if task_ids is None:
            raise ValueError("task_ids are needed by a network with one head per task")
        first = int(task_ids[0])
        if bool((task_ids == first).all()):
            out = self.heads[first](feats)
        else:
            out = feats.new_empty(feats.shape[0], self.n_classes)
            for k in torch.unique(task_ids).tolist():
                rows = task_ids == k
                out[rows] = self.heads[k](feats[rows])
        return out.masked_fill(~self.head_mask[task_ids], MASK_VALUE) if masked else out

    def head_logits(self, X, heads):
        """Logits of each of ``heads`` for every row: (n, len(heads), n_classes)."""
        feats = self.features(X)
        return torch.stack([self.heads[k](feats).masked_fill(~self.head_mask[k], MASK_VALUE)
                            for k in heads], 1)

    def forward(self, X, task_ids=None, masked=True):
        """Logits of every row (of its own head); ``masked=False`` skips ``head_mask``."""
        return self.heads_forward(self.features(X), task_ids, masked=masked)


class ContinualNet(WeightedLossMixin, AutocastMixin, LeanNotifyMixin, NeuralNet):
    """skorch net whose training step runs the continual strategies' hooks.

    ``plugins`` is the list of strategy plugins; ``params`` the trainable
    parameters (refreshed by :meth:`refresh_params` when the network grows).
    A batch may carry per-row weights (see :mod:`sktransfer._weights`).
    """

    plugins = ()
    params = ()
    param_names = ()
    step_index = None
    # pickled with the module (one pickle keeps ``params`` the module's own
    # tensors) and mapped to the CPU on machines without CUDA
    cuda_dependent_attributes_ = NeuralNet.cuda_dependent_attributes_ + [
        "plugins", "params", "_step_params"]

    def training_device(self):
        """The device the network trains on."""
        return self.device

    def refresh_params(self):
        named = [(n, p) for n, p in self.module_.named_parameters() if p.requires_grad]
        self.param_names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.step_index = None

    def get_loss(self, y_pred, y_true, X=None, training=False):
        logits = y_pred
        if training:
            for plugin in self.plugins:
                logits = plugin.loss_logits(self, X, logits, y_true)
        loss = super().get_loss(logits, y_true, X=X, training=training)
        if training:
            for plugin in self.plugins:
                extra = plugin.extra_loss(self, X, y_pred, y_true)
                if extra is not None:
                    loss = loss + extra
        return loss

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        for plugin in self.plugins:
            Xi, yi = plugin.augment_batch(self, Xi, yi)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        self._backward(loss)
        if self.plugins:
            params = self.params
            if any(p.grad is None for p in params):
                self.step_index = [i for i, p in enumerate(params) if p.grad is not None]
                params = [params[i] for i in self.step_index]
            else:
                self.step_index = None  # every parameter
            grads = [p.grad for p in params]
            with torch.no_grad():
                for plugin in self.plugins:
                    plugin.record_gradients(self, params, grads)
                for plugin in self.plugins:
                    plugin.add_penalty_gradients(self, params, grads)
                for plugin in self.plugins:
                    plugin.project_gradients(self, params, grads)
            self._step_params = params
        return {"loss": loss, "y_pred": y_pred}

    def _backward(self, loss):
        loss.backward()

    def evaluation_step(self, batch, training=False):
        y_pred = super().evaluation_step(batch, training=training)
        if self.plugins and not training:
            Xi, _ = unpack_data(batch)
            with torch.no_grad():
                for plugin in self.plugins:
                    y_pred = plugin.prediction_scores(self, Xi, y_pred)
        return y_pred

    def train_step(self, batch, **fit_params):
        step = super().train_step(batch, **fit_params)
        if self.plugins:
            with torch.no_grad():
                for plugin in self.plugins:
                    plugin.after_step(self, self._step_params)
        return step

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        if self.plugins:
            with torch.no_grad():
                value = sum(float(p.penalty(self)) for p in self.plugins)
            self.history.record("train_penalty", value)
        super().on_epoch_end(net, dataset_train=dataset_train, dataset_valid=dataset_valid,
                             **kwargs)

    def select(self, values, index=None):
        """Entries of a per-parameter list for this step's parameters."""
        index = self.step_index if index is None else index
        return values if index is None else [values[i] for i in index]


class AcceleratedContinualNet(AcceleratedNetMixin, ContinualNet):
    """:class:`ContinualNet` trained through Hugging Face Accelerate.

    Every task's ``partial_fit`` prepares the grown network and the new
    optimizer again. The gradients are averaged across processes right after
    the backward pass, before the strategies read or change them, and the
    strategies' own computations (Fisher information, replay and A-GEM
    memories, LwF's old network) use the whole task on every process, so
    every process makes the same changes.
    """

    def train_step_single(self, batch, **fit_params):
        # ContinualNet's step (batch augmentation, gradient hooks of the
        # strategies), not AccelerateMixin's; infer runs under the accelerator's
        # autocast and _backward is Accelerate's
        return ContinualNet.train_step_single(self, batch, **fit_params)

    def _backward(self, loss):
        self.accelerator.backward(loss)
        self.sync_gradients()


class BaseContinualClassifier(NeuralEstimatorMixin, ClassifierMixin, BaseEstimator,
                              metaclass=ABCMeta):
    """Behaviour shared by the continual classifiers (not public API).

    Subclasses define ``__init__`` (the hyperparameters), ``_get_strategies()``
    (the list of :class:`~sktransfer.continual.Strategy` objects) and may
    override ``_build_module``.
    """

    __metadata_request__fit = {"task_ids": True}
    __metadata_request__predict = {"task_ids": True}
    __metadata_request__predict_proba = {"task_ids": True}
    __metadata_request__score = {"task_ids": True}

    _scenario_fixed = None

    _parameter_constraints = {"class_weight": CLASS_WEIGHT_CONSTRAINT}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.non_deterministic = False
        return tags

    # ----------------------------------------------------------------- hooks
    @abstractmethod
    def _get_strategies(self):
        """The strategy objects this estimator trains with."""

    def _get_scenario(self):
        scenario = self._scenario_fixed or self.scenario
        if scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {scenario!r}")
        return scenario

    def _build_module(self, sample_shape, sizes, n_classes, scenario):
        trunk = self._make_trunk(sample_shape, sizes)
        return ContinualModule(trunk, _trunk_width(trunk, sample_shape), n_classes, scenario)

    # ----------------------------------------------------------- validation
    def _check_y(self, y, n):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if y.shape[0] != n:
            raise ValueError(f"y has {y.shape[0]} labels but X has {n} samples")
        return y

    def _encode_y(self, y):
        unknown = np.setdiff1d(y, self.classes_) if hasattr(self, "classes_") else []
        if len(unknown):
            raise ValueError(
                f"y contains labels {unknown.tolist()[:10]} that are not in classes "
                f"{self.classes_.tolist()[:20]} given on the first call to partial_fit"
            )
        return np.searchsorted(self.classes_, y).astype(np.int64)

    @staticmethod
    def _is_scalar(value):
        return np.ndim(value) == 0

    def _task_index_of(self, task_id):
        """Index of a known task id, or None."""
        for k, known in enumerate(self.tasks_):
            if known == task_id:
                return k
        return None

    # -------------------------------------------------------------- training
    def partial_fit(self, X, y, classes=None, task_id=None, eval_tasks=None,
                    sample_weight=None):
        """Learn one task (experience), then consolidate.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n, C, H, W)
        y : array-like of shape (n_samples,)
        classes : array-like or None
            Every label of the whole sequence. Required on the first call
            (as in scikit-learn); later calls may pass it again and it must
            not change.
        task_id : hashable or None
            The task these samples belong to. Required in the ``"task"``
            scenario (it selects the head), except to continue the only task
            learned so far; otherwise optional: ``None`` starts a new task at
            every call. A task id seen before continues that task.
        eval_tasks : list of (X_j, y_j) or None
            One test set per task of the whole sequence, in the order the
            tasks are learned (the same list at every call). After learning,
            the accuracy on every test set is appended as a row to
            ``accuracy_matrix_``, so that after T calls it is the (T, T)
            matrix ``R`` that :meth:`fit` with ``eval_tasks`` gives. In the
            ``"task"`` scenario, a test set whose task has no head yet scores
            NaN.
        sample_weight : array-like of shape (n_samples,) or None
            Weight of each sample in the loss (see :meth:`fit`).

        Returns
        -------
        self

        Notes
        -----
        Everything is validated before the model changes: labels outside
        ``classes``, a different number of features, or a missing
        ``task_id`` raise a ``ValueError``. A call that fails later, during
        training (an exception from a callback, an interrupt), restores the
        network, its optimizer, the strategies' state (Fisher information,
        memories, masks) and every attribute as they were before the call.
        """
        return self._run("partial_fit", X, y, classes=classes, task_id=task_id,
                         eval_tasks=eval_tasks, sample_weight=sample_weight)

    def fit(self, X, y, task_ids=None, eval_tasks=None, sample_weight=None):
        """Reset, then learn the tasks one after another.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n, C, H, W)
        y : array-like of shape (n_samples,)
        task_ids : array-like of shape (n_samples,) or None
            The task of each row. Tasks are learned in the order in which
            they first appear. ``None`` makes one task of all rows.
        eval_tasks : list of (X_j, y_j) or None
            One test set per task, in the order the tasks are learned. After
            learning task ``i`` the accuracy on every test set ``j`` is
            stored in ``accuracy_matrix_[i, j]`` (the matrix ``R`` of the
            continual-learning literature; see
            :func:`sktransfer.metrics.average_accuracy`). In the ``"task"``
            scenario a task not learned yet has no head, and its entries
            (``j > i``) are NaN.
        sample_weight : array-like of shape (n_samples,) or None
            Weight of each sample in the loss, multiplied by ``class_weight``:
            each mini-batch's loss is the weighted mean of its rows' losses.
            The weights stay with their samples in a replay memory (and in
            joint training); the penalties' importance estimates (EWC's
            Fisher, SI, LwF's distillation) are unweighted.

        Returns
        -------
        self
        """
        return self._run("fit", X, y, task_ids=task_ids, eval_tasks=eval_tasks,
                         sample_weight=sample_weight)

    # --------------------------------------------------------- template hooks
    def _encode(self, ctx, X, y, task_ids=None, eval_tasks=None, classes=None, task_id=None,
                sample_weight=None):
        """The experiences of this call: a list of (X, y, task_id, weights), all validated."""
        X = self._validate_X(X, reset=ctx.new_model)
        y = self._check_y(y, X.shape[0])
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        data = {"X": X}
        if ctx.name == "fit":
            if task_ids is None:
                task_ids = np.zeros(X.shape[0], dtype=np.int64)
            task_ids = column_or_1d(task_ids)
            if task_ids.shape[0] != X.shape[0]:
                raise ValueError(f"task_ids has {task_ids.shape[0]} entries but X has "
                                 f"{X.shape[0]} samples")
            _, first_pos = np.unique(task_ids, return_index=True)
            order = task_ids[np.sort(first_pos)]
            eval_tasks = _check_eval_tasks(eval_tasks, len(order), "there are {n} tasks")
            classes = np.unique(y)
            weights = self._row_weights(sample_weight, y, classes, partial=False)
            experiences = [(X[task_ids == tid], y[task_ids == tid],
                            tid.item() if isinstance(tid, np.generic) else tid,
                            None if weights is None else weights[task_ids == tid])
                           for tid in order]
            data.update(order=order, eval_tasks=eval_tasks)
        else:
            if ctx.new_model and classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit "
                                 "(every label of the task sequence)")
            if classes is not None:
                classes = np.unique(column_or_1d(classes))
                if not ctx.new_model and not np.array_equal(classes, self.classes_):
                    raise ValueError(
                        f"classes={classes.tolist()[:20]} differs from the classes given on "
                        f"the first call to partial_fit {self.classes_.tolist()[:20]}")
            else:
                classes = self.classes_
            weights = self._row_weights(sample_weight, y, classes, partial=True)
            experiences = [(X, y, self._check_task_id(task_id, ctx.new_model), weights)]
            previous = None if ctx.new_model else getattr(self, "accuracy_matrix_", None)
            eval_tasks = _check_eval_tasks(
                eval_tasks, None if previous is None else previous.shape[1],
                "accuracy_matrix_ has {n} columns")
            data.update(eval_tasks=eval_tasks)
        unknown = np.setdiff1d(y, classes)
        if len(unknown):
            raise ValueError(
                f"y contains labels {unknown.tolist()[:10]} that are not in classes "
                f"{classes.tolist()[:20]}"
                + ("" if ctx.new_model else " given on the first call to partial_fit"))
        data.update(classes=classes, experiences=experiences)
        if ctx.new_model:
            data.update(scenario=self._get_scenario(), strategies=self._get_strategies())
        return data

    def _row_weights(self, sample_weight, y, classes, partial):
        """Each row's weight in the loss (``sample_weight`` times ``class_weight``), or None."""
        unknown = np.setdiff1d(y, classes)
        if len(unknown):
            return sample_weight  # reported with the labels, below
        table = class_weight_table(getattr(self, "class_weight", None),
                                   np.searchsorted(classes, y), classes, partial=partial)
        return combine_weights(sample_weight,
                               None if table is None else table[np.searchsorted(classes, y)])

    def _check_task_id(self, task_id, first):
        if task_id is not None and not self._is_scalar(task_id):
            raise ValueError(f"task_id must be one task identifier (a scalar), got "
                             f"{type(task_id).__name__}; use fit(X, y, task_ids=...) for "
                             "a sequence of tasks")
        if isinstance(task_id, np.generic):
            task_id = task_id.item()
        scenario = self._get_scenario() if first else self.scenario_
        if scenario == "task" and task_id is None:
            if first or len(self.tasks_) != 1:
                raise ValueError("task_id is required in the 'task' scenario: each task has "
                                 "its own head, chosen by task_id")
            task_id = self.tasks_[0]  # one task known: continue it
        return task_id

    def _build(self, ctx, data):
        scenario = data["scenario"]
        self.classes_ = data["classes"]
        self.scenario_ = scenario
        self.tasks_ = []
        self.task_classes_ = []
        self.n_experiences_ = 0
        module = self._build_module(self.input_shape_, ctx.hidden_layer_sizes,
                                    len(self.classes_), scenario)
        warn_unsuited_scenario(data["strategies"], scenario)
        plugins = [s.build(scenario) for s in data["strategies"]]
        net_cls = ContinualNet
        if getattr(self, "accelerator", None) is not None:
            net_cls = AcceleratedContinualNet
        net = net_cls(module, criterion=nn.CrossEntropyLoss, **self._net_kwargs(ctx.device))
        net.plugins = plugins
        return net

    def _dry_run_example(self, ctx, net, data):
        # the trunk (the heads come with the tasks); a network that grows whole
        # columns per task (progressive nets) has nothing to run before its first task
        features = getattr(net.module, "features", None)
        return None if features is None else (features, data["X"][:2])

    def _shared_in_rollback(self, net):
        shared = super()._shared_in_rollback(net)
        for plugin in net.plugins:
            shared.extend(plugin.rollback_shared())
        return shared

    def _train(self, ctx, net, data):
        self.net_ = net
        eval_tasks = data.get("eval_tasks")
        rows = []
        for i, (X, y, task_id, weights) in enumerate(data["experiences"]):
            if i:
                self._start_unit(ctx)
            self._learn_experience(X, y, task_id, weights)
            if eval_tasks is not None:
                rows.append(self._accuracy_row(eval_tasks))
        return np.array(rows) if rows else None

    def _accuracy_row(self, eval_tasks):
        """Accuracy on every test set, test set j being the j-th task learned."""
        row = np.full(len(eval_tasks), np.nan)
        for j, (Xj, yj) in enumerate(eval_tasks):
            known = j < len(self.tasks_)
            if self.scenario_ == "task" and not known:
                continue  # no head for a task not learned yet: NaN
            row[j] = self.score(Xj, yj, task_ids=self.tasks_[j] if known else None)
        return row

    def _record(self, ctx, net, data, rows):
        if rows is not None:
            previous = None if ctx.name == "fit" else getattr(self, "accuracy_matrix_", None)
            self.accuracy_matrix_ = rows if previous is None else np.vstack([previous, rows])
        return self

    def _learn_experience(self, X, y, task_id, weights=None):
        """Add the task (or continue it) and train on it (inside the seeded call)."""
        y_enc = self._encode_y(y)
        if task_id is None:
            task_id = len(self.tasks_)
            while self._task_index_of(task_id) is not None:
                task_id += 1
        k = self._task_index_of(task_id)
        if k is None:
            k = len(self.tasks_)
            self.tasks_ = self.tasks_ + [task_id]
            self.task_classes_ = self.task_classes_ + [np.unique(y)]
        else:
            self.task_classes_ = list(self.task_classes_)
            self.task_classes_[k] = np.union1d(self.task_classes_[k], y)
        self._learn_task(X, y_enc, k, weights)
        self.n_tasks_ = len(self.tasks_)

    def _inputs(self, X, t):
        return {"X": X, "task_ids": t}

    def _learn_task(self, X, y_enc, k, weights=None):
        net = self.net_
        class_mask = np.zeros(len(self.classes_), dtype=bool)
        class_mask[np.unique(y_enc)] = True
        (net.module_ if net.initialized_ else net.module).add_task(k, class_mask)
        if not net.initialized_:
            net.initialize()  # after the first task's head exists: it has parameters
        net.refresh_params()
        task = Task(k, to_tensor(X), torch.as_tensor(y_enc),
                    torch.full((X.shape[0],), k, dtype=torch.long),
                    None if weights is None else torch.as_tensor(weights))
        train = task
        for plugin in net.plugins:
            train = plugin.training_data(train)
        for plugin in net.plugins:
            plugin.before_task(net, task)
        net.initialize_optimizer()
        net.partial_fit(train.inputs(), train.y)
        for plugin in net.plugins:
            plugin.after_task(net, task)
        self.n_experiences_ += 1

    # ------------------------------------------------------------- predict
    def _task_index(self, n, task_ids):
        if self.scenario_ != "task":
            return torch.zeros(n, dtype=torch.long)
        if task_ids is None:
            if self.n_tasks_ == 1:
                return torch.zeros(n, dtype=torch.long)
            raise ValueError(
                f"task_ids is required in the 'task' scenario: the model has one head per "
                f"task for tasks {self.tasks_[:10]}; pass task_ids=... (one id, or one per row)"
            )
        if self._is_scalar(task_ids):
            task_ids = np.full(n, task_ids)
        task_ids = column_or_1d(task_ids)
        if task_ids.shape[0] != n:
            raise ValueError(f"task_ids has {task_ids.shape[0]} entries but X has {n} samples")
        out = np.empty(n, dtype=np.int64)
        for value in np.unique(task_ids):
            k = self._task_index_of(value)
            if k is None:
                raise ValueError(f"unknown task id {value!r}; the model knows tasks "
                                 f"{self.tasks_[:10]}")
            out[task_ids == value] = k
        return torch.as_tensor(out)

    def _forward(self, X, task_ids):
        check_is_fitted(self, "net_")
        X = self._validate_X(X, reset=False)
        t = self._task_index(X.shape[0], task_ids)
        Xt = to_tensor(X)
        with self._torch_context(device=str(self.net_.device)):
            logits = self.net_.forward(self._inputs(Xt, t), training=False)
        return torch.softmax(logits.float(), dim=-1).numpy()

    def predict_proba(self, X, task_ids=None):
        """Class probabilities over ``classes_``.

        Classes a head may not predict (another task's classes in the task
        scenario, classes not seen yet in the class scenario) get 0.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            Samples of the shape the model was fitted on.
        task_ids : scalar, array-like of shape (n_samples,) or None, default=None
            The task of the rows (one id for all, or one per row), among the
            learned ``tasks_``; needed in the ``"task"`` scenario once more
            than one task is learned, ignored in the others.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            The probability of every label of ``classes_``, float32.
        """
        return self._forward(X, task_ids)

    def predict(self, X, task_ids=None):
        """Predicted labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            Samples of the shape the model was fitted on.
        task_ids : scalar, array-like of shape (n_samples,) or None, default=None
            The task of the rows, as in :meth:`predict_proba`.

        Returns
        -------
        ndarray of shape (n_samples,)
            The most probable label of ``classes_`` for every row.
        """
        proba = self._forward(X, task_ids)
        return self.classes_[np.argmax(proba, axis=1)]

    def score(self, X, y, task_ids=None, sample_weight=None):
        """Accuracy of :meth:`predict` on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            Test samples.
        y : array-like of shape (n_samples,)
            Their true labels.
        task_ids : scalar, array-like of shape (n_samples,) or None, default=None
            The task of the rows, as in :meth:`predict_proba`.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Weight of each row in the accuracy.

        Returns
        -------
        float
            The (weighted) fraction of rows predicted right.
        """
        return accuracy_score(y, self.predict(X, task_ids=task_ids), sample_weight=sample_weight)
