"""Supervised fine-tuning: config, loss, checkpoint bookkeeping and the FSDP2 trainer.

Run it with ``torchrun --nproc_per_node N -m verl.trainer.fsdp_sft_trainer key=value ...`` (or plain ``python -m``
for one process). Importing this package is light; the trainer pulls in transformers when built.
"""

from verl.trainer.sft.config import SFTConfig, SFTModelConfig, SFTOptimConfig, SFTTrainerSection
from verl.trainer.sft.loss import sft_loss, target_log_probs, target_mask

__all__ = [
    "SFTConfig",
    "SFTModelConfig",
    "SFTOptimConfig",
    "SFTTrainerSection",
    "sft_loss",
    "target_log_probs",
    "target_mask",
]
