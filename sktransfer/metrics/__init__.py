"""Task-aware scorers and the metrics of multi-task, continual and few-shot learning."""

from ._continual import (
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    reference_accuracies,
)
from ._few_shot import FewShotScorer, few_shot_score, make_few_shot_scorer, score_one_shot_runs
from ._task_scorer import TaskScorer, get_task_scorer, make_task_scorer

__all__ = [
    "average_accuracy",
    "backward_transfer",
    "forgetting",
    "forward_transfer",
    "reference_accuracies",
    "FewShotScorer",
    "few_shot_score",
    "make_few_shot_scorer",
    "score_one_shot_runs",
    "TaskScorer",
    "get_task_scorer",
    "make_task_scorer",
]
