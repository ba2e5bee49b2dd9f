"""The private skorch net behind the multi-task estimators.

It differs from a plain :class:`skorch.NeuralNet` in ``get_loss``: the
criterion returns per-task losses and label counts, the module's weighter
(a :class:`~._weighting_base.Weighter`) combines them, and the per-task
losses and weights of every epoch are written to ``history`` as
``train_task_losses`` / ``train_task_weights`` (and ``valid_task_losses``
with a validation split), one list of T floats per epoch. The training step
calls the weighter's hooks (``after_step`` after every step, ``epoch_end``
after every epoch), and a weighter that sets the gradients itself
(``sets_gradients``) is trained with
:func:`~._gradient_step.gradient_train_step`. With ``verbose=1`` its epoch
table (:class:`TaskPrintLog`) prints those lists as one rounded column per
task.
"""

from numbers import Number

import torch
from skorch import NeuralNet
from skorch.callbacks import PrintLog
from tabulate import tabulate
from torch import nn

from .._accelerate import AcceleratedNetMixin
from .._weights import WeightedBatchMixin, batch_sample_weight
from ..base import MASK_VALUE, AutocastMixin, LeanNotifyMixin
from ._gradient_step import gradient_train_step
from ._loss_weighting import _StaticWeighter
from ._weighting_base import Weighter


class MultiTaskModule(nn.Module):
    """The network and the weighter, as one module for skorch.

    ``class_mask`` (T, C) marks the outputs each task uses; the others are
    set to a large negative logit so softmax gives them probability 0.
    """

    def __init__(self, model, weighter, class_mask):
        super().__init__()
        self.model = model
        self.weighter = weighter
        self.register_buffer("class_mask", torch.as_tensor(class_mask, dtype=torch.bool))
        self._all_classes = bool(self.class_mask.all())

    def penalty(self):
        """The architecture's regularisation term for the last forward pass, or None."""
        penalty = getattr(self.model, "penalty", None)
        return penalty() if callable(penalty) else None

    def forward(self, X, task_ids=None):
        out = self.model(X, task_ids)
        if self._all_classes:
            return out
        mask = self.class_mask if task_ids is None else self.class_mask[task_ids]
        return out.masked_fill(~mask, MASK_VALUE)


class MultiTaskLoss(nn.Module):
    """Per-task mean losses and per-task label counts.

    ``y`` is (n,) with per-row ``task_ids`` (one task per row), or (n, T)
    with one column per task. With classification tasks only, ``y`` holds
    int64 class indices (-1: missing) and the loss is cross-entropy. With
    regression tasks (``regression`` marks them), ``y`` is float with NaN for
    a missing label; a regression task's loss is the mean squared error of
    its first output against the standardised target.

    ``sample_weight`` (n,), or (n, T) with one weight per row and task for a
    2-D ``y``, makes each task's loss the weighted mean over its labelled
    rows, and the counts the sums of their weights.
    """

    def __init__(self, n_tasks, regression=None):
        super().__init__()
        self.n_tasks = n_tasks
        reg = torch.zeros(n_tasks, dtype=torch.bool) if regression is None else torch.as_tensor(
            regression, dtype=torch.bool)
        self.register_buffer("regression", reg)
        self._mixed = bool(reg.any())

    def _row_losses(self, logits, y, row_is_reg):
        # logits (m, C), y (m,) float with NaN for missing; -> (m,) losses, (m,) labelled.
        labelled = ~torch.isnan(y)
        target = torch.where(labelled, y, torch.zeros_like(y))
        ce = nn.functional.cross_entropy(
            logits, torch.where(row_is_reg, 0, target).long(), reduction="none")
        se = (logits[:, 0] - target) ** 2
        return torch.where(row_is_reg, se, ce) * labelled, labelled

    def forward(self, logits, y, task_ids=None, sample_weight=None):
        w = None if sample_weight is None else sample_weight.to(logits.device, logits.dtype)
        if task_ids is not None:
            if self._mixed:
                losses, labelled = self._row_losses(logits, y, self.regression[task_ids])
                labelled = labelled.to(logits.dtype)
            else:
                losses = nn.functional.cross_entropy(logits, y, reduction="none")
                labelled = None
            if w is not None:
                losses = losses * w
                labelled = w if labelled is None else labelled * w
            if labelled is None:
                counts = torch.bincount(task_ids, minlength=self.n_tasks).to(logits.dtype)
            else:
                counts = logits.new_zeros(self.n_tasks).index_add(0, task_ids, labelled)
            sums = logits.new_zeros(self.n_tasks).index_add(0, task_ids, losses)
        else:
            n, t, c = logits.shape
            if self._mixed:
                row_is_reg = self.regression.expand(n, t).reshape(-1)
                losses, labelled = self._row_losses(logits.reshape(n * t, c), y.reshape(-1),
                                                    row_is_reg)
                losses, labelled = losses.view(n, t), labelled.view(n, t).to(logits.dtype)
            else:
                losses = nn.functional.cross_entropy(
                    logits.reshape(n * t, c), y.reshape(n * t), ignore_index=-1,
                    reduction="none").view(n, t)
                labelled = (y >= 0).to(logits.dtype)
            if w is not None:
                w = w if w.dim() == 2 else w[:, None]
                losses, labelled = losses * w, labelled * w
            counts = labelled.sum(0)
            sums = losses.sum(0)
        if w is not None:
            # weights are real numbers: a task whose rows all weigh 0 is absent
            return sums / torch.where(counts > 0, counts, 1), counts
        return sums / counts.clamp(min=1), counts


