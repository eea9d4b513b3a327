"""What every reward manager shares: decode the valid tokens, turn scores into a ``[B, R]`` tensor.

verl's contract (a ``DataProto`` coming out of rollout):

- ``batch["prompts"]`` ``[B, P]`` (left-padded), ``batch["responses"]`` ``[B, R]`` (right-padded),
  ``batch["attention_mask"]`` ``[B, P + R]``: the valid response length is ``attention_mask[:, P:].sum(-1)``;
- ``non_tensor_batch["reward_model"][i]["ground_truth"]``, ``non_tensor_batch[reward_fn_key][i]`` (the data
  source, ``"data_source"`` by default), ``non_tensor_batch["extra_info"][i]`` (optional);
- the sample's outcome reward goes on its last valid response token of ``token_level_scores`` ``[B, R]``.

A score function may return a float (or int/bool) or a dict with ``"score"`` plus fields to log. A score that
raises, times out or is not a finite number gives reward 0 and is counted in the metrics
(``reward/num_errors``, ``reward/num_timeouts``, ``reward/num_invalid`` and their fractions of the batch,
``reward/frac_*``); the first such sample is kept, with its exception and traceback, as
:attr:`RewardManagerBase.last_failure`. A missing scorer for a data source (:class:`UnknownDataSourceError`) is
a configuration error and is raised.

Every manager limits each call of the score function to ``timeout_s`` seconds (default
:data:`DEFAULT_TIMEOUT_S`; ``0``/``None`` turns the limit off): a call past it scores 0 and is counted as a
timeout. In-process managers interrupt the call (:mod:`verl.utils.deadline`); ``prime`` kills the process that
runs it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import threading
import traceback
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch

from verl.protocol import DataProto
from verl.utils.deadline import call_with_deadline
from verl.utils.reward_score import UnknownDataSourceError, default_compute_score

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DecodedBatch",
    "RewardFailure",
    "RewardManagerBase",
    "ScoreOutcome",
    "ScoreTimeoutError",
    "check_timeout",
    "coerce_score",
    "decode_batch",
    "fault_metrics",
    "is_async_callable",
]

logger = logging.getLogger(__name__)

ERROR_POLICIES = ("zero", "raise")
FAULT_KINDS = ("errors", "timeouts", "invalid")
DEFAULT_TIMEOUT_S = 60.0
"""Default per-call limit of the score function, in seconds (``reward_model.reward_kwargs.timeout_s``)."""


_OWN_FILES = {__file__, os.path.join(os.path.dirname(__file__), "loader.py"), call_with_deadline.__code__.co_filename}


class ScoreTimeoutError(TimeoutError):
    """A call of the score function ran past the reward manager's ``timeout_s``."""


def check_timeout(timeout_s: Any) -> float | None:
    """``timeout_s`` as a positive number of seconds, or ``None`` for no limit (``None``/``0``)."""
    if timeout_s is None or timeout_s == 0:
        return None
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ValueError(f"reward_model.reward_kwargs.timeout_s={timeout_s!r}: the per-call time limit of the score "
                         "function must be a positive number of seconds (0 or null: no limit)")
    return float(timeout_s)


@dataclass
class DecodedBatch:
    """The strings and per-sample fields a score function needs, for ``B`` samples."""

    prompt_strs: list[str]  # empty unless decoded (only printed examples need them)
    response_strs: list[str]
    valid_response_lengths: torch.Tensor  # (B,) int64
    data_sources: list[str]
    ground_truths: list[Any]
    extra_infos: list[dict]  # never None: {} plus num_turns and rollout_reward_scores, as verl passes

    def __len__(self) -> int:
        return len(self.response_strs)


@dataclass
class ScoreOutcome:
    """What a score call produced: ``status`` is ``"ok"``, ``"error"`` or ``"timeout"``; ``detail`` is the
    traceback of an error when known."""

    status: str
    value: Any = None
    error: str | None = None
    detail: str | None = None


@dataclass
class RewardFailure:
    """The first sample of a batch whose score was unusable: what it was scored on and what went wrong."""

    index: int
    kind: str
    """``"error"`` (the score function raised), ``"timeout"`` or ``"invalid"`` (no finite number came back)."""
    message: str
    """The exception (``Type: message``), the time limit, or the value returned."""
    data_source: str
    solution: str
    ground_truth: Any
    traceback: str | None = None

    def describe(self, max_chars: int = 400) -> str:
        """A few lines naming the sample and its failure (with the traceback when there is one)."""
        solution = self.solution if len(self.solution) <= max_chars else self.solution[:max_chars] + "..."
        lines = [f"sample {self.index} (data_source={self.data_source!r}, ground_truth={self.ground_truth!r:.200}):",
                 f"  response: {solution!r}", f"  {self.kind}: {self.message}"]
        if self.traceback:
            lines.append("  " + self.traceback.rstrip().replace("\n", "\n  "))
        return "\n".join(lines)


