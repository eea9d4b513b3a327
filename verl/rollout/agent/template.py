"""Token ids of the messages the loop inserts (tool responses, user turns), from the chat template's text.

The trajectory is never re-tokenised: the model's tokens are kept as it sampled them, and an inserted message adds
the tokens of exactly the text the chat template would put after the model's turn-end token, e.g. for ChatML::

    ...model tokens...<|im_end|>   +   "\n<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n<|im_start|>assistant\n"

That text is found by rendering a fixed conversation that ends in an assistant turn, followed by the new messages
and the generation prompt, and cutting after the assistant turn's end token; so the newline the template writes
after ``<|im_end|>`` is not lost, and templates that render tool messages inside a user turn (Qwen) are honoured.

:meth:`TemplateTokens.check` compares a finished trajectory with a tokenisation of the whole conversation
rendered at once (verl's ``tokenization_sanity_check_mode``) and describes the first difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["TemplateTokens"]

_MARK = "\u2063assistant-turn\u2063"  # content that no template rewrites and no tokenizer merges across


class TemplateTokens:
    """Chat-template tokens for one rollout call.

    Args:
        tokenizer: a transformers tokenizer with a chat template.
        tools: OpenAI tool schemas listed in the prompt (``None``: no tools).
        stop_ids: the ids that end a model turn (the engine's EOS ids).
        template_kwargs: extra ``apply_chat_template`` arguments (e.g. ``enable_thinking``).
    """

    def __init__(self, tokenizer: Any, tools: list[dict] | None, stop_ids: Sequence[int],
                 template_kwargs: Mapping[str, Any] | None = None):  # fmt: skip
        self.tokenizer = tokenizer
        self.tools = tools or None
        self.kwargs = dict(template_kwargs or {})
        self.stop_texts = [t for t in tokenizer.convert_ids_to_tokens(list(stop_ids)) if t]
        if not self.stop_texts:
            raise ValueError("multi-turn rollouts need the EOS token(s) that end a model turn; none are known")

    def render(self, messages: list[dict[str, Any]], generation_prompt: bool, tools: list[dict] | None = None) -> str:
        return self.tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=generation_prompt,
                                                  tokenize=False, **self.kwargs)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """The first prompt: the messages with the tools listed and the generation prompt."""
        return self.encode(self.render(messages, True, self.tools))

    def insert_text(self, new_messages: list[dict[str, Any]]) -> str:
        """The template's text after a model turn's end token, up to the next generation prompt."""
        base = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                {"role": "assistant", "content": _MARK}]
        text = self.render(base + list(new_messages), True)
        start = text.find(_MARK)
        if start < 0:
            raise ValueError("the chat template dropped an assistant message's content; cannot locate the turn end")
        ends = [(text.find(s, start), s) for s in self.stop_texts]
        ends = [(i, s) for i, s in ends if i >= 0]
        if not ends:
            raise ValueError(f"the chat template does not end an assistant turn with an EOS token {self.stop_texts}; "
                             "the model could not stop where the template expects; check the tokenizer's EOS")
        at, stop = min(ends)
        return text[at + len(stop):]

    def insert_ids(self, new_messages: list[dict[str, Any]]) -> list[int]:
        return self.encode(self.insert_text(new_messages))

    def check(self, ids: Sequence[int], mask: Sequence[int], n_prompt: int, messages: list[dict[str, Any]],
              mode: str) -> str | None:  # fmt: skip
        """``None`` when ``ids`` is a prefix of the whole conversation tokenised at once, else the first difference.

        ``mode`` ``strict`` compares token for token; ``ignore_strippable`` drops whitespace-only tokens first.
        ``mask`` (1 on model tokens, over the response part) says who wrote the differing token.
        """
        full = self.encode(self.render(messages, False, self.tools))
        ours = list(ids)
        where = list(range(len(ours)))
        if mode == "ignore_strippable":
            keep = [i for i, t in enumerate(ours) if self.tokenizer.decode([t]).strip()]
            where, ours = keep, [ours[i] for i in keep]
            full = [t for t in full if self.tokenizer.decode([t]).strip()]
        for k, token in enumerate(ours):
            if k >= len(full) or full[k] != token:
                pos = where[k]
                who = "prompt" if pos < n_prompt else ("model" if mask[pos - n_prompt] else "inserted message")
                got = self.tokenizer.decode(ours[max(0, k - 3): k + 4])
                want = self.tokenizer.decode(full[max(0, k - 3): k + 4]) if k < len(full) else "<end>"
                return f"token {pos} ({who}): built {got!r}, full re-tokenisation {want!r}"
        return None
