"""Tiny tokenizers and random-weight causal LMs, built offline, for tests and quickstarts.

No weights or tokenizers can be downloaded here, so everything that needs "a model" builds one:

- :func:`build_tiny_tokenizer` trains a byte-level BPE tokenizer (the ``tokenizers`` library) on a small
  built-in English + arithmetic corpus, with Qwen2's pre-tokenizer regex, ChatML special tokens and a
  Qwen2-style chat template, wrapped as a ``transformers.PreTrainedTokenizerFast``.
- :func:`build_tiny_model` saves a random-weight ``qwen2`` / ``llama`` / ``qwen3`` / ``mistral`` causal LM
  plus that tokenizer with ``save_pretrained``, so the real ``from_pretrained`` loading paths are exercised.

``transformers`` and ``tokenizers`` are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "CHAT_TEMPLATE",
    "QWEN2_PRETOKENIZE_REGEX",
    "SPECIAL_TOKENS",
    "build_tiny_model",
    "build_tiny_tokenizer",
    "chat_prompt_ids",
    "tiny_corpus",
]

# The same split regex as Qwen2's tokenizer: a tokenizer saved next to a Qwen2 config and reloaded with
# Qwen2's own pre-tokenizer then still produces identical ids.
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
"""Special tokens, in id order 0, 1, 2: pad (``<|endoftext|>``), and the ChatML turn markers (eos = ``<|im_end|>``)."""

_TOOL_TOKENS = ("<tool_call>", "</tool_call>")  # plain added tokens (not special), as in Qwen2.5

# ChatML, Qwen2-style: no default system prompt (keeps tiny prompts short); optional tools listed in the
# system turn; assistant tool calls rendered as <tool_call> JSON right after "<|im_start|>assistant\n" when there is
# no content (as Qwen2.5 does: the model writes the call where the generation prompt ends); "tool" messages as
# <tool_response> in a user turn.
CHAT_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}"
    "{{- '# Tools\\n\\nYou may call functions. Signatures inside <tools></tools>:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nReturn each call as <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>.<|im_end|>\\n' }}"
    "{%- elif messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}"
    "{%- if not loop.first %}{{- '<|im_start|>system\\n' + message['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- elif message['role'] == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message['content'] + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- elif message.get('tool_calls') %}"
    "{{- '<|im_start|>' + message['role'] }}"
    "{%- if message['content'] %}{{- '\\n' + message['content'] }}{%- endif %}"
    "{%- for call in message['tool_calls'] %}"
    "{%- set fn = call['function'] if call['function'] is defined else call %}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' + fn['name'] + '\", \"arguments\": ' }}"
    "{{- (fn['arguments'] if fn['arguments'] is string else (fn['arguments'] | tojson)) + '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_ENGLISH = """\
