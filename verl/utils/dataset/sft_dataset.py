"""verl's path for the SFT dataset. Thin re-export: the implementation lives in :mod:`verl.data.sft_dataset`."""

from verl.data.sft_dataset import SFTDataset, sft_collate_fn

__all__ = ["SFTDataset", "sft_collate_fn"]
