"""What MultiTaskClassifier and MultiTaskRegressor share: inputs, fit, forward."""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ..base import COMMON_PARAMETER_CONSTRAINTS, NeuralEstimatorMixin, to_tensor
from ._architectures import ARCHITECTURES, Architecture, build_architecture
from ._net import AcceleratedMultiTaskNet, MultiTaskLoss, MultiTaskModule, MultiTaskNet
from ._targets import (
    _is_missing,
    classes_template,
    encode_multi_target,
    encode_task_format,
    encode_task_ids,
    resolve_task_types,
    validate_task_ids,
)
from ._weighting import WEIGHTINGS, Weighting, get_weighting


class MultiTaskMixin(NeuralEstimatorMixin):
    """Fit and forward pass of the multi-task estimators.

    Subclasses set ``_default_task_type`` ("classification" or "regression").
    """

    _default_task_type = "classification"

    _parameter_constraints = {
        **COMMON_PARAMETER_CONSTRAINTS,
        "architecture": [StrOptions(set(ARCHITECTURES)), Architecture, nn.Module],
        "weighting": [StrOptions(set(WEIGHTINGS)), Weighting],
        "task_weights": ["array-like", dict, None],
        "task_column": [Integral, str, None],
        "missing_label": [Real, str, None],
        "task_types": [list, tuple, dict, None],
    }

    __metadata_request__fit = {"task_ids": True}
    __metadata_request__partial_fit = {"task_ids": True}
    __metadata_request__predict = {"task_ids": True}
    __metadata_request__score = {"task_ids": True}

    # ------------------------------------------------------------------ input
    def _split_task_column(self, X, task_ids):
        if self.task_column is None:
            return X, task_ids
        if task_ids is not None:
            raise ValueError("pass task ids either as task_ids= or through task_column=, not both")
        col = self.task_column
        if hasattr(X, "columns"):
            if col not in X.columns:
                raise ValueError(f"task_column={col!r} is not a column of X; "
                                 f"the columns are {list(X.columns)}")
            return X.drop(columns=[col]), np.asarray(X[col])
        Xa = np.asarray(X)
        if Xa.ndim != 2 or not isinstance(col, (int, np.integer)) or not (
            -Xa.shape[1] <= col < Xa.shape[1]
        ):
            raise ValueError(
                f"task_column={col!r} must be a column index of a 2-D X (or a column name of "
                f"a DataFrame); X has shape {Xa.shape}"
            )
        return np.delete(Xa, col, axis=1), Xa[:, col]

    def _task_index(self, X_n, task_ids):
        """Encoded task per row for predict; None in the multi-target format."""
        if self.multi_target_:
            if task_ids is not None:
                raise ValueError("this model was fitted on a 2-D Y (one column per task); "
                                 "predict returns every task and takes no task_ids")
            return None
        if task_ids is None:
            if self.n_tasks_ == 1:
                return np.zeros(X_n, dtype=np.int64)
            raise ValueError(
                f"task_ids is required: this model was fitted on {self.n_tasks_} tasks "
                f"{self.tasks_.tolist()[:10]}; pass task_ids=... (or use task_column)"
            )
        task_ids = validate_task_ids(task_ids, X_n)
        try:
            return encode_task_ids(task_ids, self.tasks_)
        except TypeError as exc:
            raise ValueError(f"task_ids of type {task_ids.dtype} cannot be compared with the "
                             f"fitted tasks {self.tasks_.tolist()[:10]}") from exc

    @staticmethod
    def _inputs(X, t):
        X = to_tensor(X)
        return {"X": X} if t is None else {"X": X, "task_ids": torch.as_tensor(t)}

    # -------------------------------------------------------------------- fit
    def fit(self, X, y=None, task_ids=None):
        """Fit the network on all tasks.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n, C, H, W)
        y : array-like of shape (n_samples,) or (n_samples, n_tasks)
            1-D labels (with ``task_ids`` for several tasks), or a 2-D
            target with one column per task and missing labels.
        task_ids : array-like of shape (n_samples,), default=None
            The task of each row (1-D ``y`` only).

        Returns
        -------
        self
        """
        return self._run("fit", X, y, task_ids=task_ids)

    def partial_fit(self, X, y=None, task_ids=None, classes=None):
        """Train one epoch on this data, starting from the current weights.

        The first call builds the network; it fixes the tasks (the task ids
        seen, the keys of ``classes`` or of ``task_types``), the labels of
        every classification task (``classes`` is then required, as in
        scikit-learn) and the target scaling of regression tasks (from this
        first data). Later calls check that labels and tasks stay within
        those. A call that fails, in validation or in training, leaves the
        model exactly as it was.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n, C, H, W)
        y : array-like of shape (n_samples,) or (n_samples, n_tasks)
        task_ids : array-like of shape (n_samples,), default=None
        classes : array-like, list or dict, default=None
            The labels of each classification task: an array for a single
            task, a dict from task to labels, or a list aligned with the
            sorted tasks (the columns of a 2-D ``Y``). Required on the first
            call when there is a classification task; ignored later.

        Returns
        -------
        self
        """
        return self._run("partial_fit", X, y, task_ids=task_ids, classes=classes)

    # --------------------------------------------------------- template hooks
    def _encode(self, ctx, X, y, task_ids=None, classes=None):
        if ctx.new_model:
            first_partial = ctx.name == "partial_fit"
            return self._prepare(X, y, task_ids, reset=True, classes=classes,
                                 first_partial=first_partial)
        self._check_same_classes(classes)
        return self._prepare(X, y, task_ids, reset=False)

    def _build(self, ctx, data):
        X, _, _, tasks, infos, _ = data
        net = self._build_net(X, tasks, infos, ctx.device, ctx.hidden_layer_sizes)
        if ctx.name == "partial_fit":
            net.initialize()
        return net

    def _dry_run_example(self, ctx, net, data):
        X, t_enc, *_ = data
        module = net.module_ if net.initialized_ else net.module
        t = None if t_enc is None else torch.as_tensor(t_enc[:2])
        return (lambda xb: module(xb, t)), X[:2]

    def _train(self, ctx, net, data):
        X, t_enc, y_enc, *_ = data
        inputs, target = self._inputs(X, t_enc), torch.as_tensor(y_enc)
        if ctx.name == "fit":
            net.fit(inputs, target)
        else:
            net.partial_fit(inputs, target, epochs=1)

    def _record(self, ctx, net, data, result):
        if ctx.new_model:
            X, _, _, tasks, infos, multi_target = data
            self._set_fitted(net, X, tasks, infos, multi_target)
        return self

    def _check_same_classes(self, classes):
        if classes is None:
            return
        fitted = [info.get("classes") for info in self._task_info]
        try:
            given = classes_template(classes, self.tasks_, self.task_types_)
        except ValueError as exc:
            raise ValueError(f"classes differ from the first call to partial_fit: {exc}") from exc
        for name, a, b in zip(self.tasks_.tolist(), fitted, given):
            if b is not None and not np.array_equal(a, b["classes"]):
                raise ValueError(
                    f"classes of task {name!r} differ from the first call to partial_fit: "
                    f"{b['classes'].tolist()[:10]} vs {a.tolist()[:10]}")

    def _prepare(self, X, y, task_ids, reset, classes=None, first_partial=False):
        """Validate and encode; with ``reset=False`` against the fitted tasks and labels."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        X, task_ids = self._split_task_column(X, task_ids)
        X = self._validate_X(X, reset=reset)
        n = X.shape[0]
        y_arr = y if hasattr(y, "columns") else np.asarray(y)
        multi_target = getattr(y_arr, "ndim", 1) == 2 and not (
            y_arr.shape[1] == 1 and task_ids is not None)
        if not reset and multi_target != self.multi_target_:
            raise ValueError(
                "this model was fitted on " + ("a 2-D Y" if self.multi_target_ else
                                               "a 1-D y with task ids")
                + "; partial_fit must get the same format")
        template, tasks = None, None
        if not reset:
            template, tasks = self._task_info, self.tasks_
        if multi_target:
            if task_ids is not None:
                raise ValueError("task_ids cannot be combined with a 2-D Y: each column of Y "
                                 "is already a task")
            if y_arr.shape[0] != n:
                raise ValueError(f"Y has {y_arr.shape[0]} rows but X has {n} samples")
            if first_partial:
                names = (np.asarray(y_arr.columns) if hasattr(y_arr, "columns")
                         else np.arange(y_arr.shape[1]))
                types = resolve_task_types(self.task_types, names, self._default_task_type)
                template = classes_template(classes, names, types)
            y_enc, tasks, infos = encode_multi_target(
                y_arr, self.missing_label, self.task_types, self._default_task_type,
                template=template, allow_empty=template is not None)
            t_enc = None
        else:
            if first_partial:
                seen = [] if task_ids is None else list(np.unique(validate_task_ids(task_ids, n)))
                for extra in (classes, self.task_types):
                    if isinstance(extra, dict) and task_ids is not None:
                        seen += list(extra)
                tasks = np.unique(np.asarray(seen)) if seen else np.array([0])
                types = resolve_task_types(self.task_types, tasks, self._default_task_type)
                template = classes_template(classes, tasks, types)
            y_enc, t_enc, tasks, infos = encode_task_format(
                y_arr, task_ids, n, self.task_types, self._default_task_type,
                tasks=tasks, template=template)
        return X, t_enc, y_enc, tasks, infos, multi_target

    def _build_net(self, X, tasks, infos, device, sizes):
        """The skorch net for these tasks (call inside the seeded torch context)."""
        n_tasks = len(tasks)
        types = [info["type"] for info in infos]
        strategy = get_weighting(self.weighting, self.task_weights, list(tasks))
        n_out = max(info["n_outputs"] for info in infos)
        class_mask = np.zeros((n_tasks, n_out), dtype=bool)
        for k, info in enumerate(infos):
            class_mask[k, : info["n_outputs"]] = True
        example = torch.as_tensor(X[:2])

        def make_trunk(n_in):
            shape = (n_in,) if n_in is not None else X.shape[1:]
            return self._make_trunk(shape, sizes)

        model = build_architecture(self.architecture, make_trunk, example, n_tasks, n_out)
        module = MultiTaskModule(model, strategy.build(n_tasks, types), class_mask)
        net_cls = MultiTaskNet
        if getattr(self, "accelerator", None) is not None:
            net_cls = AcceleratedMultiTaskNet
            net_cls.check_weighting(module.weighter, self.accelerator, self.weighting)
        return net_cls(
            module,
            criterion=MultiTaskLoss,
            criterion__n_tasks=n_tasks,
            criterion__regression=[tp == "regression" for tp in types],
            **self._net_kwargs(device),
        )

    def _set_fitted(self, net, X, tasks, infos, multi_target):
        self.net_ = net
        self.multi_target_ = multi_target
        self.tasks_ = np.asarray(tasks)
        self.n_tasks_ = len(tasks)
        self.task_types_ = [info["type"] for info in infos]
        self._task_info = infos
        self.input_shape_ = tuple(X.shape[1:])
        self._set_output_attributes(infos)

    def _set_output_attributes(self, infos):
        """Subclass hook: set classes_ and friends from the per-task infos."""

    # --------------------------------------------------------------- decoding
    def _decode(self, out, k):
        """Task k's predictions from its (n, C) output rows."""
        info = self._task_info[k]
        if info["type"] == "regression":
            return out[:, 0] * info["std"] + info["mean"]
        classes = info["classes"]
        return classes[np.argmax(out[:, : len(classes)], axis=1)]

    def _predict(self, X, task_ids):
        out, t = self._forward(X, task_ids)
        if self.multi_target_:
            cols = [self._decode(out[:, k], k) for k in range(self.n_tasks_)]
            if len({c.dtype for c in cols}) > 1 and any(c.dtype.kind not in "biuf" for c in cols):
                return np.array(cols, dtype=object).T
            return np.column_stack(cols)
        pred = None
        for k in range(self.n_tasks_):
            rows = t == k
            if rows.any():
                values = self._decode(out[rows], k)
                if pred is None:
                    dtype = (self._prediction_dtype() if self._prediction_dtype() is not None
                             else values.dtype)
                    pred = np.empty(out.shape[0], dtype=dtype)
                pred[rows] = values
        return pred

    def _prediction_dtype(self):
        return None

    def _task_scores(self, X, y, task_ids, sample_weight):
        """One score per task: accuracy (classification) or R^2 (regression)."""
        pred = self.predict(X, task_ids=task_ids)
        scores = []
        if self.multi_target_:
            Y = np.asarray(y)
            if Y.ndim == 1:
                Y = Y[:, None]
            for k in range(self.n_tasks_):
                keep = ~_is_missing(Y[:, k], self.missing_label)
                if keep.any():
                    sw = None if sample_weight is None else np.asarray(sample_weight)[keep]
                    scores.append(self._score_task(k, Y[keep, k], pred[keep, k], sw))
            return scores
        _, task_ids = self._split_task_column(X, task_ids)
        t = self._task_index(len(pred), task_ids)
        y = np.asarray(y)
        for k in range(self.n_tasks_):
            rows = t == k
            if rows.any():
                sw = None if sample_weight is None else np.asarray(sample_weight)[rows]
                scores.append(self._score_task(k, y[rows], pred[rows], sw))
        return scores

    def _score_task(self, k, y_true, y_pred, sample_weight):
        if self._task_info[k]["type"] == "regression":
            y_true = np.asarray(y_true, dtype=np.float64)
            y_pred = np.asarray(y_pred, dtype=np.float64)
            if len(y_true) < 2:
                return float(np.nan)
            return r2_score(y_true, y_pred, sample_weight=sample_weight)
        classes = self._task_info[k]["classes"]
        if np.asarray(y_true).dtype == object and classes.dtype != object:
            y_true = np.asarray(y_true).astype(classes.dtype)
        return accuracy_score(y_true, y_pred, sample_weight=sample_weight)

    # ---------------------------------------------------------------- predict
    def _forward(self, X, task_ids):
        """Network outputs (logits) and each row's encoded task."""
        check_is_fitted(self, "net_")
        X, task_ids = self._split_task_column(X, task_ids)
        X = self._validate_X(X, reset=False)
        t = self._task_index(X.shape[0], task_ids)
        with self._torch_context(device=str(self.net_.device)):
            logits = self.net_.forward(self._inputs(X, t), training=False)
        return logits.float().numpy(), t

