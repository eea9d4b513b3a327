"""Build the reward function of a run from its config: the manager by name, the user's score function by path."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from types import ModuleType
from typing import Any

import torch

from verl.protocol import DataProto
from verl.reward.config import CustomRewardFunctionConfig, RewardManagerConfig, to_plain_dict
from verl.reward.registry import get_reward_manager_cls

__all__ = ["CustomRewardFunction", "compute_reward", "get_custom_reward_fn", "load_reward_manager"]

_MODULES: dict[str, ModuleType] = {}


PKG_PREFIX, FILE_PREFIX = "pkg://", "file://"


def _normalize_path(path: str) -> str:
    """``pkg://a.b`` (or ``pkg://a/b``) stays a package path; ``file://x.py`` and plain paths become absolute."""
    if path.startswith(PKG_PREFIX):
        return PKG_PREFIX + path[len(PKG_PREFIX) :].replace("/", ".")
    if path.startswith(FILE_PREFIX):
        path = path[len(FILE_PREFIX) :]
    return os.path.abspath(os.path.expanduser(path))


def _load_module(path: str) -> ModuleType:
    """Import a Python file once per process (by absolute path), or an importable module (``pkg://a.b.c``)."""
    path = _normalize_path(path)
    if path.startswith(PKG_PREFIX):
        return importlib.import_module(path[len(PKG_PREFIX) :])
    if path in _MODULES:
        return _MODULES[path]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"custom_reward_function.path={path!r} does not exist; point it at a .py file")
    name = "verl_custom_reward_" + hashlib.sha1(path.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import custom_reward_function.path={path!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop(name, None)
        raise
    _MODULES[path] = module
    return module


class CustomRewardFunction:
    """A user's score function loaded from a file (or a module, ``pkg://a.b.c`` as in verl), with ``reward_kwargs``
    bound.

    Calls pass through as ``fn(*args, **kwargs, **reward_kwargs)``; an ``async`` function stays async
    (``is_async``). Pickles as ``(path, name, reward_kwargs)`` and reloads the file on the other side, so it
    can be sent to worker processes started with any method.
    """

    def __init__(self, path: str, name: str = "compute_score", reward_kwargs: dict[str, Any] | None = None):
        self.path = _normalize_path(path)
        self.name = name
        self.reward_kwargs = dict(reward_kwargs or {})
        self.fn = self._resolve()

    def _resolve(self) -> Any:
        module = _load_module(self.path)
        if not hasattr(module, self.name):
            defined = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            raise AttributeError(
                f"custom_reward_function.name={self.name!r} is not defined in {self.path}; it defines {defined}"
            )
        fn = getattr(module, self.name)
        if not callable(fn):
            raise TypeError(f"{self.name!r} in {self.path} is a {type(fn).__name__}, not a function")
        return fn

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **{**kwargs, **self.reward_kwargs})

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "name": self.name, "reward_kwargs": self.reward_kwargs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.fn = self._resolve()

    def __repr__(self) -> str:
        return f"CustomRewardFunction({self.path!r}, name={self.name!r}, reward_kwargs={self.reward_kwargs})"


def _section(config: Any, key: str) -> Any:
    if config is None:
        return None
    if hasattr(config, "get") and not isinstance(config, type):
        try:
            return config.get(key)
        except TypeError:
            pass
    return getattr(config, key, None)


def get_custom_reward_fn(config: Any, score_kwargs: dict[str, Any] | None = None) -> CustomRewardFunction | None:
    """The function named by ``config.custom_reward_function`` (``path``, ``name``, ``reward_kwargs``), or
    ``None`` when no path is set. ``score_kwargs`` are bound too (the reward loop's ``reward_router_address`` and
    ``reward_model_tokenizer``)."""
    cfg = CustomRewardFunctionConfig.from_any(_section(config, "custom_reward_function"), "custom_reward_function")
    if not cfg.path:
        return None
    return CustomRewardFunction(cfg.path, cfg.name, {**cfg.reward_kwargs, **(score_kwargs or {})})


def load_reward_manager(config: Any, tokenizer: Any, num_examine: int = 0,
                        score_kwargs: dict[str, Any] | None = None, **reward_kwargs: Any) -> Any:
    """The reward manager chosen by ``config.reward_model.reward_manager``, scoring with the custom function
    (``custom_reward_function``) or ``default_compute_score``.

    Constructor arguments come from ``config.reward_model.reward_kwargs`` updated by ``reward_kwargs``; the
    data-source column is ``config.data.reward_fn_key``; the ``dapo`` manager also gets
    ``max_resp_len=config.data.max_response_length`` and ``overlong_buffer_cfg=config.reward_model.overlong_buffer``.
    ``score_kwargs`` are bound to the custom score function (see :func:`get_custom_reward_fn`).
    """
    rm_section = to_plain_dict(_section(config, "reward_model"))
    known = {"reward_manager", "reward_kwargs", "overlong_buffer"}
    rm_cfg = RewardManagerConfig.from_any({k: v for k, v in rm_section.items() if k in known}, "reward_model")
    data_section = to_plain_dict(_section(config, "data"))
    cls = get_reward_manager_cls(rm_cfg.reward_manager)
    kwargs = {**rm_cfg.reward_kwargs, **reward_kwargs}
    if rm_cfg.reward_manager == "dapo":
        kwargs.setdefault("max_resp_len", data_section.get("max_response_length"))
        kwargs.setdefault("overlong_buffer_cfg", rm_cfg.overlong_buffer)
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(k for k in kwargs if k not in params)
    if unknown and not takes_any:
        accepted = sorted(k for k in params if k not in ("self", "tokenizer", "compute_score"))
        raise TypeError(
            f"reward manager {rm_cfg.reward_manager!r} does not take {unknown} (from reward_model.reward_kwargs); "
            f"it accepts {accepted}"
        )
    return cls(
        tokenizer=tokenizer,
        num_examine=num_examine,
        compute_score=get_custom_reward_fn(config, score_kwargs),
        reward_fn_key=data_section.get("reward_fn_key") or "data_source",
        **kwargs,
    )


def compute_reward(data: DataProto, reward_fn: Any) -> tuple[torch.Tensor, dict[str, list[Any]]]:
    """``(token_level_scores [B, R], reward_extra_info)`` from a reward manager (or any callable following
    its contract; one that does not support ``return_dict`` gives an empty extra info)."""
    try:
        out = reward_fn(data, return_dict=True)
    except TypeError:
        return reward_fn(data), {}
    if isinstance(out, dict):
        return out["reward_tensor"], out.get("reward_extra_info", {})
    return out, {}
