"""Turn a sharded training checkpoint into a directory transformers loads.

    python -m verl.model_merger merge --backend fsdp --local_dir ckpt/global_step_100/actor --target_dir hf_actor
    python -m verl.model_merger test --backend fsdp --local_dir ckpt/global_step_100/actor --test_hf_dir ref_dir

Works for actors, critics (``--is-value-model`` when the config does not say so already) and SFT checkpoints,
saved from any number of ranks; tied embeddings are handled. See ``docs/advance/model_merger.md``.
"""

from verl.model_merger.fsdp import (
    MergeConfig,
    checkpoint_tensor_specs,
    compare_state_dicts,
    load_checkpoint_state_dict,
    load_hf_state_dict,
    merge_fsdp_checkpoint,
)

__all__ = [
    "MergeConfig",
    "checkpoint_tensor_specs",
    "compare_state_dicts",
    "load_checkpoint_state_dict",
    "load_hf_state_dict",
    "merge_fsdp_checkpoint",
]
