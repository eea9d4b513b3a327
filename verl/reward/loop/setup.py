"""Build a run's reward functions: the reward manager, spread over reward-loop workers, with the generative
reward model's server when one is configured."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from verl.reward.loop.checks import genrm_engine_config, is_generative_reward_model
from verl.reward.loop.parallel import ParallelRewardManager
from verl.reward.loop.server import GenerativeRewardServer
from verl.utils.config import ConfigError

__all__ = ["RewardLoop", "build_reward_loop"]

logger = logging.getLogger(__name__)


class _EndsRound:
    """A reward manager whose every call ends a scoring round of the generative reward model's server."""

    def __init__(self, manager: Any, server: GenerativeRewardServer):
        self.manager, self.server = manager, server

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["manager"], name)

    def __call__(self, data: Any, return_dict: bool = False) -> Any:
        try:
            return self.manager(data, return_dict=return_dict)
        finally:
            self.server.end_round()


@dataclass
class RewardLoop:
    """The reward functions of a run (training and validation) and the server they may use."""

    reward_fn: Any
    val_reward_fn: Any
    server: GenerativeRewardServer | None = None

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def start_genrm_server(config: Any) -> tuple[GenerativeRewardServer, Any]:
    """Load the generative reward model into its engine and serve it; ``(server, reward model tokenizer)``."""
    from transformers import AutoConfig

    from verl.rollout.builder import build_rollout
    from verl.utils.device import get_device
    from verl.workers.fsdp_workers import load_tokenizer

    rm = config.reward_model
    path = os.path.expanduser(rm.model.path)
    archs = getattr(AutoConfig.from_pretrained(path, trust_remote_code=rm.model.trust_remote_code),
                    "architectures", None) or []
    if archs and not any(a.endswith("ForCausalLM") or a.endswith("ForConditionalGeneration") for a in archs):
        raise ConfigError(f"reward_model.model.path={rm.model.path!r} is a {archs[0]} (a discriminative reward model), "
                          "but reward_model.rollout.name with custom_reward_function.path serves a generative one; "
                          "unset custom_reward_function.path to score with this model")
    tokenizer = load_tokenizer(path, rm.model.trust_remote_code)
    engine_cfg = genrm_engine_config(rm)
    engine = build_rollout(engine_cfg, path, tokenizer, device=get_device())
    server = GenerativeRewardServer(engine, tokenizer, model_name=rm.model.path, prompt_length=engine_cfg.prompt_length,
                                    response_length=engine_cfg.response_length, max_batch=engine_cfg.max_num_seqs,
                                    free_cache=engine_cfg.free_cache_engine)
    logger.warning("generative reward model %s served by the %s engine at http://%s", rm.model.path, engine_cfg.name,
                   server.address)
    return server, tokenizer


def build_reward_loop(config: Any, tokenizer: Any) -> RewardLoop:
    """The reward managers ``config`` asks for (``verl.reward.load_reward_manager``), scoring in
    ``reward_model.num_workers`` processes under ``reward_model.use_reward_loop``; for a generative reward model,
    its server is started and the reward function gets ``reward_router_address`` and ``reward_model_tokenizer``."""
    from verl.reward.loader import load_reward_manager

    rm = config.reward_model
    server, score_kwargs = None, {}
    if is_generative_reward_model(config):
        server, rm_tokenizer = start_genrm_server(config)
        score_kwargs = {"reward_router_address": server.address, "reward_model_tokenizer": rm_tokenizer}
    try:
        fns = [load_reward_manager(config, tokenizer, num_examine=n, score_kwargs=score_kwargs) for n in (0, 1)]
    except BaseException:
        if server is not None:
            server.close()
        raise
    if rm.use_reward_loop and rm.num_workers > 1:
        fns = [ParallelRewardManager(fn, rm.num_workers) for fn in fns]
    if server is not None:
        fns = [_EndsRound(fn, server) for fn in fns]
    return RewardLoop(fns[0], fns[1], server)
