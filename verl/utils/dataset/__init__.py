"""verl's path for the RL and SFT datasets. Thin re-exports: the implementation lives in :mod:`verl.data`."""

from verl.data.rl_dataset import RLHFDataset, collate_fn
from verl.data.sft_dataset import SFTDataset

__all__ = ["RLHFDataset", "SFTDataset", "collate_fn"]
