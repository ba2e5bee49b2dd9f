"""Task-aware scorers and the metrics of multi-task, continual and few-shot learning."""

from ._task_scorer import TaskScorer, get_task_scorer, make_task_scorer

__all__ = ["TaskScorer", "get_task_scorer", "make_task_scorer"]
