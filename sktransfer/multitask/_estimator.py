"""What MultiTaskClassifier and MultiTaskRegressor share: inputs, fit, forward."""

import copy
from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import softmax
from sklearn import get_config
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import column_or_1d
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._weights import SAMPLE_WEIGHT, check_sample_weight, class_weight_table, combine_weights
from ..base import COMMON_PARAMETER_CONSTRAINTS, NeuralEstimatorMixin, to_tensor
from ._architectures import Architecture
from ._hard import HardSharingNet
from ._net import AcceleratedMultiTaskNet, MultiTaskLoss, MultiTaskModule, MultiTaskNet
from ._registry import ARCHITECTURES, WEIGHTINGS, build_architecture, get_weighting
from ._targets import (
    _is_missing,
    classes_template,
    encode_multi_target,
    encode_task_format,
    encode_task_ids,
    plain_array,
    resolve_task_types,
    target_columns,
    validate_task_ids,
)
from ._weighting_base import Weighting


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
                raise ValueError(_missing_column_message(col, list(X.columns)))
            return X.drop(columns=[col]), np.asarray(X[col])
        Xa = np.asarray(X)
        if isinstance(col, str):
            raise ValueError(
                f"task_column={col!r} is a column name, but X is a NumPy array (shape "
                f"{Xa.shape}), which has no column names: a ColumnTransformer or another "
                f"transformer before the estimator returns arrays. Keep the names with "
                f'.set_output(transform="pandas") on that transformer (or '
                f'sklearn.set_config(transform_output="pandas")); a ColumnTransformer '
                f"then prefixes them (e.g. 'remainder__{col}') unless it has "
                f"verbose_feature_names_out=False. Or give the column's integer index, "
                f"task_column=<int>."
            )
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
            raise ValueError(_missing_task_ids_message(self.n_tasks_, self.tasks_))
        task_ids = validate_task_ids(task_ids, X_n)
        try:
            return encode_task_ids(task_ids, self.tasks_)
        except TypeError as exc:
            raise ValueError(f"task_ids of type {task_ids.dtype} cannot be compared with the "
                             f"fitted tasks {self.tasks_.tolist()[:10]}") from exc

    @staticmethod
    def _inputs(X, t, sample_weight=None):
        inputs = {"X": to_tensor(X)}
        if t is not None:
            inputs["task_ids"] = torch.as_tensor(t)
        if sample_weight is not None:
            inputs[SAMPLE_WEIGHT] = torch.as_tensor(sample_weight)
        return inputs

    # -------------------------------------------------------------------- fit
    def fit(self, X, y=None, task_ids=None, sample_weight=None):
        """Fit the network on all tasks.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n, C, H, W)
        y : array-like of shape (n_samples,) or (n_samples, n_tasks)
            1-D labels (with ``task_ids`` for several tasks), or a 2-D
            target with one column per task and missing labels (a
            DataFrame's columns name the tasks and keep their dtypes). A
            column vector (n_samples, 1) is 1-D ``y``, raveled with a
            ``DataConversionWarning``.
        task_ids : array-like of shape (n_samples,), default=None
            The task of each row (1-D ``y`` only): one entry per row.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each row in the loss (of every task of the row, for a
            2-D ``Y``): each task's loss is the weighted mean over its
            labelled rows in the batch. Multiplied by ``class_weight`` where
            the estimator has one. ``None``: every row weighs 1.

        Returns
        -------
        self
        """
        return self._run("fit", X, y, task_ids=task_ids, sample_weight=sample_weight)

    def partial_fit(self, X, y=None, task_ids=None, classes=None, sample_weight=None):
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
        sample_weight : array-like of shape (n_samples,), default=None
            As in :meth:`fit`.

        Returns
        -------
        self
        """
        return self._run("partial_fit", X, y, task_ids=task_ids, classes=classes,
                         sample_weight=sample_weight)

    # --------------------------------------------------------- template hooks
    def _encode(self, ctx, X, y, task_ids=None, classes=None, sample_weight=None):
        if ctx.new_model:
            first_partial = ctx.name == "partial_fit"
            data = self._prepare(X, y, task_ids, reset=True, classes=classes,
                                 first_partial=first_partial, sample_weight=sample_weight)
        else:
            self._check_same_classes(classes)
            data = self._prepare(X, y, task_ids, reset=False, sample_weight=sample_weight)
        X, t_enc, y_enc, tasks, infos, multi_target, sw = data
        weights = self._row_weights(sw, y_enc, t_enc, tasks, infos,
                                    partial=ctx.name == "partial_fit")
        return X, t_enc, y_enc, tasks, infos, multi_target, weights

    def _row_weights(self, sw, y_enc, t_enc, tasks, infos, partial):
        """Each row's weight in the loss, (n,) or (n, T) for a 2-D ``Y``; None if uniform.

        ``sw`` is the validated ``sample_weight`` (see :func:`check_sample_weight`).
        """
        tables = _class_weight_tables(getattr(self, "class_weight", None), y_enc, t_enc,
                                      tasks, infos, partial)
        if tables is None:
            return sw
        cw = np.ones(y_enc.shape, dtype=np.float32)
        for k, table in enumerate(tables):
            if table is None:
                continue
            if t_enc is None:
                col = y_enc[:, k]
                labelled = col >= 0  # False for NaN (missing) too
                cw[:, k] = np.where(labelled, table[np.where(labelled, col, 0).astype(np.int64)],
                                    1.0)
            else:
                rows = t_enc == k
                cw[rows] = table[y_enc[rows].astype(np.int64)]
        return combine_weights(sw, cw)

    def _build(self, ctx, data):
        X, _, _, tasks, infos, *_ = data
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
        X, t_enc, y_enc, *_, weights = data
        inputs, target = self._inputs(X, t_enc, weights), torch.as_tensor(y_enc)
        if ctx.name == "fit":
            net.fit(inputs, target)
        else:
            net.partial_fit(inputs, target, epochs=1)

    def _record(self, ctx, net, data, result):
        if ctx.new_model:
            _, _, _, tasks, infos, multi_target, _ = data
            self._set_fitted(net, tasks, infos, multi_target)
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

    def _prepare(self, X, y, task_ids, reset, classes=None, first_partial=False,
                 sample_weight=None):
        """Validate and encode; with ``reset=False`` against the fitted tasks and labels.

        Returns ``(X, t_enc, y_enc, tasks, infos, multi_target, sample_weight)``,
        the last validated (None when uniform).
        """
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        X, task_ids = self._split_task_column(X, task_ids)
        X = self._validate_X(X, reset=reset)
        n = X.shape[0]
        sample_weight = check_sample_weight(sample_weight, n)
        y_arr = y if hasattr(y, "columns") else np.asarray(y)
        if getattr(y_arr, "ndim", 1) == 2 and y_arr.shape[1] == 1 and (
                reset or not self.multi_target_):
            # as scikit-learn's estimators do: a column vector is one target, raveled
            # with a DataConversionWarning (a model fitted on one column of a 2-D Y
            # by an older release keeps its format)
            y_arr = column_or_1d(y_arr, warn=True)
        multi_target = getattr(y_arr, "ndim", 1) == 2
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
                template=template, allow_empty=template is not None,
                sample_weight=sample_weight)
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
                tasks=tasks, template=template, sample_weight=sample_weight)
        return X, t_enc, y_enc, tasks, infos, multi_target, sample_weight

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
            task_names=np.asarray(tasks).tolist(),
            criterion=MultiTaskLoss,
            criterion__n_tasks=n_tasks,
            criterion__regression=[tp == "regression" for tp in types],
            **self._net_kwargs(device),
        )

    def _set_fitted(self, net, tasks, infos, multi_target):
        self.net_ = net
        self.multi_target_ = multi_target
        self.tasks_ = np.asarray(tasks)
        self.n_tasks_ = len(tasks)
        self.task_types_ = [info["type"] for info in infos]
        self._task_info = infos
        self._set_output_attributes(infos)

    def _set_output_attributes(self, infos):
        """Set ``task_classes_`` (and ``classes_``) from the per-task infos.

        ``classes_`` is set when there is a classification task: all labels of
        all tasks in the task format (the columns of ``predict_proba``), one
        array per task (None for a regression task) for a 2-D ``Y``.
        """
        self.task_classes_ = [info.get("classes") for info in infos]
        known = [c for c in self.task_classes_ if c is not None]
        if not known and not self._classes_always:
            return
        if self.multi_target_:
            self.classes_ = list(self.task_classes_)
        else:
            self.classes_ = np.unique(np.concatenate(known)) if known else np.array([])

    #: Whether ``classes_`` is set without a classification task (the classifier).
    _classes_always = False

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

    def _predict_proba(self, X, task_ids):
        """Class probabilities of the classification tasks (see ``predict_proba``)."""
        out, t = self._forward(X, task_ids)
        # (a regressor pickled by an older release has no task_classes_ / classes_)
        task_classes = [info.get("classes") for info in self._task_info]
        if self.multi_target_:
            return [None if c is None else softmax(out[:, k, : len(c)], axis=-1)
                    for k, c in enumerate(task_classes)]
        classes = getattr(self, "classes_", None)
        if classes is None:
            classes = np.unique(np.concatenate([c for c in task_classes if c is not None]))
        proba = np.zeros((out.shape[0], len(classes)), dtype=out.dtype)
        for k, c in enumerate(task_classes):
            rows = t == k
            if not rows.any():
                continue
            if c is None:
                proba[rows] = np.nan
                continue
            cols = np.searchsorted(classes, c)
            proba[np.ix_(rows, cols)] = softmax(out[rows, : len(c)], axis=-1)
        return proba

    def _task_scores(self, X, y, task_ids, sample_weight):
        """One score per task: accuracy (classification) or R^2 (regression)."""
        scores = []
        if self.multi_target_:
            out, _ = self._forward(X, task_ids)
            columns = target_columns(y)
            if len(columns) != self.n_tasks_:
                raise ValueError(f"y has {len(columns)} columns but the model was fitted on "
                                 f"{self.n_tasks_} tasks (one column each)")
            for k, col in enumerate(columns):
                keep = ~_is_missing(col, self.missing_label)
                if keep.any():
                    sw = None if sample_weight is None else np.asarray(sample_weight)[keep]
                    pred = self._decode(out[keep, k], k)
                    scores.append(self._score_task(k, col[keep], pred, sw))
            return scores
        pred = self.predict(X, task_ids=task_ids)
        _, task_ids = self._split_task_column(X, task_ids)
        t = self._task_index(len(pred), task_ids)
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()
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
        # labels in object arrays (a DataFrame Y mixing numbers and strings, the
        # predictions of a model with tasks of several kinds): numbers as numbers
        y_true, y_pred = plain_array(y_true), plain_array(y_pred)
        if y_true.dtype == object and classes.dtype != object:
            y_true = y_true.astype(classes.dtype)
        if y_pred.dtype == object and classes.dtype != object:
            y_pred = y_pred.astype(classes.dtype)
        return accuracy_score(y_true, y_pred, sample_weight=sample_weight)

    # --------------------------------------------------------------- transfer
    def get_pretrained_module(self):
        """The shared trunk, to be handed over as the source of transfer learning.

        Only ``architecture="hard"`` has one trunk that every task reads; the
        task heads are dropped, so a fine-tuner adds a head of its own.

        Returns
        -------
        module : nn.Module
            A deep copy of the trained trunk.
        has_output_layer : bool
            Always False: the trunk ends in features.
        """
        check_is_fitted(self, "net_")
        model = self.net_.module_.model
        if not isinstance(model, HardSharingNet):
            raise ValueError(
                f"only a multi-task model with architecture='hard' has a shared trunk that can "
                f"be used as a pretrained backbone; this one is {type(model).__name__}")
        return copy.deepcopy(model.trunk), False

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


def _class_weight_tables(class_weight, y_enc, t_enc, tasks, infos, partial):
    """Per task, the weight of each class index (None: a regression task or no weights).

    ``class_weight`` is None, ``"balanced"`` (every classification task
    balanced on its own rows), one dict from label to weight (a model with one
    classification task), a dict from task to ``"balanced"`` / a dict / None,
    or a list of those aligned with the tasks.
    """
    if class_weight is None:
        return None
    tasks = np.asarray(tasks).tolist()
    classification = [k for k, info in enumerate(infos) if info["type"] == "classification"]
    if isinstance(class_weight, (list, tuple)):
        if len(class_weight) != len(tasks):
            raise ValueError(f"class_weight is a list of {len(class_weight)} entries, but the "
                             f"model has {len(tasks)} tasks {tasks[:10]}: give one entry "
                             f"(None, 'balanced' or a dict) per task")
        per_task = list(class_weight)
    elif isinstance(class_weight, dict) and class_weight and all(
            v is None or isinstance(v, (str, dict)) for v in class_weight.values()):
        unknown = [key for key in class_weight if key not in tasks]
        if unknown:
            raise ValueError(f"class_weight names tasks {unknown[:10]} that the model does not "
                             f"have; its tasks are {tasks[:10]}")
        per_task = [class_weight.get(task) for task in tasks]
    elif isinstance(class_weight, dict) and len(classification) > 1:
        raise ValueError(
            f"class_weight is one dict from label to weight, but the model has "
            f"{len(classification)} classification tasks: give one per task, as a dict "
            f"from task to its weights ({{task: {{label: weight}}}} or {{task: 'balanced'}}) "
            f"or a list aligned with the tasks")
    else:
        per_task = [class_weight if k in classification else None for k in range(len(tasks))]
    tables = []
    for k, (task, info, weights) in enumerate(zip(tasks, infos, per_task)):
        if weights is None:
            tables.append(None)
            continue
        if info["type"] != "classification":
            raise ValueError(f"class_weight is given for task {task!r}, a regression task; "
                             f"class weights apply to classification tasks only")
        if t_enc is None:
            y_index = y_enc[:, k]
        else:
            y_index = y_enc[t_enc == k]
        y_index = np.where(np.isnan(y_index), -1, y_index) if y_index.dtype.kind == "f" \
            else y_index
        tables.append(class_weight_table(weights, y_index, info["classes"], partial=partial,
                                         what=f"class_weight of task {task!r}"
                                         if len(tasks) > 1 else "class_weight"))
    return tables


def _missing_column_message(col, columns):
    """Why ``task_column`` is not a column of a DataFrame X, and what to do."""
    message = f"task_column={col!r} is not a column of X; the columns are {columns[:20]}"
    prefixed = [c for c in columns if isinstance(c, str) and c.endswith(f"__{col}")]
    if prefixed:
        message += (f"; did you mean {prefixed[0]!r}? A ColumnTransformer prefixes the "
                    "names of its outputs with the transformer's name unless it has "
                    "verbose_feature_names_out=False")
    elif isinstance(col, (int, np.integer)):
        message += ("; an integer task_column names a column label of a DataFrame, not a "
                    "position: pass the column's name")
    return message


def _missing_task_ids_message(n_tasks, tasks):
    """The error of predict / predict_proba / score without the task ids they need.

    It is what a search shows in its warning when scoring fails, so it says how
    the task ids reach the model there.
    """
    routing = ("Metadata routing is on, so the caller did not pass task_ids: a scoring "
               "string (scoring='accuracy') never passes them"
               if get_config().get("enable_metadata_routing", False) else
               "Metadata routing is off, so GridSearchCV and cross_validate pass task_ids "
               "to fit only, not to predict or score")
    return (
        f"task_ids is required: this model was fitted on {n_tasks} tasks "
        f"{np.asarray(tasks).tolist()[:10]} and answers each row for its own task; pass "
        f"task_ids= with one task per row of X. {routing}. Fixes: "
        f"sklearn.set_config(enable_metadata_routing=True), with the estimator's own score "
        f"(scoring=None) or scoring=sktransfer.metrics.get_task_scorer('accuracy') (a "
        f"scoring string never passes task_ids); or give the tasks as a column of X with "
        f"task_column=, which needs no routing."
    )


# The parameter docs the two estimators share, written once: the
# classes' docstrings hold ``{task_params}`` and ``{network_params}``.
_TASK_PARAMS_DOC = """architecture : str, Architecture or nn.Module, default="hard"
        How the tasks share the network. A name of
        ``sktransfer.multitask.ARCHITECTURES``, which builds that
        architecture with its defaults: ``"hard"`` (a shared trunk with one
        linear head per task), ``"independent"`` (one network per task,
        nothing shared), ``"conditioned"`` (one network for every task, told
        the task by a one-hot vector appended to the input),
        ``"cross_stitch"`` (a column per task, mixed after every block),
        ``"sluice"`` (cross-stitch with
        subspaces and a learned mix of the layers' outputs), ``"mtan"`` (a
        shared trunk with per-task attention masks), ``"mmoe"`` (a
        multi-gate mixture of experts), ``"cgc"`` (customized gate control:
        shared and task-specific experts) or ``"ple"`` (progressive layered
        extraction: stacked CGC levels). Or an
        :class:`~sktransfer.multitask.Architecture` object
        (:class:`~sktransfer.multitask.HardParameterSharing`,
        :class:`~sktransfer.multitask.Independent`,
        :class:`~sktransfer.multitask.TaskConditioning`,
        :class:`~sktransfer.multitask.CrossStitch`,
        :class:`~sktransfer.multitask.Sluice`,
        :class:`~sktransfer.multitask.MTAN`,
        :class:`~sktransfer.multitask.MMoE`,
        :class:`~sktransfer.multitask.CGC`,
        :class:`~sktransfer.multitask.PLE`; their pages describe each), whose
        parameters are searchable as ``architecture__<name>``. Or an
        ``nn.Module`` with ``forward(X, task_ids=None)`` (see
        :mod:`sktransfer.multitask._architectures`), used as given.
    weighting : str or Weighting, default="equal"
        How the per-task losses are combined. A name of
        ``sktransfer.multitask.WEIGHTINGS``, which builds that weighting with
        its defaults. Weights from the losses: ``"equal"`` (their sum),
        ``"static"`` (fixed ``task_weights``), ``"uncertainty"`` (learned
        homoscedastic uncertainty, Kendall et al., 2018), ``"dwa"`` (dynamic
        weight averaging), ``"rlw"`` (random loss weighting), ``"famo"``
        (fast adaptive multitask optimisation), ``"stch"`` (smooth
        Tchebycheff scalarisation). Weights from the tasks' gradients:
        ``"gradnorm"`` (gradient normalisation), ``"mgda"``
        (multiple-gradient descent), ``"mgda_ub"`` (MGDA on the shared
        representation), ``"pcgrad"`` (projecting conflicting gradients),
        ``"cagrad"`` (conflict-averse gradient descent), ``"imtl"``
        (impartial multi-task learning), ``"upgrad"`` (unconflicting
        projection of gradients), ``"aligned_mtl"`` (Aligned-MTL),
        ``"nash_mtl"`` (Nash-MTL), ``"fairgrad"`` (alpha-fair FairGrad),
        ``"graddrop"`` (gradient sign dropout), ``"gradvac"`` (Gradient
        Vaccine), ``"db_mtl"`` (dual-balancing) and ``"excess_mtl"``
        (excess-risk weighting). Or a
        :class:`~sktransfer.multitask.Weighting` object (the class of each
        name, such as :class:`~sktransfer.multitask.UncertaintyWeighting`,
        is on the API page with its parameters and reference), whose
        parameters are searchable as ``weighting__<name>``.
    task_weights : array-like, dict or None, default=None
        Static weights, one per task in the order of ``tasks_`` (or a dict
        from task to weight). Used with ``"equal"``/``"static"``.
    task_column : int, str or None, default=None
        Take the task ids from this column of ``X`` (an index, or a name for
        a DataFrame) and drop it from the features. A transformer in front
        (a ``ColumnTransformer``) returns an array without names: keep them
        with ``set_output(transform="pandas")`` (and
        ``verbose_feature_names_out=False``), or give the integer index.
    missing_label : scalar or None, default=None
        An extra value that marks a missing label in 2-D ``Y`` (NaN and None
        always do)."""

_NETWORK_PARAMS_DOC = """module : None, nn.Module class, factory or instance, default=None
        The shared trunk. ``None`` uses an :class:`~sktransfer.modules.MLP`
        with ``hidden_layer_sizes`` for 2-D ``X`` and a
        :class:`~sktransfer.modules.Conv4` for images (n, C, H, W).
    hidden_layer_sizes : tuple of int, default=(100,)
        Widths of the default MLP trunk.
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=1e-3
    max_epochs : int, default=20
    batch_size : int, default=64
    callbacks : list of skorch callbacks or None, default=None
    train_split : None or skorch split, default=None
    early_stopping, validation_fraction, n_iter_no_change, tol
        Default ``False, 0.1, 10, 1e-4``: early stopping as in scikit-learn's
        ``MLPClassifier``;
        see :class:`~sktransfer.base.NeuralEstimatorMixin`.
    device : {"cpu", "cuda", "auto"}, default="cpu"
    random_state : int, RandomState or None, default=None
    verbose : int, default=0
        1 prints skorch's epoch table, with the per-task losses and weights
        as one rounded column per task (``train_loss[<task>]``,
        ``weight[<task>]``; see :class:`~sktransfer.multitask._net.TaskPrintLog`).
    net_params : dict or None, default=None
        See :class:`~sktransfer.base.NeuralEstimatorMixin` for these.
    precision : {"fp32", "bf16"}, default="fp32"
        ``"bf16"``: bfloat16 mixed precision.
    accelerator : None or accelerate.Accelerator, default=None
        Train through Hugging Face Accelerate, data parallel under a
        launcher. Both: see :class:`~sktransfer.base.NeuralEstimatorMixin`."""


def shared_parameter_docs(cls):
    """Class decorator: fill in the parameter docs the multi-task estimators share."""
    cls.__doc__ = cls.__doc__.replace("{task_params}", _TASK_PARAMS_DOC).replace(
        "{network_params}", _NETWORK_PARAMS_DOC + "\n")
    return cls
