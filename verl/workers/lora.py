"""LoRA adapters on a transformers model, with peft, from the outside: the model code knows nothing of them.

What the workers need from LoRA, and nothing else:

- :func:`apply_lora`: wrap the chosen linear layers (``target_modules``: ``all-linear`` or names, minus
  ``exclude_modules``) in peft's LoRA layers, freeze everything else; returns the same transformers module (the
  adapters live inside it; :meth:`LoraSpec.peft_config` gives peft's config for saving). Done before FSDP2 shards the model, so the
  sharded model carries frozen base weights and trainable adapter weights side by side.
- :func:`adapters_disabled`: a context in which the model computes as its base (the reference policy for free).
- :func:`merged_weights_iter`: the weights a rollout engine needs, by the base model's names: every adapted
  ``W`` becomes ``W + scaling * B @ A`` in a new tensor, so the trained parameters are never touched.
- :func:`adapter_state_dict` / :func:`save_adapter`: the adapter in peft's own format (``adapter_config.json`` +
  ``adapter_model.safetensors``), loadable with ``peft.PeftModel.from_pretrained(base, path)``.
- :func:`lora_summary`: which modules were adapted and how many parameters train.

A LoRA layer's state-dict names, e.g. for ``model.layers.0.self_attn.q_proj``: ``...q_proj.base_layer.weight``
(and ``.bias``), ``...q_proj.lora_A.default.weight`` ``(r, in)`` and ``...q_proj.lora_B.default.weight``
``(out, r)``. Its output is ``base(x) + scaling * B(A(x))`` with ``scaling = lora_alpha / r`` (Hu et al. 2021).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "ADAPTER_DIR",
    "LoraSpec",
    "LoraSummary",
    "adapter_state_dict",
    "adapters_disabled",
    "apply_lora",
    "describe_lora",
    "is_lora_name",
    "lora_enabled",
    "lora_module_of",
    "lora_scalings",
    "lora_summary",
    "merged_name",
    "merged_weights_iter",
    "read_adapter_scaling",
    "save_adapter",
]

ADAPTER_DIR = "lora_adapter"
"""The subdirectory of a checkpoint that holds the adapter in peft's format."""

_ADAPTER = "default"  # peft's name of the one adapter
_BASE = ".base_layer."
_A, _B = f".lora_A.{_ADAPTER}.weight", f".lora_B.{_ADAPTER}.weight"


