"""A generative-reward-model score function written as verl documents one (docs/advance/reward_loop.rst): it
posts a chat-completion request to ``reward_router_address`` and parses a score from the judge's answer.

With a tiny random model the answer is noise; the score is its length modulo 7 (a number the test recomputes
from the same model's greedy output). Each call is also logged (process id, answer) to ``log_path`` when given.
"""

import json
import os

import aiohttp
from openai.types.chat import ChatCompletion

PROMPT = "Problem: {problem}\nSolution: {solution}\nScore the solution from 1 to 10."


async def chat_complete(router_address: str, chat_complete_request: dict) -> ChatCompletion:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://{router_address}/v1/chat/completions", json=chat_complete_request) as resp:
            resp.raise_for_status()
            return ChatCompletion(**json.loads(await resp.text()))


def judge_messages(extra_info: dict, solution_str: str) -> list[dict]:
    return [{"role": "user", "content": PROMPT.format(problem=extra_info.get("question", ""), solution=solution_str)}]


async def compute_score(data_source, solution_str, ground_truth, extra_info, reward_router_address,
                        reward_model_tokenizer, log_path=None):
    request = {"messages": judge_messages(extra_info, solution_str), "temperature": 0, "max_tokens": 6}
    result = await chat_complete(reward_router_address, request)
    answer = result.choices[0].message.content
    if log_path:
        with open(log_path, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "answer": answer,
                                "rm_vocab": len(reward_model_tokenizer)}) + "\n")
    return {"score": float(len(answer) % 7), "judge_chars": len(answer)}


def score_by_pid(data_source, solution_str, ground_truth, extra_info=None):
    """A rule reward that says which process computed it."""
    if ground_truth == "boom":
        raise ValueError("bad sample")
    return {"score": float(solution_str == ground_truth), "pid": os.getpid()}
