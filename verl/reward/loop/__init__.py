"""verl's reward loop (``reward_model.use_reward_loop``): rewards scored in parallel worker processes, and a
generative reward model (LLM-as-judge) served by a rollout engine to the reward function.

- ``reward_model.num_workers`` > 1 (with ``use_reward_loop``): each scoring round splits the batch into that many
  parts, each scored by the configured reward manager in its own process (:class:`ParallelRewardManager`).
- ``reward_model.enable`` with ``custom_reward_function.path`` and ``reward_model.rollout.name`` set: the model at
  ``reward_model.model.path`` is a generative reward model, run by that engine (``native``, ``vllm`` or ``hf``)
  behind an OpenAI-compatible HTTP endpoint in the driver process (:class:`GenerativeRewardServer`). The reward
  function gets ``reward_router_address`` (``host:port``) and ``reward_model_tokenizer``, as in verl.
- ``reward_model.enable`` without a reward function: a discriminative reward model, scored by the reward-model
  worker (the classifier's output at the last token, what verl's engines return for it).

:func:`build_reward_loop` builds what a run asks for; :func:`check_reward_loop` refuses what cannot run.
"""

from verl.reward.loop.checks import check_reward_loop, genrm_engine_config, is_generative_reward_model
from verl.reward.loop.parallel import ParallelRewardManager
from verl.reward.loop.server import GenerativeRewardServer
from verl.reward.loop.setup import RewardLoop, build_reward_loop

__all__ = ["GenerativeRewardServer", "ParallelRewardManager", "RewardLoop", "build_reward_loop", "check_reward_loop",
           "genrm_engine_config", "is_generative_reward_model"]
