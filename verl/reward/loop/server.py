"""A generative reward model served by a rollout engine behind an OpenAI-compatible HTTP endpoint.

verl's generative reward functions receive ``reward_router_address`` and post chat-completion requests to
``http://{address}/v1/chat/completions``. Here one engine (``reward_model.rollout.name``: ``native``, ``vllm`` or
``hf``) runs the reward model in the driver process; an HTTP server on the loopback interface (a thread) takes
requests from the reward function (in this process or in reward-loop worker processes), and one engine thread
generates for all requests waiting at that moment in a single batch (per distinct sampling settings).

Endpoints: ``POST /v1/chat/completions`` (``messages`` through the reward model's chat template),
``POST /v1/completions`` (``prompt`` as text or token ids), ``GET /v1/models``, ``GET /health``. Request fields:
``temperature`` (0 = greedy; default 1.0 as OpenAI's), ``top_p``, ``top_k``, ``max_tokens`` /
``max_completion_tokens`` (default and cap: ``reward_model.rollout.response_length``), ``seed``, and
``chat_template_kwargs``; ``n`` must be 1.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

from verl.protocol import DataProto

__all__ = ["GenerativeRewardServer"]


@dataclass(frozen=True)
class _Sampling:
    temperature: float
    top_p: float
    top_k: int
    max_tokens: int
    seed: int | None


class RequestError(ValueError):
    """A bad request (HTTP 400), with the reason."""


class GenerativeRewardServer:
    """Serve ``engine`` (a :class:`~verl.rollout.base.BaseRollout`) for ``tokenizer``'s model on ``127.0.0.1``.

    Args:
        engine: the rollout engine running the reward model.
        tokenizer: the reward model's tokenizer (chat template, EOS, decoding).
        model_name: what ``/v1/models`` and the responses name the model.
        prompt_length / response_length: the longest prompt and the most generated tokens of a request.
        max_batch: the most requests generated together.
        free_cache: put the engine to sleep (KV cache freed) after each scoring round (:meth:`round`).
    """

    def __init__(self, engine: Any, tokenizer: Any, model_name: str, prompt_length: int, response_length: int,
                 max_batch: int = 1024, free_cache: bool = True):
        self.engine, self.tokenizer, self.model_name = engine, tokenizer, model_name
        self.prompt_length, self.response_length = prompt_length, response_length
        self.max_batch, self.free_cache = max_batch, free_cache
        self.num_requests = 0
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()  # the engine: generation and sleep/wake
        self._asleep = False
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._threads = [threading.Thread(target=self._httpd.serve_forever, name="genrm-http", daemon=True),
                         threading.Thread(target=self._engine_loop, name="genrm-engine", daemon=True)]
        for t in self._threads:
            t.start()

    @property
    def address(self) -> str:
        """``host:port`` (verl's ``reward_router_address``)."""
        host, port = self._httpd.server_address[:2]
        return f"{host}:{port}"

    # ------------------------------------------------------------------ requests

    def complete(self, prompt_ids: list[int], sampling: _Sampling) -> tuple[list[int], str]:
        """Generate for one prompt (blocking): ``(token ids, finish_reason)``."""
        if not prompt_ids:
            raise RequestError("the prompt is empty")
        if len(prompt_ids) > self.prompt_length:
            raise RequestError(f"the prompt has {len(prompt_ids)} tokens, more than reward_model.rollout.prompt_length="
                               f"{self.prompt_length}")
        future: Future = Future()
        self._queue.put((list(prompt_ids), sampling, future))
        return future.result()

    def sampling(self, body: dict[str, Any]) -> _Sampling:
        if int(body.get("n", 1)) != 1:
            raise RequestError("n must be 1 (send one request per sample)")
        temperature = float(body.get("temperature", 1.0))
        top_p, top_k = float(body.get("top_p", 1.0)), int(body.get("top_k", -1))
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens")) or self.response_length
        if temperature < 0 or not 0 < top_p <= 1 or top_k == 0 or top_k < -1 or int(max_tokens) < 1:
            raise RequestError(f"bad sampling settings: temperature={temperature}, top_p={top_p}, top_k={top_k}, "
                               f"max_tokens={max_tokens}")
        seed = body.get("seed")
        return _Sampling(temperature, top_p, top_k, min(int(max_tokens), self.response_length),
                         None if seed is None else int(seed))

    def _engine_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            pending = [first]
            time.sleep(0.005)  # let the other requests of this round arrive
            while len(pending) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                pending.append(item)
            groups: dict[_Sampling, list] = {}
            for item in pending:
                groups.setdefault(item[1], []).append(item)
            for sampling, items in groups.items():
                try:
                    results = self._generate([i[0] for i in items], sampling)
                except BaseException as exc:  # every waiting request gets the error
                    for _, _, fut in items:
                        fut.set_exception(exc)
                    continue
                for (_, _, fut), res in zip(items, results, strict=True):
                    fut.set_result(res)

    def _generate(self, prompts: list[list[int]], sampling: _Sampling) -> list[tuple[list[int], str]]:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])  # (B, P) left-padded
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        greedy = sampling.temperature == 0
        meta = {"do_sample": not greedy, "temperature": 1.0 if greedy else sampling.temperature,
                "top_p": sampling.top_p, "top_k": sampling.top_k, "response_length": sampling.max_tokens,
                "seed": sampling.seed}
        with self._lock:
            if self._asleep:
                self.engine.wake_up()
                self._asleep = False
            out = self.engine.generate_sequences(DataProto.from_dict({"input_ids": ids, "attention_mask": mask},
                                                                     meta_info=meta))
            self.num_requests += len(prompts)
        eos = self.tokenizer.eos_token_id
        results = []
        for row, n in zip(out.batch["responses"], out.batch["response_mask"].sum(-1).tolist(), strict=True):
            tokens = row[: int(n)].tolist()
            results.append((tokens, "stop" if tokens and tokens[-1] == eos else "length"))
        return results

    # ------------------------------------------------------------------ rounds and shutdown

    def end_round(self) -> None:
        """After a scoring round: free the engine's cache (``reward_model.rollout.free_cache_engine``)."""
        if self.free_cache:
            with self._lock:
                if not self._asleep:
                    self.engine.sleep()
                    self._asleep = True

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._queue.put(None)
        for t in self._threads:
            t.join(timeout=10)


