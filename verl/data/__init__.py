"""RL data: the parquet row format, :class:`RLHFDataset`, its collate function and a resumable sampler.

Preprocessors that write the format live in :mod:`verl.data.preprocess` (``python -m verl.data.preprocess.gsm8k``).
"""

from verl.data.config import DataConfig
from verl.data.rl_dataset import RLHFDataset, collate_fn, create_rl_dataset, truncate_ids
from verl.data.sampler import ResumableSampler, StatefulDataLoader, create_rl_sampler

__all__ = [
    "DataConfig",
    "RLHFDataset",
    "ResumableSampler",
    "StatefulDataLoader",
    "collate_fn",
    "create_rl_dataset",
    "create_rl_sampler",
    "truncate_ids",
]