The quick brown fox jumps over the lazy dog. A model learns from rewards and from its own mistakes.
Let's think step by step and output the final answer after "####".
Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.
How many clips did Natalia sell altogether in April and May? She sold 48 / 2 = 24 clips in May.
Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?
Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs.
The answer is the number of apples left in the basket after everyone has eaten.
You are a helpful assistant. Please reason carefully and put your final answer within \\boxed{}.
The value of x is \\frac{1}{2}, so the answer is \\boxed{\\frac{1}{2}} and the area is 3\\sqrt{2}.
If a train travels 60 miles per hour for 3 hours, it travels 180 miles in total.
def solve(a, b):\n    return a + b\nprint(solve(2, 3))
import sys\nfor line in sys.stdin:\n    print(int(line) * 2)
The user asks a question and the assistant answers it. Reinforcement learning from human feedback.
Policy, value, reward, advantage, return, entropy, ratio, clip, loss, gradient, token, sequence.
system user assistant system user assistant tool tool_call tool_response function arguments name
"""


def tiny_corpus(seed: int = 0, n_arithmetic: int = 600) -> list[str]:
    """The built-in training corpus: English sentences plus generated arithmetic (digits, ``####`` answers)."""
    rng = random.Random(seed)
    lines = [line for line in _ENGLISH.splitlines() if line.strip()]
    ops = [("+", lambda a, b: a + b), ("-", lambda a, b: a - b), ("*", lambda a, b: a * b)]
    for _ in range(n_arithmetic):
        a, b = rng.randint(0, 999), rng.randint(0, 99)
        sym, fn = rng.choice(ops)
        lines.append(f"What is {a} {sym} {b}? {a} {sym} {b} = {fn(a, b)}. #### {fn(a, b)}")
    lines.append("0 1 2 3 4 5 6 7 8 9 10 100 1,000 -5 3.14 $18 50% #### 72")
    return lines


def build_tiny_tokenizer(
    save_dir: str | os.PathLike | None = None,
    extra_texts: Iterable[str] = (),
    vocab_size: int = 1024,
    chat_template: str = CHAT_TEMPLATE,
) -> Any:
    """Train a tiny byte-level BPE tokenizer offline and wrap it as a ``PreTrainedTokenizerFast``.

    Args:
        save_dir: when given, the tokenizer is saved there with ``save_pretrained`` (reload it with
            ``AutoTokenizer.from_pretrained(save_dir)``: ids are identical, with or without a Qwen2 config).
        extra_texts: more training text, e.g. the words of a test's prompts, so they get short encodings.
        vocab_size: target vocabulary size (256 byte tokens + merges + 5 added tokens; the corpus may run
            out of merges before reaching it).
        chat_template: Jinja chat template; the default is ChatML in Qwen2's style.

    Returns:
        ``transformers.PreTrainedTokenizerFast`` with pad ``<|endoftext|>``, eos ``<|im_end|>``, no bos,
        left padding (what rollout prompts use).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*tiny_corpus(), *extra_texts], trainer=trainer)

    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        unk_token=None,
        bos_token=None,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    hf_tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    hf_tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in _TOOL_TOKENS])
    hf_tok.chat_template = chat_template
    if save_dir is not None:
        hf_tok.save_pretrained(os.fspath(save_dir))
    return hf_tok


_ARCHS = {
    "qwen2": ("Qwen2Config", {"use_sliding_window": False}),
    "llama": ("LlamaConfig", {}),
    "qwen3": ("Qwen3Config", {"use_sliding_window": False}),
    "mistral": ("MistralConfig", {"sliding_window": None}),
}


def build_tiny_model(
    save_dir: str | os.PathLike,
    tokenizer: Any = None,
    arch: str = "qwen2",
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 2048,
    tie_word_embeddings: bool = True,
    seed: int = 0,
    torch_dtype: str = "float32",
    extra_config: dict[str, Any] | None = None,
) -> str:
    """Save a random-weight causal LM and its tokenizer into ``save_dir``; return the path.

    Args:
        save_dir: output directory (created). Holds ``config.json``, the weights and the tokenizer files.
        tokenizer: the tokenizer to save along; ``None`` builds :func:`build_tiny_tokenizer`.
            The model's vocabulary is ``len(tokenizer)`` and its pad/eos ids are the tokenizer's.
        arch: one of ``qwen2``, ``llama``, ``qwen3``, ``mistral``.
        hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size, max_position_embeddings:
            the shape (``head_dim = hidden_size // num_heads``).
        tie_word_embeddings: share the input embedding with the LM head (as Qwen2.5-0.5B does).
        seed: ``torch.manual_seed`` before the random init, so the same arguments give the same weights.
        torch_dtype: dtype of the saved weights (``"float32"`` or ``"bfloat16"``).
        extra_config: more config fields (e.g. ``{"rope_theta": 1e6}``).
    """
    if arch not in _ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(_ARCHS)}")
    if hidden_size % num_heads or num_heads % num_kv_heads:
        raise ValueError(
            f"hidden_size ({hidden_size}) must divide by num_heads ({num_heads}) and num_heads by "
            f"num_kv_heads ({num_kv_heads})"
        )
    import torch
    import transformers

    if tokenizer is None:
        tokenizer = build_tiny_tokenizer()
    config_name, arch_defaults = _ARCHS[arch]
    fields = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        dtype=torch_dtype,
        **arch_defaults,
    )
    if arch == "qwen3":
        fields["head_dim"] = hidden_size // num_heads
    fields.update(extra_config or {})
    config = getattr(transformers, config_name)(**fields)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=getattr(torch, torch_dtype))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    path = os.fspath(save_dir)
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def chat_prompt_ids(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    """Token ids of ``messages`` rendered with the chat template and the assistant generation prompt."""
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]