@dataclass(frozen=True)
class LoraSpec:
    """What to adapt: the LoRA keys of a model section (``model.lora_rank`` etc.), checked."""

    rank: int
    alpha: float
    target_modules: str | tuple[str, ...] = "all-linear"
    exclude_modules: tuple[str, ...] = ()
    key: str = "model"
    """The config section the keys came from, for messages (``actor_rollout_ref.model``, ``model``)."""
    adapter_path: str | None = None
    """A saved peft adapter to start from (its config gave the fields above)."""

    @classmethod
    def from_model_config(cls, model_cfg: Any, key: str) -> LoraSpec | None:
        """The spec of a config section with ``lora_rank``, ``lora_alpha``, ``target_modules`` (and
        ``exclude_modules``, ``lora_adapter_path``); None when ``lora_rank`` is 0 and no adapter is given (full
        fine-tuning). A ``lora_adapter_path`` supplies rank, alpha and targets from its ``adapter_config.json``.
        verl's nested spelling ``lora.rank`` / ``lora.alpha`` / ... (:mod:`verl.workers.lora_nested`) is read too."""
        model_cfg = _with_nested_keys(model_cfg, key)
        adapter_path = getattr(model_cfg, "lora_adapter_path", None)
        if adapter_path:
            return cls._from_adapter(os.path.expanduser(adapter_path), key)
        rank = int(getattr(model_cfg, "lora_rank", 0) or 0)
        if rank < 0:
            raise ValueError(f"{key}.lora_rank={rank} must be >= 0 (0 = full fine-tuning)")
        if rank == 0:
            return None
        alpha = float(model_cfg.lora_alpha)
        if alpha <= 0:
            raise ValueError(f"{key}.lora_alpha={model_cfg.lora_alpha} must be > 0 (the adapter's scale is alpha / rank)")
        targets = _names(model_cfg.target_modules, f"{key}.target_modules")
        if not targets:
            raise ValueError(f"{key}.target_modules is empty; use all-linear or a list such as [q_proj,v_proj]")
        if isinstance(targets, tuple) and "all-linear" in targets:
            targets = "all-linear" if len(targets) == 1 else targets
        excludes = _names(getattr(model_cfg, "exclude_modules", None), f"{key}.exclude_modules")
        excludes = (excludes,) if isinstance(excludes, str) else excludes
        return cls(rank, alpha, targets, excludes, key)

    @classmethod
    def _from_adapter(cls, path: str, key: str) -> LoraSpec:
        import json

        file = os.path.join(path, "adapter_config.json")
        if not os.path.isfile(file):
            raise ValueError(f"{key}.lora_adapter_path={path!r} has no adapter_config.json (a directory saved by peft, "
                             "e.g. a checkpoint's lora_adapter/)")
        with open(file) as f:
            saved = json.load(f)
        if saved.get("peft_type", "LORA") != "LORA" or saved.get("use_dora") or saved.get("rank_pattern"):
            raise ValueError(f"{key}.lora_adapter_path={path!r}: only plain LoRA adapters (no DoRA, no per-module "
                             "ranks) can be trained on here")
        targets = saved["target_modules"]
        targets = targets if isinstance(targets, str) else tuple(sorted(targets))
        excludes = saved.get("exclude_modules") or ()
        excludes = (excludes,) if isinstance(excludes, str) else tuple(excludes)
        return cls(int(saved["r"]), float(saved["lora_alpha"]), targets, excludes, key, path)

    def peft_config(self) -> Any:
        from peft import LoraConfig

        return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                          target_modules=self.target_modules if isinstance(self.target_modules, str) else list(self.target_modules),
                          exclude_modules=list(self.exclude_modules) or None)


def _with_nested_keys(model_cfg: Any, key: str) -> Any:
    """``model_cfg`` with its nested ``lora`` section (verl's ``model.lora.*``) as the flat keys; both spellings of
    one setting must agree."""
    nested = getattr(model_cfg, "lora", None)
    if not nested:
        return model_cfg
    from types import SimpleNamespace

    from verl.workers.lora_nested import flat_lora_keys

    flat = flat_lora_keys(dict(nested), key)
    names = ("lora_rank", "lora_alpha", "target_modules", "exclude_modules", "lora_adapter_path")
    values = {n: getattr(model_cfg, n, None) for n in names}
    if flat.get("lora_rank") and values["lora_rank"] and values["lora_rank"] != flat["lora_rank"]:
        raise ValueError(f"{key}.lora_rank={values['lora_rank']} and {key}.lora.rank={flat['lora_rank']} disagree; "
                         "set one of them")
    return SimpleNamespace(**{**values, **flat})


def lora_enabled(model_cfg: Any) -> bool:
    """Whether a model section trains LoRA adapters (either spelling, or an adapter to start from)."""
    nested = getattr(model_cfg, "lora", None) or {}
    return bool(getattr(model_cfg, "lora_rank", 0) or getattr(model_cfg, "lora_adapter_path", None)
                or nested.get("rank") or nested.get("adapter_path"))


def _names(value: Any, key: str) -> str | tuple[str, ...]:
    """``all-linear``, a comma-separated string or a list, as a string (one name) or a tuple of names."""
    if value is None:
        return ()
    if isinstance(value, str):
        parts = [p.strip() for p in value.strip("[]").split(",") if p.strip()]
        return parts[0] if len(parts) == 1 else tuple(parts)
    if isinstance(value, Sequence):
        return tuple(str(v) for v in value)
    raise ValueError(f"{key}={value!r}: use all-linear or a list of module names")