def _is_task_list(value):
    return (isinstance(value, (list, tuple)) and len(value) > 0
            and all(isinstance(v, Number) and not isinstance(v, bool) for v in value))


class TaskPrintLog(PrintLog):
    """skorch's :class:`~skorch.callbacks.PrintLog`, with per-task values in columns.

    A history value that holds one number per task (``train_task_losses``,
    ``valid_task_losses``, ``train_task_weights``) is printed as one column
    per task, named after the task (``train_loss[digit]``,
    ``valid_loss[digit]``, ``weight[digit]``; ``<key>[<task>]`` for any other
    such key) and rounded to ``significant_digits`` significant digits. The
    weights of a static weighting (``"equal"``, ``"static"``), which never
    change, are not printed, and neither are the per-task values of a model
    with more than ``max_task_columns`` tasks. The history is unchanged.

    It is the multi-task net's ``print_log`` callback, so its parameters are
    set like PrintLog's, e.g.
    ``net_params={"callbacks__print_log__keys_ignored": ["train_task_weights"]}``
    (the keys are the history's).

    Parameters
    ----------
    keys_ignored, sink, tablefmt, floatfmt, stralign
        As in :class:`~skorch.callbacks.PrintLog`.
    significant_digits : int, default=4
    max_task_columns : int, default=8
    """

    #: The column name of each per-task history key, before ``[<task>]``.
    LABELS = {"train_task_losses": "train_loss", "valid_task_losses": "valid_loss",
              "train_task_weights": "weight"}

    def __init__(self, keys_ignored=None, sink=print, tablefmt="simple", floatfmt=".4f",
                 stralign="right", significant_digits=4, max_task_columns=8):
        super().__init__(keys_ignored=keys_ignored, sink=sink, tablefmt=tablefmt,
                         floatfmt=floatfmt, stralign=stralign)
        self.significant_digits = significant_digits
        self.max_task_columns = max_task_columns

    def on_epoch_end(self, net, **kwargs):
        self._task_names = getattr(net, "task_names", None)
        self._static_weights = isinstance(net.module_.weighter, _StaticWeighter)
        super().on_epoch_end(net, **kwargs)

    def _task_columns(self, key, values):
        if key == "train_task_weights" and getattr(self, "_static_weights", False):
            return
        if len(values) > self.max_task_columns:
            return
        names = getattr(self, "_task_names", None)
        if names is None or len(names) != len(values):
            names = range(len(values))
        label = self.LABELS.get(key, key)
        for name, value in zip(names, values):
            yield f"{label}[{name}]", f"{value:.{self.significant_digits}g}"

    def _yield_keys_formatted(self, row):
        for key, formatted in super()._yield_keys_formatted(row):
            value = row.get(key)
            if _is_task_list(value):
                yield from self._task_columns(key, value)
            else:
                yield key, formatted

    def table(self, row):
        headers, formatted = [], []
        for key, cell in self._yield_keys_formatted(row):
            headers.append(key)
            formatted.append(cell)
        # the rounded per-task cells stay as written (tabulate would reformat them)
        as_written = [i for i, h in enumerate(headers) if h.endswith("]") and "[" in h]
        return tabulate([formatted], headers=headers, tablefmt=self.tablefmt,
                        floatfmt=self.floatfmt, stralign=self.stralign,
                        disable_numparse=as_written or False)


