"""verl's ``verl.utils.hf_tokenizer``. Thin wrapper: the implementation is
:func:`verl.workers.fsdp_workers.load_tokenizer` (imported when called, so this module stays light)."""

from __future__ import annotations

from typing import Any

__all__ = ["hf_tokenizer"]


def hf_tokenizer(name_or_path: str, correct_pad_token: bool = True, **kwargs: Any) -> Any:
    """A transformers tokenizer for ``name_or_path`` whose pad token is set (to EOS when it had none).

    ``trust_remote_code`` and ``chat_template`` are honoured; verl's other loading options are not.
    """
    from verl.workers.fsdp_workers import load_tokenizer

    return load_tokenizer(name_or_path, trust_remote_code=bool(kwargs.get("trust_remote_code", False)),
                          chat_template=kwargs.get("chat_template"))  # fmt: skip
