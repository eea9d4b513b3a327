"""Generation (rollout): the ``generate_sequences`` interface, the ``hf`` backend and the ``native`` engine.

Importing this package is light (torch only); backends import transformers / compile machinery when built.

>>> from verl.rollout import RolloutConfig, build_rollout   # doctest: +SKIP
>>> rollout = build_rollout(RolloutConfig(name="native"), model, tokenizer)   # doctest: +SKIP
>>> out = rollout.generate_sequences(prompts)   # DataProto in, DataProto out   # doctest: +SKIP
"""

from verl.rollout.base import BaseRollout
from verl.rollout.builder import build_rollout
from verl.rollout.config import RolloutConfig, ValKwargs, rollout_config_from_mapping
from verl.rollout.sampling import SamplingParams

__all__ = ["BaseRollout", "RolloutConfig", "SamplingParams", "ValKwargs", "build_rollout", "rollout_config_from_mapping"]
