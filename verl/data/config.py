"""``data.*``: the dataset and dataloader settings of an RL run (verl's key names).

The trainer composes :class:`DataConfig` into its full config tree; :class:`RLHFDataset` also accepts a plain
mapping or an OmegaConf node with these keys (:meth:`DataConfig.from_any`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from verl.utils.config import from_mapping

__all__ = ["TRUNCATION_MODES", "CustomClassConfig", "DataConfig", "SamplerConfig"]

TRUNCATION_MODES = ("error", "left", "right", "middle")


@dataclass
class CustomClassConfig:
    """A user dataset class (``data.custom_cls.*``) used instead of :class:`RLHFDataset`."""

    path: str | None = None
    """Python file defining the class."""
    name: str | None = None
    """Class name; it is built as ``cls(data_files, tokenizer, config, processor)``."""


@dataclass
class SamplerConfig:
    """A user sampler (``data.sampler.*``) used instead of the seeded shuffling sampler."""

    class_path: str | None = None
    """Python file (or module path) defining the class."""
    class_name: str | None = None
    """Class name; it is built as ``cls(data_source=dataset, data_config=data)``."""


@dataclass
class DataConfig:
    """Dataset and dataloader settings (``data.*``)."""

    tokenizer: str | None = None
    """Tokenizer path when it differs from the actor model's; ``None`` uses the model's."""
    train_files: str | list[str] | None = None
    """Training parquet (or JSON/JSONL) file(s): one path or a list, read fully into memory."""
    val_files: str | list[str] | None = None
    """Validation file(s), same formats."""
    train_max_samples: int = -1
    """Use only the first N training rows (-1: all)."""
    val_max_samples: int = -1
    """Use only the first N validation rows (-1: all)."""
    prompt_key: str = "prompt"
    """Column holding the prompt: a list of chat messages ``[{"role": ..., "content": ...}, ...]``."""
    reward_fn_key: str = "data_source"
    """Column whose value picks the score function (passed to it as ``data_source``)."""
    max_prompt_length: int = 512
    """Prompts are left-padded to this many tokens; longer ones follow ``truncation``."""
    max_response_length: int = 512
    """Most tokens the rollout generates per response."""
    train_batch_size: int = 1024
    """Prompts per training step, globally (each expands to ``rollout.n`` responses)."""
    val_batch_size: int | None = None
    """Prompts per validation batch; ``None`` means the whole validation set at once."""
    return_raw_input_ids: bool = False
    """Also return ``raw_input_ids`` (unpadded ids) for a reward model with a different tokenizer."""
    return_raw_chat: bool = False
    """Also return the prompt messages as ``raw_prompt`` (multi-turn rollouts and chat reward models need it)."""
    return_full_prompt: bool = False
    """Also return the templated prompt text as ``full_prompts``."""
    shuffle: bool = True
    """Shuffle the training set each epoch (seeded: see ``seed``)."""
    seed: int = 42
    """Seed of the training sampler's shuffling."""
    validation_shuffle: bool = False
    """Shuffle the validation set."""
    filter_overlong_prompts: bool = False
    """Drop rows whose templated prompt is longer than ``max_prompt_length`` when the dataset is built."""
    filter_overlong_prompts_workers: int = 1
    """Accepted for verl compatibility; filtering runs batched in one process."""
    truncation: str = "error"
    """Overlong prompts: ``error`` (raise, naming the row), ``left`` (keep the end), ``right`` (keep the start)
    or ``middle`` (keep both ends)."""
    dataloader_num_workers: int = 8
    """DataLoader worker processes (0: load in the main process)."""
    trust_remote_code: bool = False
    """Allow tokenizers/processors with custom code."""
    apply_chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of ``tokenizer.apply_chat_template`` (e.g. ``{"enable_thinking": False}``)."""
    image_key: str = "images"
    """Column of images for vision-language data (not supported by :class:`RLHFDataset`: such rows raise)."""
    custom_cls: CustomClassConfig = field(default_factory=CustomClassConfig)
    """A user dataset class to use instead of :class:`RLHFDataset`."""
    gen_batch_size: int | None = None
    """Prompts per generation batch (DAPO): with ``algorithm.filter_groups.enable`` the trainer generates
    batches of this many prompts until ``train_batch_size`` prompt groups with varied rewards are kept; without
    it, each step trains on the first ``train_batch_size`` prompts of one such batch. None = ``train_batch_size``."""
    use_shm: bool = False
    """Copy data files to shared memory first (not available: files are read from local disk)."""
    video_key: str = "videos"
    """Column of videos for vision-language data (not supported: such rows raise, as images do)."""
    image_patch_size: int = 14
    """Vision-language processor patch size (read only for image/video rows, which are not supported)."""
    return_multi_modal_inputs: bool = True
    """Return processed multi-modal inputs (vision-language data; not supported)."""
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    """A user sampler class for the training data (curriculum learning; not available: must stay null)."""
    datagen: CustomClassConfig = field(default_factory=CustomClassConfig)
    """A dynamic data generator (not available: ``path``/``name`` must stay null)."""

    def __post_init__(self) -> None:
        if self.truncation not in TRUNCATION_MODES:
            raise ValueError(f"data.truncation must be one of {TRUNCATION_MODES}, got {self.truncation!r}")
        if self.max_prompt_length <= 0:
            raise ValueError(f"data.max_prompt_length must be positive, got {self.max_prompt_length}")
        if self.max_response_length <= 0:
            raise ValueError(f"data.max_response_length must be positive, got {self.max_response_length}")
        if self.train_batch_size <= 0:
            raise ValueError(f"data.train_batch_size must be positive, got {self.train_batch_size}")

    @classmethod
    def from_any(cls, obj: Any) -> DataConfig:
        """A :class:`DataConfig` from ``None`` (defaults), an instance, a mapping or an OmegaConf node.

        Unknown keys and wrongly typed values raise :class:`~verl.utils.config.ConfigError` naming ``data.<key>``.
        """
        if isinstance(obj, cls):
            return obj
        return from_mapping(cls, {} if obj is None else obj, prefix="data.")