class MultiTaskNet(WeightedBatchMixin, AutocastMixin, LeanNotifyMixin, NeuralNet):
    """skorch net whose loss is a weighted combination of per-task losses.

    ``task_names`` (the fitted ``tasks_``) name the columns of its epoch
    table (:class:`TaskPrintLog`, its ``print_log`` callback). A batch may
    carry per-row weights (see :mod:`sktransfer._weights`).
    """

    def __init__(self, *args, task_names=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.task_names = task_names

    def get_default_callbacks(self):
        return [(name, TaskPrintLog() if name == "print_log" and type(cb) is PrintLog else cb)
                for name, cb in super().get_default_callbacks()]

    def task_losses(self, y_pred, y_true, X):
        """Per-task mean losses and label counts (weight sums) of a batch's outputs."""
        task_ids = X.get("task_ids") if isinstance(X, dict) else None
        if task_ids is not None:
            task_ids = task_ids.to(y_pred.device)
        return self.criterion_(y_pred, y_true.to(y_pred.device), task_ids,
                               batch_sample_weight(X))

    def get_loss(self, y_pred, y_true, X=None, training=False):
        losses, counts = self.task_losses(y_pred, y_true, X)
        present = counts > 0
        total, weights = self.module_.weighter(losses, present)
        self._accumulate("train" if training else "valid", losses, counts, weights, present)
        penalty = self.module_.penalty()
        return total if penalty is None else total + penalty

    def train_step_single(self, batch, **fit_params):
        # Gradient-based weightings (MGDA, PCGrad, ..., GradNorm) set the gradients.
        if self.module_.weighter.sets_gradients:
            return gradient_train_step(self, batch, **fit_params)
        return super().train_step_single(batch, **fit_params)

    def train_step(self, batch, **fit_params):
        step = super().train_step(batch, **fit_params)
        self.module_.weighter.after_step(self, batch, **fit_params)  # e.g. FAMO's logits
        return step

    def _accumulate(self, prefix, losses, counts, weights, present):
        # Keep the batch tensors; they are reduced once at the end of the epoch.
        self.__dict__.setdefault("_task_acc", {}).setdefault(prefix, []).append(
            (losses.detach(), counts, weights.detach(), present))

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        acc = self.__dict__.pop("_task_acc", {})
        for prefix, batches in acc.items():
            losses, counts, weights, present = (torch.stack(v) for v in zip(*batches))
            present = present.to(losses.dtype)
            per_task = (losses * counts).sum(0) / counts.sum(0).clamp(min=1)
            self.history.record(f"{prefix}_task_losses", per_task.cpu().tolist())
            if prefix == "train":
                self.module_.weighter.epoch_end(per_task)  # e.g. DWA's loss history
                mean_w = (weights * present).sum(0) / present.sum(0).clamp(min=1)
                self.history.record("train_task_weights", mean_w.cpu().tolist())
        super().on_epoch_end(net, dataset_train=dataset_train, dataset_valid=dataset_valid,
                             **kwargs)


class AcceleratedMultiTaskNet(AcceleratedNetMixin, MultiTaskNet):
    """:class:`MultiTaskNet` trained through Hugging Face Accelerate.

    The loss-based weightings train data parallel across processes: their
    state is either a parameter of the module (its gradient is averaged with
    the others) or a function of the losses. The weightings with their own
    backward pass (the gradient-based ones, GradNorm) or a step of their own
    (FAMO) solve their problem on the whole batch, which data parallelism
    would split, so they run in a single process only; they do not run with
    float16 loss scaling either, whose scaler would unscale gradients it
    never scaled.
    """

    def train_step_single(self, batch, **fit_params):
        if self.module_.weighter.sets_gradients:
            return gradient_train_step(self, batch, **fit_params)  # infer autocasts
        return super().train_step_single(batch, **fit_params)

    @staticmethod
    def check_weighting(weighter, accelerator, name):
        """Raise a ValueError if the weighting ``name`` cannot run on ``accelerator``."""
        # A weighter with an after_step hook updates its state from its own process's
        # batches (FAMO's logits), which the processes would not share.
        own_step = weighter.sets_gradients or type(weighter).after_step is not Weighter.after_step
        n_processes = int(accelerator.num_processes)
        if own_step and n_processes > 1:
            raise ValueError(
                f"weighting={name!r} computes its own gradient step, which data-parallel "
                f"training across {n_processes} processes cannot synchronise; use a "
                "loss-based weighting ('equal', 'static', 'uncertainty', 'dwa', 'rlw', "
                "'stch') or one process")
        if weighter.sets_gradients and accelerator.mixed_precision == "fp16":
            raise ValueError(
                f"weighting={name!r} sets the gradients itself, which float16 loss scaling "
                "cannot unscale; use mixed_precision='bf16' or 'no' in the Accelerator")
