"""``AgentLoopRollout``: multi-turn rollouts (tools, simulated users) as a loop over any rollout engine.

Each call of :meth:`generate_sequences` runs every trajectory of the batch to its end::

    prompts: chat template over the sample's raw messages with the tool schemas listed (tool_agent rows),
             or the dataset's prompt ids as given (single_turn_agent rows)
    while some trajectory is live:
        one engine call over every trajectory READY for generation (the engine batches them continuously: a
        finished sequence's slot is refilled at once); each continues from its own token ids
        each finished turn goes to the tool thread: parse its tool calls and run them (concurrently, each under a
        time limit), or ask the interaction for the next user message; append the template's tokens for those
        messages (response_mask 0); stop at EOS without a call, at a turn limit or at the response budget
        the next engine call starts as soon as the engine is free and some trajectory is ready: tools that
        finish within ``admit_wait_s`` of a call join the next call together; a slower tool's trajectory
        re-enters generation in the first call after it finished, while the others go on generating
    finally: tools' calc_reward -> reward_scores, release; interactions finalised; optional tokenisation check

The engine runs in the calling thread; tools and interactions run on one event loop in a background thread (the
same loop for every call: tools may keep loop-bound state), so generation and tool execution overlap.

Which loop a sample runs is its ``agent_name`` column (verl's): ``tool_agent`` or ``single_turn_agent`` (the
default when the column is absent). A batch with no ``tool_agent`` row goes straight to the engine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
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

ADMIT_WAIT_S = 0.1
"""How long the next engine call waits for the tools and interactions of the turns the previous call finished;
work done within it joins the next call together (so fast in-process tools give the same calls, hence the same
samples, every run); slower work re-enters in the first call after it finished."""


class AgentLoopRollout:
    """Wraps an engine; the hybrid-engine hooks (``update_weights``, ``sleep``, ``wake_up``) pass through.

    Args:
        engine: any :class:`~verl.rollout.base.BaseRollout` (native, vllm, hf, or a test double).
        tokenizer: the policy's tokenizer (chat template, decoding for tool-call parsing).
        config: the rollout config; ``config.multi_turn`` names the tools, interactions and limits.
        tools / interactions: already-built tools (a list) / interactions (by name), instead of the YAML files.
        admit_wait_s: see :data:`ADMIT_WAIT_S`.
    """

    def __init__(self, engine: BaseRollout, tokenizer: Any, config: RolloutConfig,
                 tools: Iterable[Any] | None = None, interactions: Mapping[str, Any] | None = None,
                 admit_wait_s: float = ADMIT_WAIT_S):  # fmt: skip
        self.engine, self.tokenizer, self.config = engine, tokenizer, config
        self.admit_wait_s = admit_wait_s
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
        self._thread: threading.Thread | None = None  # runs self._loop, started at the first multi-turn batch
        self.engine_calls: list[list[int]] = []  # per engine call of the last batch: its trajectories' rows

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
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._thread = None
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
        self._rollout(trajs, prompts.meta_info, request, template, longest)
        return assemble(prompts, trajs, request.response_length, request.pad_token_id, request.calculate_log_probs)

    def _submit(self, coro) -> concurrent.futures.Future:
        """Run ``coro`` on the tool thread's event loop."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop.run_forever, name="agent-loop-tools", daemon=True)
            self._thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

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

    def _rollout(self, trajs: list[Trajectory], meta: Mapping[str, Any], request: GenerationRequest,
                 template: TemplateTokens, longest: int) -> None:  # fmt: skip
        self._submit(self._start_interactions(trajs)).result()
        pending: dict[concurrent.futures.Future, Trajectory] = {}
        self.engine_calls = []
        try:
            ready = [t for t in trajs if t.stop_reason is None]
            while ready or pending:
                if not ready:  # nothing to generate: wait for the first finished tool, then briefly for others
                    done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    concurrent.futures.wait(set(pending) - done, timeout=self.admit_wait_s)
                for future in [f for f in pending if f.done()]:
                    t = pending.pop(future)
                    future.result()  # a bug in the loop itself surfaces here
                    if t.stop_reason is None:
                        ready.append(t)
                if not ready:
                    continue
                batch, ready = sorted(ready, key=lambda t: t.row), []
                self._generate(batch, meta, request, longest)  # tools of other trajectories keep running
                fresh = {}
                for t in batch:
                    if t.turn_complete:
                        fresh[self._submit(self._after_generation(t, request, template))] = t
                    else:  # cut by this call's length: goes on in the next call
                        ready.append(t)
                concurrent.futures.wait(fresh, timeout=self.admit_wait_s)
                pending.update(fresh)
        finally:
            for future in pending:
                future.cancel()
            concurrent.futures.wait(pending)
            self._submit(self._finish_all(trajs)).result()
        mode = self.config.multi_turn.tokenization_sanity_check_mode
        if mode != "disable":
            self._check(trajs, template, mode)

    async def _start_interactions(self, trajs: list[Trajectory]) -> None:
        for t in trajs:
            if t.interaction is not None:
                try:
                    t.interaction_id = await t.interaction.start_interaction(None, **t.interaction_kwargs)
                except Exception as err:
                    logger.warning("interaction start failed: %s: %s", type(err).__name__, err)
                    t.interaction = None  # the trajectory runs without its user

    async def _finish_all(self, trajs: list[Trajectory]) -> None:
        await asyncio.gather(*(self._finish(t) for t in trajs))

    def _generate(self, live: list[Trajectory], meta: Mapping[str, Any], request: GenerationRequest,
                  longest: int) -> None:
        """One engine call continuing each of ``live`` from its own ids."""
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
            call_meta["seed"] = int(meta["seed"]) + 7919 * len(self.engine_calls)
        self.engine_calls.append([t.row for t in live])
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
