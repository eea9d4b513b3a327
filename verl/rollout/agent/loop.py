"""``AgentLoopRollout``: multi-turn rollouts (tools, simulated users) as a loop over any rollout engine.

Each call of :meth:`generate_sequences` runs every trajectory of the batch to its end::

    prompts: chat template over the sample's raw messages with the tool schemas listed (tool_agent rows),
             or the dataset's prompt ids as given (single_turn_agent rows)
    while some trajectory is live:
        one engine call over EVERY live trajectory of the batch (the engine batches them continuously: a finished
        sequence's slot is refilled at once); each continues from its own token ids
        then, concurrently across trajectories: parse the new turn's tool calls and run them (each under a time
        limit), or ask the interaction for the next user message; append the template's tokens for those
        messages (response_mask 0); stop at EOS without a call, at a turn limit or at the response budget
    finally: tools' calc_reward -> reward_scores, release; interactions finalised; optional tokenisation check

Which loop a sample runs is its ``agent_name`` column (verl's): ``tool_agent`` or ``single_turn_agent`` (the
default when the column is absent). A batch with no ``tool_agent`` row goes straight to the engine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from verl.protocol import DataProto
from verl.rollout.agent.parser import parse_hermes
from verl.rollout.agent.template import TemplateTokens
from verl.rollout.agent.tool_calls import finish_tools, run_tool_calls
from verl.rollout.agent.trajectory import Trajectory, assemble
from verl.rollout.base import BaseRollout, GenerationRequest, resolve_request
from verl.rollout.config import RolloutConfig

__all__ = ["AGENT_LOOPS", "AgentLoopRollout"]

logger = logging.getLogger(__name__)

AGENT_LOOPS = ("single_turn_agent", "tool_agent")


class AgentLoopRollout:
    """Wraps an engine; the hybrid-engine hooks (``update_weights``, ``sleep``, ``wake_up``) pass through.

    Args:
        engine: any :class:`~verl.rollout.base.BaseRollout` (native, vllm, hf, or a test double).
        tokenizer: the policy's tokenizer (chat template, decoding for tool-call parsing).
        config: the rollout config; ``config.multi_turn`` names the tools, interactions and limits.
        tools / interactions: already-built tools (a list) / interactions (by name), instead of the YAML files.
    """

    def __init__(self, engine: BaseRollout, tokenizer: Any, config: RolloutConfig,
                 tools: Iterable[Any] | None = None, interactions: Mapping[str, Any] | None = None):  # fmt: skip
        self.engine, self.tokenizer, self.config = engine, tokenizer, config
        mt = config.multi_turn
        if tools is None and mt.tool_config_path:
            from verl.tools.utils.tool_registry import initialize_tools_from_config

            tools = initialize_tools_from_config(mt.tool_config_path)
        self.tools = {t.name: t for t in (tools or [])}
        if interactions is None and mt.interaction_config_path:
            from verl.interactions.utils.interaction_registry import initialize_interactions_from_config

            interactions = initialize_interactions_from_config(mt.interaction_config_path)
        self.interactions = dict(interactions or {})
        self.tool_schemas = [t.tool_schema.model_dump(exclude_unset=True, exclude_none=True) for t in self.tools.values()]
        self._loop = asyncio.new_event_loop()  # one loop for every call: tools may keep loop-bound state

    # ------------------------------------------------------------------ the engine's hooks, passed through

    @property
    def default_eos(self) -> tuple[int, ...]:
        return self.engine.default_eos

    @property
    def default_pad(self) -> int | None:
        return self.engine.default_pad

    @property
    def needs_weights(self) -> bool:
        return self.engine.needs_weights

    def update_weights(self, named_tensors) -> None:
        self.engine.update_weights(named_tensors)

    def sleep(self, level: int = 1) -> None:
        self.engine.sleep(level)

    def wake_up(self) -> None:
        self.engine.wake_up()

    def close(self) -> None:
        close = getattr(self.engine, "close", None)
        if callable(close):
            close()
        self._loop.close()

    # ------------------------------------------------------------------ the loop

    def generate_sequences(self, prompts: DataProto) -> DataProto:
        names = prompts.non_tensor_batch.get("agent_name")
        names = ["single_turn_agent"] * len(prompts) if names is None else [str(n) for n in names]
        unknown = sorted(set(names) - set(AGENT_LOOPS))
        if unknown:
            raise ValueError(f"agent_name {unknown} is not an agent loop; use one of {list(AGENT_LOOPS)}")
        if "tool_agent" not in names:
            return self.engine.generate_sequences(prompts)
        request = resolve_request(prompts.meta_info, self.config, self.engine.default_eos, self.engine.default_pad)
        template = TemplateTokens(self.tokenizer, self.tool_schemas, request.eos_token_ids,
                                  prompts.meta_info.get("apply_chat_template_kwargs"))
        trajs = [self._new(prompts, i, name, template) for i, name in enumerate(names)]
        width = prompts.batch["input_ids"].shape[1]
        longest = max(self.config.max_model_len or 0, max(width, self.config.prompt_length) + request.response_length)
        self._run(self._rollout(trajs, prompts.meta_info, request, template, longest))
        return assemble(prompts, trajs, request.response_length, request.pad_token_id, request.calculate_log_probs)

    def _run(self, coro) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._loop.run_until_complete(coro)
            return
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from async code: our loop, another thread
            pool.submit(self._loop.run_until_complete, coro).result()

    def _new(self, prompts: DataProto, i: int, name: str, template: TemplateTokens) -> Trajectory:
        nt = prompts.non_tensor_batch
        if name == "single_turn_agent":
            mask = prompts.batch["attention_mask"][i].bool()
            return Trajectory(i, name, [], prompts.batch["input_ids"][i][mask].tolist())
        if "raw_prompt" not in nt:
            raise KeyError("multi-turn rollouts (agent_name=tool_agent) need the raw chat messages: set "
                           "data.return_raw_chat=true")
        messages = [dict(m) for m in nt["raw_prompt"][i]]
        extra = nt["extra_info"][i] if "extra_info" in nt and isinstance(nt["extra_info"][i], Mapping) else {}
        tools_kwargs = nt["tools_kwargs"][i] if "tools_kwargs" in nt else extra.get("tools_kwargs")
        inter_kwargs = nt["interaction_kwargs"][i] if "interaction_kwargs" in nt else extra.get("interaction_kwargs")
        inter_kwargs = dict(inter_kwargs or {})
        interaction = None
        if self.interactions:
            name_ = inter_kwargs.get("name")
            if name_ is None and len(self.interactions) == 1:
                name_ = next(iter(self.interactions))
            if name_ not in self.interactions:
                raise ValueError(f"sample {i}: extra_info.interaction_kwargs.name={name_!r} is not one of the "
                                 f"configured interactions {sorted(self.interactions)}")
            interaction = self.interactions[name_]
        prompt_ids = template.prompt_ids(messages)
        width = prompts.batch["input_ids"].shape[1]
        if len(prompt_ids) > width:
            raise ValueError(f"sample {i}: the prompt is {len(prompt_ids)} tokens with the tool schemas listed, more "
                             f"than data.max_prompt_length={width}; raise data.max_prompt_length")
        return Trajectory(i, name, messages, prompt_ids, tools_kwargs=dict(tools_kwargs or {}),
                          interaction=interaction, interaction_kwargs=inter_kwargs)

    async def _rollout(self, trajs: list[Trajectory], meta: Mapping[str, Any], request: GenerationRequest,
                       template: TemplateTokens, longest: int) -> None:  # fmt: skip
        for t in trajs:
            if t.interaction is not None:
                try:
                    t.interaction_id = await t.interaction.start_interaction(None, **t.interaction_kwargs)
                except Exception as err:
                    logger.warning("interaction start failed: %s: %s", type(err).__name__, err)
                    t.interaction = None  # the trajectory runs without its user
        try:
            round_ = 0
            while live := [t for t in trajs if t.stop_reason is None]:
                self._generate(live, meta, request, round_, longest)
                await asyncio.gather(*(self._after_generation(t, request, template) for t in live))
                round_ += 1
        finally:
            await asyncio.gather(*(self._finish(t) for t in trajs))
        mode = self.config.multi_turn.tokenization_sanity_check_mode
        if mode != "disable":
            self._check(trajs, template, mode)

    def _generate(self, live: list[Trajectory], meta: Mapping[str, Any], request: GenerationRequest, round_: int,
                  longest: int) -> None:
        """One engine call continuing every live trajectory from its own ids."""
        r = request.response_length
        prefixes = [t.prompt_ids + t.response_ids for t in live]
        remaining = [r - len(t.response_ids) for t in live]
        r_call = self._call_length(prefixes, remaining, longest)
        width = max(len(p) for p in prefixes)
        ids = torch.full((len(live), width), request.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(live), width), dtype=torch.long)
        for i, p in enumerate(prefixes):  # left-padded, as the engines take prompts
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        call_meta = dict(meta, response_length=r_call)
        call_meta.pop("apply_chat_template_kwargs", None)
        if meta.get("seed") is not None:
            call_meta["seed"] = int(meta["seed"]) + 7919 * round_
        out = self.engine.generate_sequences(DataProto.from_dict(
            {"input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)},
            meta_info=call_meta))
        lengths = out.batch["response_mask"].sum(-1).tolist()
        log_probs = out.batch["rollout_log_probs"] if request.calculate_log_probs else None
        stops = set(request.eos_token_ids)
        for i, t in enumerate(live):
            n = min(int(lengths[i]), remaining[i])
            new = out.batch["responses"][i, :n].tolist()
            t.append(new, True, log_probs[i, :n].tolist() if log_probs is not None else None)
            ended = bool(new) and new[-1] in stops and not request.ignore_eos
            # a turn cut only by this call's length (not the budget) goes on in the next call
            t.turn_complete = ended or len(t.response_ids) >= r or n < r_call

    def _call_length(self, prefixes: list[list[int]], remaining: list[int], longest: int) -> int:
        """Tokens asked of one call: the largest remaining budget, capped so that the longest prefix plus the call
        fits ``longest`` (the sequence length the engine is sized for); a row cut short by the cap goes on in the
        next call."""
        return max(1, min(max(remaining), longest - max(len(p) for p in prefixes)))

    async def _after_generation(self, t: Trajectory, request: GenerationRequest, template: TemplateTokens) -> None:
        if not t.turn_complete:
            return
        mt = self.config.multi_turn
        stops = set(request.eos_token_ids)
        turn = t.turn_ids[:-1] if t.turn_ids and t.turn_ids[-1] in stops else t.turn_ids
        ended = len(turn) < len(t.turn_ids)
        text = self.tokenizer.decode(turn, skip_special_tokens=False)
        t.turn_ids = []
        t.assistant_turns += 1
        if t.agent_name == "single_turn_agent":
            t.stop_reason = "stop" if ended else "length"
            return
        t.messages.append({"role": "assistant", "content": text})
        if not ended or len(t.response_ids) >= request.response_length:
            t.stop_reason = "length"
        elif mt.max_assistant_turns and t.assistant_turns >= mt.max_assistant_turns:
            t.stop_reason = "max_assistant_turns"
        elif mt.max_user_turns and t.user_turns >= mt.max_user_turns:
            t.stop_reason = "max_user_turns"
        if t.stop_reason is not None:
            return
        calls = parse_hermes(text)[1] if self.tools else []
        if calls:
            new = await run_tool_calls(t, calls, self.tools, mt.max_parallel_calls, mt.max_tool_response_length,
                                       mt.tool_response_truncate_side)
            self._insert(t, new, template, request.response_length)
        elif t.interaction is not None:
            try:
                done, reply, score, _ = await t.interaction.generate_response(t.interaction_id, t.messages,
                                                                              **t.interaction_kwargs)
            except Exception as err:  # a broken interaction ends its trajectory, not the step
                logger.warning("interaction failed: %s: %s", type(err).__name__, err)
                t.stop_reason = "interaction_error"
                return
            if score is not None:
                t.turn_scores.append(float(score))
            if done:
                t.stop_reason = "interaction_done"
            else:
                self._insert(t, [{"role": "user", "content": reply}], template, request.response_length)
        else:
            t.stop_reason = "stop"

    @staticmethod
    def _insert(t: Trajectory, messages: list[dict[str, str]], template: TemplateTokens, budget: int) -> None:
        ids = template.insert_ids(messages)
        if len(t.response_ids) + len(ids) >= budget:  # no room left for the model to answer
            t.stop_reason = "length"
            return
        t.append(ids, False)
        t.messages += messages
        t.user_turns += 1

    async def _finish(self, t: Trajectory) -> None:
        await finish_tools(t, self.tools)
        if t.interaction is not None and t.interaction_id is not None:
            t.reward_scores["user_turn_rewards"] = list(t.turn_scores)
            try:
                await t.interaction.finalize_interaction(t.interaction_id)
            except Exception as err:
                logger.warning("interaction finalize failed: %s: %s", type(err).__name__, err)

    def _check(self, trajs: list[Trajectory], template: TemplateTokens, mode: str) -> None:
        first = None
        for t in trajs:
            if t.agent_name != "tool_agent":
                continue
            t.tokenization_mismatch = template.check(t.prompt_ids + t.response_ids, t.response_mask,
                                                     len(t.prompt_ids), t.messages, mode)
            first = first or (t.tokenization_mismatch and (t.row, t.tokenization_mismatch))
        if first:
            count = sum(t.tokenization_mismatch is not None for t in trajs)
            logger.warning("multi-turn tokenisation check (%s): %d trajectories differ from a re-tokenisation of the "
                           "whole conversation; first, sample %d: %s", mode, count, *first)