def apply_lora(model: nn.Module, spec: LoraSpec, seed: int = 0) -> nn.Module:
    """Add LoRA adapters to ``model`` in place and freeze its other weights; returns the transformers model.

    ``A`` is initialised from ``seed`` (every rank and every process layout starts from the same adapters) and
    ``B`` is zero, so the adapted model starts equal to its base. Only ``nn.Linear`` layers are adapted; a
    target that names anything else is an error naming ``target_modules``.
    """
    from peft import get_peft_model
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    if not isinstance(spec.target_modules, str):  # peft only complains when no target matches at all
        names = [name for name, _ in model.named_modules()]
        unmatched = [t for t in spec.target_modules if not any(n == t or n.endswith("." + t) for n in names)]
        if unmatched:
            linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
            raise ValueError(f"{spec.key}.target_modules={_show(spec.target_modules)}: {unmatched} match no module of "
                             f"the model; its linear layers are named {linear}")
    config = spec.peft_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            if spec.adapter_path:
                from peft import PeftModel

                peft_model = PeftModel.from_pretrained(model, spec.adapter_path, is_trainable=True)
            else:
                peft_model = get_peft_model(model, config)
        except ValueError as err:  # peft: "Target modules {...} not found in the base model"
            raise ValueError(f"{spec.key}.target_modules={_show(spec.target_modules)}: {err}") from None
    wrong = [name for name, m in model.named_modules() if isinstance(m, LoraLayer) and not isinstance(m, LoraLinear)]
    if wrong:
        raise ValueError(f"{spec.key}.target_modules={_show(spec.target_modules)} selects non-linear layers {wrong[:3]}; "
                         "LoRA is applied to linear layers only: use all-linear or name linear layers")
    return peft_model.get_base_model()  # the transformers model, now holding the LoRA layers


def _show(targets: str | tuple[str, ...]) -> str:
    return targets if isinstance(targets, str) else "[" + ",".join(targets) + "]"


def is_lora_name(name: str) -> bool:
    """Whether a parameter / state-dict name belongs to an adapter (``lora_A`` / ``lora_B``)."""
    return ".lora_A." in name or ".lora_B." in name


def has_lora(model: nn.Module) -> bool:
    return any(is_lora_name(name) for name, _ in model.named_parameters())


@dataclass(frozen=True)
class LoraSummary:
    """What LoRA did to a model: the adapted module kinds and how many parameters train."""

    rank: int
    alpha: float
    module_kinds: tuple[str, ...]
    """Short names of the adapted modules (``q_proj``, ``down_proj``, ...), sorted."""
    num_modules: int
    """Adapted linear layers."""
    trainable: int
    """Parameters that train (the adapters)."""
    total: int
    """All parameters (base + adapters)."""

    def __str__(self) -> str:
        return (f"LoRA rank {self.rank}, alpha {self.alpha:g} (scale {self.alpha / self.rank:g}) on {self.num_modules} "
                f"linear layers ({', '.join(self.module_kinds)}): {self.trainable:,} trainable of {self.total:,} "
                f"parameters ({100 * self.trainable / max(self.total, 1):.2f}%)")


def lora_summary(model: nn.Module) -> LoraSummary:
    """Count adapters and parameters of a model :func:`apply_lora` wrapped (sharded or not: sizes are global)."""
    from peft.tuners.lora import LoraLayer

    layers = {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}
    if not layers:
        raise ValueError("the model has no LoRA adapters")
    first = next(iter(layers.values()))
    rank, scale = first.r[_ADAPTER], first.scaling[_ADAPTER]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)  # DTensor.numel(): global size
    total = sum(p.numel() for p in model.parameters())
    kinds = tuple(sorted({name.rsplit(".", 1)[-1] for name in layers}))
    return LoraSummary(rank, scale * rank, kinds, len(layers), trainable, total)


def describe_lora(model_path: str, spec: LoraSpec, trust_remote_code: bool = False) -> LoraSummary:
    """What :func:`apply_lora` would do to the model at ``model_path``, worked out on the meta device (no weights
    read, no memory): raises ``ValueError`` naming ``target_modules`` when the targets do not fit the model."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return lora_summary(apply_lora(model, spec))


@contextlib.contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """Inside the context, ``model`` computes exactly as its base model (each LoRA layer returns ``base(x)``)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:  # peft re-marks the adapter weights trainable here, as they were
            layer.enable_adapters(True)


