"""verl's path for the RL dataset. Thin re-export: the implementation lives in :mod:`verl.data.rl_dataset`."""

from verl.data.rl_dataset import RLHFDataset, collate_fn, create_rl_dataset

__all__ = ["RLHFDataset", "collate_fn", "create_rl_dataset"]
