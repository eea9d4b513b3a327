"""verl's nested LoRA spelling, ``model.lora.*`` (its Megatron-style LoRA section: ``rank``, ``alpha``,
``target_modules`` with Megatron's layer names, ...), read as the flat keys ``model.lora_rank`` etc.

Megatron's layer names map onto the Hugging Face names of the same layers: ``linear_qkv`` -> ``q_proj, k_proj,
v_proj``; ``linear_proj`` -> ``o_proj``; ``linear_fc1`` -> ``gate_proj, up_proj``; ``linear_fc2`` -> ``down_proj``
(and the unfused ``linear_q/k/v``, ``linear_fc1_gate/up`` of ``type=canonical_lora``). Other names pass through.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MEGATRON_TO_HF", "flat_lora_keys"]

MEGATRON_TO_HF = {
    "linear_qkv": ("q_proj", "k_proj", "v_proj"), "linear_q": ("q_proj",), "linear_k": ("k_proj",),
    "linear_v": ("v_proj",), "linear_proj": ("o_proj",), "linear_fc1": ("gate_proj", "up_proj"),
    "linear_fc1_gate": ("gate_proj",), "linear_fc1_up": ("up_proj",), "linear_fc2": ("down_proj",),
}
ALL_LINEAR = {"linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"}
DEFAULT_ALPHA = 32  # verl's default of lora.alpha
# keys that select what this library does, and the values that mean it (a different value is refused)
ONLY = {"type": ("lora", "canonical_lora"), "dropout": (0, 0.0), "lora_A_init_method": ("kaiming",),
        "lora_B_init_method": ("zero",), "a2a_experimental": (False,), "dtype": (None,)}
WHY = {"type": "DoRA / VLM LoRA are not available (plain LoRA on the unfused Hugging Face layers)",
       "dropout": "LoRA dropout is not available",
       "lora_A_init_method": "adapters start as peft initialises them (A: Kaiming-uniform, B: zero)",
       "lora_B_init_method": "adapters start as peft initialises them (A: Kaiming-uniform, B: zero)",
       "a2a_experimental": "a Megatron communication option", "dtype": "adapters keep the model's dtype"}
# keys whose value gives the same training here: the rollout always gets merged weights (merge), dropout is off
# (dropout_position), no vision tower is trained (freeze_vision_model)
SAME = ("merge", "dropout_position", "freeze_vision_model")
READ = ("rank", "alpha", "target_modules", "exclude_modules", "adapter_path")


def _hf_names(value: Any, key: str) -> Any:
    if value is None or value == "all-linear":
        return value
    names = [value] if isinstance(value, str) else list(value)
    if set(names) == ALL_LINEAR:
        return "all-linear"
    out: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"{key} entries must be module names, got {name!r}")
        out.extend(n for n in MEGATRON_TO_HF.get(name, (name,)) if n not in out)
    return out


def flat_lora_keys(lora: dict[str, Any], key: str) -> dict[str, Any]:
    """``{lora_rank, lora_alpha, target_modules, exclude_modules, lora_adapter_path}`` (those given) of a nested
    ``{key}.lora`` section; raises ``ValueError`` naming the key for a setting that cannot run here."""
    for name, value in lora.items():
        if name in ONLY and not any(value == a and type(value) is not bool or value is a for a in ONLY[name]):
            accepted = ", ".join("null" if a is None else str(a) for a in ONLY[name])
            raise ValueError(f"{key}.lora.{name}={value!r} is not supported: {WHY[name]} (accepted: {accepted})")
        if name not in ONLY and name not in SAME and name not in READ:
            raise ValueError(f"unknown key {key}.lora.{name}; verl's LoRA section has "
                             f"{sorted([*ONLY, *SAME, *READ])}")
    out: dict[str, Any] = {}
    if "rank" in lora:
        out["lora_rank"] = int(lora["rank"])
        out["lora_alpha"] = lora.get("alpha", DEFAULT_ALPHA)
    elif "alpha" in lora:
        out["lora_alpha"] = lora["alpha"]
    if "target_modules" in lora:
        out["target_modules"] = _hf_names(lora["target_modules"], f"{key}.lora.target_modules")
    if lora.get("exclude_modules"):
        out["exclude_modules"] = _hf_names(lora["exclude_modules"], f"{key}.lora.exclude_modules")
    if lora.get("adapter_path"):
        out["lora_adapter_path"] = lora["adapter_path"]
    return out