@dataclass
class _Scored:
    rewards: list[float]
    extra: dict[str, list[Any]]
    counts: Counter = field(default_factory=Counter)
    failure: RewardFailure | None = None


def _column(data: DataProto, key: str, fix: str) -> np.ndarray:
    if key not in data.non_tensor_batch:
        raise KeyError(
            f"reward manager needs non_tensor_batch[{key!r}], which this batch lacks "
            f"(has {sorted(data.non_tensor_batch)}); {fix}"
        )
    return data.non_tensor_batch[key]


def decode_batch(data: DataProto, tokenizer: Any, reward_fn_key: str = "data_source",
                 decode_prompts: bool = True) -> DecodedBatch:  # fmt: skip
    """Decode each sample's valid response (and prompt) tokens and collect its data source, truth, extra info."""
    prompts, responses = data.batch["prompts"], data.batch["responses"]  # (B, P), (B, R)
    mask = data.batch["attention_mask"]  # (B, P + R)
    p_len = prompts.shape[-1]
    valid_resp = mask[:, p_len:].sum(-1).to(device="cpu", dtype=torch.long)  # (B,)
    prompt_strs = []
    if decode_prompts:  # left-padded: the valid prompt tokens are the last ones
        valid_prompt = mask[:, :p_len].sum(-1).tolist()
        prompt_ids = [row[p_len - n :].tolist() if n else [] for row, n in zip(prompts, valid_prompt)]
        prompt_strs = tokenizer.batch_decode(prompt_ids, skip_special_tokens=True)
    response_ids = [row[:n].tolist() for row, n in zip(responses, valid_resp.tolist())]
    sources = _column(data, reward_fn_key, "set data.reward_fn_key to the column holding the data source")
    reward_model = _column(data, "reward_model", 'each row needs reward_model={"ground_truth": ...}')
    truths = []
    for i, rm in enumerate(reward_model):
        if not isinstance(rm, dict) or "ground_truth" not in rm:
            raise ValueError(f'sample {i}: reward_model must be a dict with "ground_truth", got {rm!r}')
        truths.append(rm["ground_truth"])
    # as verl: a copy of the row's extra_info ({} when absent) with num_turns (None unless a multi-turn rollout
    # reported it) and rollout_reward_scores (the rollout's "reward_scores", {} when absent)
    n = len(data)
    columns = data.non_tensor_batch
    infos, turns, rollout_scores = (columns.get(k, [None] * n) for k in ("extra_info", "__num_turns__", "reward_scores"))
    extras = [
        {**(info or {}), "num_turns": None if t is None else int(t), "rollout_reward_scores": scores or {}}
        for info, t, scores in zip(infos, turns, rollout_scores)
    ]
    return DecodedBatch(
        prompt_strs=prompt_strs,
        response_strs=tokenizer.batch_decode(response_ids, skip_special_tokens=True),
        valid_response_lengths=valid_resp,
        data_sources=[str(s) for s in sources],
        ground_truths=truths,
        extra_infos=extras,
    )


def coerce_score(value: Any) -> tuple[float | None, dict[str, Any]]:
    """``(reward, fields to log)`` from a score function's return value; reward ``None`` when it is unusable
    (not a number, NaN/inf, a dict without ``"score"``)."""
    fields: dict[str, Any] = {}
    if isinstance(value, dict):
        if "score" not in value:
            return None, {}
        fields = dict(value)
        value = value["score"]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, int, float, np.integer, np.floating, np.bool_)):
        reward = float(value)
        return (reward, fields) if math.isfinite(reward) else (None, fields)
    return None, fields


