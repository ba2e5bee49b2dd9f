"""Data sets: loaders for public benchmarks (downloaded and cached) and task generators."""

from ._fetch import get_data_home
from ._lake_runs import load_one_shot_runs
from ._mnist import load_mnist
from ._multi_mnist import make_multi_mnist
from ._omniglot import load_omniglot
from ._one_shot_runs import augment_rotations, make_one_shot_runs
from ._sinusoid import make_sinusoid_tasks
from ._task_sequences import make_permuted_tasks, make_rotated_tasks, make_split_tasks

__all__ = ["get_data_home", "load_mnist", "load_omniglot"]
__all__ += ["make_permuted_tasks", "make_rotated_tasks", "make_split_tasks"]
__all__ += ["make_sinusoid_tasks"]
__all__ += ["make_multi_mnist"]
__all__ += ["augment_rotations", "make_one_shot_runs"]
__all__ += ["load_one_shot_runs"]
