"""A scripted policy for agent-loop tests: an engine that answers each conversation with fixed turns."""

import torch

from verl.protocol import DataProto, to_object_array
from verl.rollout.base import BaseRollout, Generated
from verl.rollout.config import MultiTurnConfig, RolloutConfig


class ScriptedEngine(BaseRollout):
    """Honours the engine contract; row i's output is ``script[key][turn]`` (+ EOS), where ``key`` is the text of
    the conversation's first user message and ``turn`` the number of assistant turns already in the prefix.

    A script entry may be a list of token ids (emitted as is) or a string (tokenised). Records each call's rows.
    """

    def __init__(self, tokenizer, script, config=None, eos_after=True):
        self.tokenizer, self.script, self.eos_after = tokenizer, script, eos_after
        self.config = config or RolloutConfig(name="hf", dtype="float32", do_sample=False, prompt_length=256,
                                              response_length=128, calculate_log_probs=True)
        self.default_eos, self.default_pad = (tokenizer.eos_token_id,), tokenizer.pad_token_id
        self.calls = []
        self.progress = {}

    def _key_and_turn(self, ids):
        text = self.tokenizer.decode(ids)
        key = next(k for k in self.script if k in text)
        turn = text.count("<|im_start|>assistant") - 1
        return key, turn, text

    def _generate(self, prompts, request):
        rows, lps = [], []
        info = []
        for i in range(prompts.input_ids.shape[0]):
            ids = prompts.input_ids[i, -int(prompts.lengths[i]):].tolist()
            key, turn, text = self._key_and_turn(ids)
            entry = self.script[key][turn]
            out = list(entry) if isinstance(entry, list) else self.tokenizer(entry, add_special_tokens=False)["input_ids"]
            if self.eos_after:
                out = out + [self.tokenizer.eos_token_id]
            # a turn cut by a call's length goes on where it stopped
            done = self.progress.get((key, turn), 0)
            out = out[done:][: request.response_length]
            self.progress[(key, turn)] = done + len(out)
            rows.append(out)
            lps.append([-0.5 - 0.01 * j for j in range(len(out))])
            info.append((key, turn))
        self.calls.append(info)
        r = request.response_length
        responses = torch.full((len(rows), r), request.pad_token_id, dtype=torch.long)
        log_probs = torch.zeros((len(rows), r))
        for i, (row, lp) in enumerate(zip(rows, lps)):
            responses[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            log_probs[i, : len(row)] = torch.tensor(lp)
        return Generated(responses, torch.tensor([len(x) for x in rows]), log_probs)

    def update_weights(self, named_tensors):
        pass

    def sleep(self, level=1):
        pass

    def wake_up(self):
        pass


def make_batch(tokenizer, questions, agent_name="tool_agent", tools_kwargs=None, interaction_kwargs=None,
               prompt_width=512, meta=None):
    """A batch as RLHFDataset + the trainer hand it to the worker (left-padded ids, raw chat, columns)."""
    messages = [[{"role": "user", "content": q}] for q in questions]
    ids = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=True, return_dict=False) for m in messages]
    b = len(questions)
    input_ids = torch.full((b, prompt_width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((b, prompt_width), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, prompt_width - len(row):] = torch.tensor(row)
        mask[i, prompt_width - len(row):] = 1
    data = DataProto.from_dict({"input_ids": input_ids, "attention_mask": mask,
                                "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)},
                               meta_info=dict(meta or {}))
    names = agent_name if isinstance(agent_name, list) else [agent_name] * b
    data.non_tensor_batch = {
        "raw_prompt": to_object_array(messages),
        "agent_name": to_object_array(names),
        "tools_kwargs": to_object_array([(tools_kwargs or {}) for _ in range(b)]),
        "interaction_kwargs": to_object_array([(interaction_kwargs or {}) for _ in range(b)]),
    }
    return data


def rollout_config(**multi_turn):
    return RolloutConfig(name="hf", dtype="float32", do_sample=False, prompt_length=512, response_length=256,
                         calculate_log_probs=True, multi_turn=MultiTurnConfig(enable=True, **multi_turn))


def build_tool_calling_model(path, tokenizer, call_text, logit=9.0, seed=0):
    """A tiny Qwen2 model that, sampled at temperature 1, often writes ``call_text`` + EOS after every generation
    prompt: a bigram model (attention and MLP outputs zeroed, so the last hidden state is the current token's
    normalised embedding) whose untied output layer gives each token of the chain its successor with logit
    ``logit`` (about 0.9 probability per token at 9 with a 1,000-token vocabulary); other tokens stay random.

    The chain starts at the generation prompt's last token; its tokens must be distinct."""
    import transformers

    from verl.utils.tiny_model import build_tiny_model

    start = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True,
                                          tokenize=True, return_dict=False)[-1]
    chain = [start, *tokenizer(call_text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    if len(set(chain)) != len(chain):
        raise ValueError(f"the chain's tokens repeat: {tokenizer.convert_ids_to_tokens(chain)}")
    build_tiny_model(path, tokenizer, arch="qwen2", num_layers=2, tie_word_embeddings=False, seed=seed)
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        d = emb.shape[1]
        for cur, nxt in zip(chain, chain[1:]):
            h = emb[cur] / emb[cur].pow(2).mean().sqrt()  # the final RMSNorm's output (weight 1)
            head[nxt] += logit * h / d
    model.save_pretrained(path)
    return str(path)