def is_async_callable(fn: Any) -> bool:
    """Whether calling ``fn`` gives a coroutine (plain or wrapped in ``functools.partial`` or an object)."""
    while isinstance(fn, partial):
        fn = fn.func
    if getattr(fn, "is_async", False):
        return True
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def run_coroutine_sync(coro: Coroutine) -> Any:
    """Run ``coro`` to completion from sync code, even when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class RewardManagerBase:
    """Shared machinery: decoding, score coercion, reward placement, example printing and metrics.

    Subclasses implement :meth:`score` (how the score function is called) and may override
    :meth:`shape_rewards` (e.g. DAPO's overlong penalty).

    Args:
        tokenizer: decodes ``prompts`` and ``responses``.
        num_examine: how many samples per data source to print on each call.
        compute_score: the score function; ``None`` means :func:`default_compute_score`.
        reward_fn_key: the non-tensor column holding each sample's data source.
        on_error: ``"zero"`` (a failing score gives 0 and is counted) or ``"raise"``.
        timeout_s: the limit of one call of the score function in seconds (``None``/``0``: none); a call past
            it scores 0 and is counted in ``reward/num_timeouts``.

    After each call, :attr:`last_metrics` holds the fault counts and fractions of that batch and
    :attr:`last_failure` the first unusable sample (``None`` when every score was usable).
    """

    name: ClassVar[str] = ""

    def __init__(
        self,
        tokenizer: Any,
        num_examine: int = 0,
        compute_score: Callable[..., Any] | None = None,
        reward_fn_key: str = "data_source",
        on_error: str = "zero",
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ):
        if on_error not in ERROR_POLICIES:
            raise ValueError(f"on_error must be one of {ERROR_POLICIES}, got {on_error!r}")
        self.tokenizer = tokenizer
        self.num_examine = num_examine
        self.compute_score = compute_score or default_compute_score
        self.reward_fn_key = reward_fn_key
        self.on_error = on_error
        self.timeout_s = check_timeout(timeout_s)
        self.last_metrics: dict[str, float] = {}
        self.last_failure: RewardFailure | None = None
        self.last_num_samples = 0

    # ------------------------------------------------------------------ to implement

    def score(self, batch: DecodedBatch) -> list[ScoreOutcome]:
        """One outcome per sample, in order."""
        raise NotImplementedError

    def shape_rewards(self, batch: DecodedBatch, rewards: list[float], extra: dict[str, list[Any]]) -> list[float]:
        """Adjust the per-sample rewards (and add fields to ``extra``) before they are placed; identity here."""
        return rewards

    # ------------------------------------------------------------------ the call

    def __call__(self, data: DataProto, return_dict: bool = False) -> torch.Tensor | dict[str, Any]:
        """Score a rollout batch.

        Returns:
            ``token_level_scores`` ``[B, R]`` float32 with each reward on the last valid response token, or with
            ``return_dict`` ``{"reward_tensor", "reward_extra_info": {name: list of B}, "reward_metrics",
            "reward_failure"}`` (the metrics: fault counts and fractions; the failure: the first unusable
            sample as a :class:`RewardFailure`, or ``None``).
        """
        if "rm_scores" in data.batch:  # a reward model already scored this batch
            scores = data.batch["rm_scores"]
            self.last_metrics, self.last_failure, self.last_num_samples = {}, None, 0
            if return_dict:
                return {"reward_tensor": scores, "reward_extra_info": {}, "reward_metrics": {}, "reward_failure": None}
            return scores
        batch = decode_batch(data, self.tokenizer, self.reward_fn_key, decode_prompts=self.num_examine > 0)
        scored = self._collect(batch, self.score(batch))
        rewards = self.shape_rewards(batch, scored.rewards, scored.extra)
        responses = data.batch["responses"]
        reward_tensor = place_rewards(rewards, batch.valid_response_lengths, responses.shape[-1]).to(responses.device)
        self.last_metrics = fault_metrics(scored.counts, len(batch))
        self.last_failure, self.last_num_samples = scored.failure, len(batch)
        self._print_examples(batch, rewards, scored.extra)
        if return_dict:
            return {
                "reward_tensor": reward_tensor,
                "reward_extra_info": scored.extra,
                "reward_metrics": dict(self.last_metrics),
                "reward_failure": scored.failure,
            }
        return reward_tensor

    def _collect(self, batch: DecodedBatch, outcomes: Sequence[ScoreOutcome]) -> _Scored:
        n = len(outcomes)
        rewards, extra, counts = [0.0] * n, {}, Counter()
        failure = None
        for i, outcome in enumerate(outcomes):
            if outcome.status != "ok":
                kind = "timeout" if outcome.status == "timeout" else "error"
                counts[kind + "s"] += 1
                failure = failure or self._failure(batch, i, kind, outcome.error or outcome.status, outcome.detail)
                continue
            reward, fields = coerce_score(outcome.value)
            if reward is None:
                counts["invalid"] += 1
                failure = failure or self._failure(batch, i, "invalid", f"unusable score {outcome.value!r:.300} (a "
                                                   'finite number, or a dict with a numeric "score", is needed)')
                continue
            rewards[i] = reward
            for key, value in fields.items():
                extra.setdefault(key, [None] * n)[i] = value
        if failure is not None:
            logger.warning(
                "%s: %d error(s), %d timeout(s), %d unusable score(s) of %d scored 0; first: sample %d: %s: %s",
                type(self).__name__, counts["errors"], counts["timeouts"], counts["invalid"], n, failure.index,
                failure.kind, failure.message,
            )  # fmt: skip
        return _Scored(rewards, extra, counts, failure)

    @staticmethod
    def _failure(batch: DecodedBatch, i: int, kind: str, message: str, detail: str | None = None) -> RewardFailure:
        return RewardFailure(index=i, kind=kind, message=message, data_source=batch.data_sources[i],
                             solution=batch.response_strs[i], ground_truth=batch.ground_truths[i], traceback=detail)

    def _fail(self, exc: BaseException) -> ScoreOutcome:
        """The outcome of a score call that raised (re-raised for config errors or ``on_error="raise"``)."""
        if isinstance(exc, UnknownDataSourceError) or self.on_error == "raise":
            raise exc
        if isinstance(exc, ScoreTimeoutError):
            return ScoreOutcome("timeout", error=str(exc))
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename in _OWN_FILES:
            tb = tb.tb_next  # start at the score function, not in the call machinery
        detail = "".join(traceback.format_exception(type(exc), exc, tb))
        return ScoreOutcome("error", error=f"{type(exc).__name__}: {exc}", detail=detail)

    def _timed_out(self, entry: Any = None) -> ScoreTimeoutError:
        return ScoreTimeoutError(f"no result after {self.timeout_s:g} s (reward_model.reward_kwargs.timeout_s)")

    def call_score(self, **kwargs: Any) -> ScoreOutcome:
        """One call of the (sync) score function with ``kwargs``, within :attr:`timeout_s`."""
        try:
            value = call_with_deadline(lambda: self.compute_score(**kwargs), self.timeout_s, self._timed_out,
                                       hard_exit_after_s=self._hard_exit_after(),
                                       label=f"the reward score function ({type(self).__name__})")
        except Exception as exc:
            return self._fail(exc)
        return ScoreOutcome("ok", value)

    async def call_score_async(self, **kwargs: Any) -> ScoreOutcome:
        """One call of the ``async`` score function with ``kwargs``, within :attr:`timeout_s`."""
        try:
            value = await asyncio.wait_for(self.compute_score(**kwargs), self.timeout_s)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            if isinstance(exc, ScoreTimeoutError) or self.timeout_s is None:
                return self._fail(exc)
            return self._fail(self._timed_out())
        except Exception as exc:
            return self._fail(exc)
        return ScoreOutcome("ok", value)

    def _hard_exit_after(self) -> float | None:
        """How long past its deadline a call stuck in native code (not interruptible) may hold the run before
        the process exits; the limit itself, at least 60 s."""
        return None if self.timeout_s is None else max(60.0, self.timeout_s)

    def _print_examples(self, batch: DecodedBatch, rewards: list[float], extra: dict[str, list[Any]]) -> None:
        printed: Counter = Counter()
        for i in range(len(batch)):
            source = batch.data_sources[i]
            if printed[source] >= self.num_examine:
                continue
            printed[source] += 1
            print(f"[data_source] {source}")
            print(f"[prompt] {batch.prompt_strs[i]}")
            print(f"[response] {batch.response_strs[i]}")
            print(f"[ground_truth] {batch.ground_truths[i]}")
            for key, values in extra.items():
                if key != "score":
                    print(f"[{key}] {values[i]}")
            print(f"[score] {rewards[i]}")


def fault_metrics(counts: Counter | dict, num_samples: int, prefix: str = "reward/") -> dict[str, float]:
    """``{prefix}num_errors|num_timeouts|num_invalid`` and ``{prefix}frac_errors|frac_timeouts|frac_invalid|
    frac_unusable`` (fractions of ``num_samples``; 0 for an empty batch)."""
    metrics = {f"{prefix}num_{k}": float(counts.get(k, 0)) for k in FAULT_KINDS}
    total = max(num_samples, 1)
    metrics.update({f"{prefix}frac_{k}": counts.get(k, 0) / total for k in FAULT_KINDS})
    metrics[f"{prefix}frac_unusable"] = sum(counts.get(k, 0) for k in FAULT_KINDS) / total
    return metrics


def place_rewards(rewards: Sequence[float], valid_response_lengths: torch.Tensor, response_length: int) -> torch.Tensor:
    """``[B, R]`` zeros with ``rewards[i]`` at ``[i, valid_response_lengths[i] - 1]``.

    A sample with an empty response has no token to carry its reward, so its row stays zero.
    """
    n = len(rewards)
    out = torch.zeros(n, response_length, dtype=torch.float32)  # (B, R)
    lengths = valid_response_lengths.to(torch.long)
    rows = torch.nonzero(lengths > 0).squeeze(-1)
    out[rows, lengths[rows] - 1] = torch.tensor(rewards, dtype=torch.float32)[rows]
    return out