def _handler(server: GenerativeRewardServer) -> type[BaseHTTPRequestHandler]:
    tok = server.tokenizer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # no access log on stderr
            pass

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._reply(200, {"status": "ok"})
            elif self.path == "/v1/models":
                self._reply(200, {"object": "list", "data": [{"id": server.model_name, "object": "model",
                                                               "owned_by": "verl"}]})
            else:
                self._reply(404, {"error": {"message": f"no such endpoint {self.path}"}})

        def do_POST(self) -> None:
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path == "/v1/chat/completions":
                    self._reply(200, self._chat(body))
                elif self.path == "/v1/completions":
                    self._reply(200, self._completion(body))
                else:
                    self._reply(404, {"error": {"message": f"no such endpoint {self.path}"}})
            except (RequestError, json.JSONDecodeError, KeyError, TypeError) as exc:
                self._reply(400, {"error": {"message": str(exc), "type": "invalid_request_error"}})
            except Exception as exc:  # the engine failed
                self._reply(500, {"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error"}})

        def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
            messages = body["messages"]
            if not isinstance(messages, list) or not messages:
                raise RequestError("messages must be a non-empty list")
            ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                          **(body.get("chat_template_kwargs") or {}))
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # transformers 5 returns a BatchEncoding
                ids = ids["input_ids"]
            tokens, finish = server.complete(list(ids), server.sampling(body))
            text = tok.decode(tokens, skip_special_tokens=True)
            return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                    "model": server.model_name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": finish, "logprobs": None}],
                    "usage": _usage(len(ids), len(tokens))}

        def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
            prompt = body["prompt"]
            ids = list(prompt) if isinstance(prompt, list) else tok(prompt, add_special_tokens=False)["input_ids"]
            tokens, finish = server.complete(ids, server.sampling(body))
            return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                    "model": server.model_name,
                    "choices": [{"index": 0, "text": tok.decode(tokens, skip_special_tokens=True),
                                 "finish_reason": finish, "logprobs": None}],
                    "usage": _usage(len(ids), len(tokens))}

    return Handler


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