def lora_scalings(model: nn.Module) -> dict[str, float]:
    """``{module name: alpha / r}`` of every LoRA layer, by the name its state-dict keys start with."""
    from peft.tuners.lora import LoraLayer

    return {name: m.scaling[_ADAPTER] for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def lora_module_of(name: str) -> str | None:
    """The LoRA layer a state-dict name belongs to (``...q_proj`` for ``...q_proj.lora_A.default.weight`` or
    ``...q_proj.base_layer.weight``), or None for a plain weight."""
    if _BASE in name:
        return name.split(_BASE)[0]
    for suffix in (_A, _B):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def merged_name(name: str) -> str | None:
    """The base model's name of an adapted model's state-dict entry; None for adapter tensors."""
    if is_lora_name(name):
        return None
    return name.replace(_BASE, ".")


def merged_weights_iter(named_tensors: Iterator[tuple[str, torch.Tensor]], model: nn.Module | dict[str, float],
                        dtype: torch.dtype | None = None) -> Iterator[tuple[str, torch.Tensor]]:
    """The base model's ``(name, tensor)`` pairs with every adapted weight merged: ``W + scaling * (B @ A)``.

    Args:
        named_tensors: the adapted model's full state dict, one tensor at a time (e.g.
            :func:`verl.workers.fsdp.full_state_dict_iter` of the sharded model, in its master dtype).
        model: the adapted model (for each layer's ``scaling``), or ``{module name: scaling}``.
        dtype: the dtype of the yielded tensors (the rollout's); merging happens before the cast.

    A merged weight is a new tensor; the others are passed through (cast when ``dtype`` differs). At most one
    layer's ``W``, ``A`` and ``B`` are held at a time.
    """
    scalings = model if isinstance(model, dict) else lora_scalings(model)
    pending: dict[str, dict[str, torch.Tensor]] = {}

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t if dtype is None or t.dtype == dtype else t.to(dtype)

    for name, tensor in named_tensors:
        if _BASE in name:
            module, param = name.split(_BASE)
            if param != "weight":
                yield f"{module}.{param}", cast(tensor)
                continue
            part = "W"
        elif name.endswith(_A):
            module, part = name[: -len(_A)], "A"
        elif name.endswith(_B):
            module, part = name[: -len(_B)], "B"
        else:
            yield name, cast(tensor)
            continue
        parts = pending.setdefault(module, {})
        parts[part] = tensor
        if len(parts) == 3:
            del pending[module]
            W, A, B = parts["W"], parts["A"], parts["B"]
            delta = (B.to(W.dtype) @ A.to(W.dtype)) * scalings[module]  # (out, r) @ (r, in): peft's delta weight
            yield f"{module}.weight", cast(W + delta)
    if pending:
        raise RuntimeError(f"LoRA layers {sorted(pending)[:3]} lack their base weight or adapters in the state dict")


def adapter_state_dict(named_tensors: Iterator[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The adapter tensors of a full state dict, by peft's saved names
    (``base_model.model.<module>.lora_A.weight``: the adapter's name is not part of the file)."""
    out = {}
    for name, tensor in named_tensors:
        if is_lora_name(name):
            out["base_model.model." + name.replace(f".{_ADAPTER}.", ".")] = tensor.detach().to("cpu").contiguous()
    return out


def read_adapter_scaling(path: str) -> float:
    """``lora_alpha / r`` of a saved adapter (``path/adapter_config.json``, written by :func:`save_adapter`)."""
    import json

    file = os.path.join(path, "adapter_config.json")
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{file} is missing: the checkpoint has LoRA weights but no saved adapter config")
    with open(file) as f:
        config = json.load(f)
    if config.get("rank_pattern") or config.get("alpha_pattern") or config.get("use_rslora"):
        raise ValueError(f"{file}: per-module ranks/alphas or rsLoRA are not written by this library")
    return float(config["lora_alpha"]) / int(config["r"])


def save_adapter(path: str, adapters: dict[str, torch.Tensor], peft_config: Any, base_model_path: str | None) -> str:
    """Write ``path/adapter_config.json`` and ``path/adapter_model.safetensors`` (peft's format); returns ``path``."""
    import copy

    from safetensors.torch import save_file

    os.makedirs(path, exist_ok=True)
    config = copy.deepcopy(peft_config)
    config.base_model_name_or_path = base_model_path
    config.inference_mode = True
    config.save_pretrained(path)
    save_file(adapters, os.path.join(path, "adapter_model.safetensors"), metadata={"format": "pt"})
    return path
