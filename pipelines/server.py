"""A small OpenAI-compatible server over an in-process model, and a helper that starts
one on a free local port (for tests and demos).

    python -m pipelines.server --model smollm2 --port 8000
    align generate ultrafeedback data/ranked.jsonl -o out.jsonl \\
        --base-url http://127.0.0.1:8000/v1 --model smollm2

Why our own server and not ``transformers serve``: with the pinned packages its CLI
does not start (``transformers`` 5.17's CLI needs a newer ``typer`` than the one
installed); called from Python it serves a local folder, but it ignores ``n``,
``logprobs`` and ``top_logprobs`` (it logs "Ignoring unsupported fields"), and
``/v1/models`` fails offline when no Hugging Face cache folder exists. This one speaks
the part of the API our pipelines use — ``/v1/models``, ``/v1/chat/completions`` with
``n``, ``max_tokens``, ``temperature``, ``top_p``, ``seed``, ``stop``, ``logprobs`` and
``top_logprobs``, and ``/v1/completions`` (raw text, no chat template: Magpie's bare
user-turn prefix) with the same settings but logprobs, plus vLLM's
``add_special_tokens`` — and batches concurrent requests into one ``generate`` call through
``BatchedTransformersLLM``. Each choice's ``finish_reason`` is the decoder's
(``alignment.engine``): ``length`` when the token limit cut the answer off, ``stop`` when
it ended, even on its last allowed token. For real throughput use vLLM (``vllm serve
MODEL``) and point ``--base-url`` at it; nothing in the pipelines depends on which server
answers.
"""

# no `from __future__ import annotations`: FastAPI resolves the endpoint signatures
# (`request: Request`) at run time, and `Request` is imported inside `build_app`.
import argparse
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any


# ------------------------------------------------------------------ the model worker

class Batcher:
    """Runs requests on one model in a worker thread, batching the ones that arrive
    together with the same generation settings into one ``generate`` call."""

    def __init__(self, llm: Any, batch_size: int = 8, wait_s: float = 0.02):
        self.llm, self.batch_size, self.wait_s = llm, batch_size, wait_s
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="model-worker")
        self.thread.start()

    def submit(self, messages: list[dict], params: dict) -> Future:
        fut: Future = Future()
        self.queue.put((messages, params, fut))
        return fut

    def _loop(self) -> None:
        held: list = []
        while True:
            first = held.pop(0) if held else self.queue.get()
            batch = [first]
            deadline = time.monotonic() + self.wait_s
            key = _batch_key(first[1])
            while len(batch) < self.batch_size and key is not None:
                left = deadline - time.monotonic()
                try:
                    item = self.queue.get(timeout=max(left, 0)) if left > 0 \
                        else self.queue.get_nowait()
                except queue.Empty:
                    break
                (batch if _batch_key(item[1]) == key else held).append(item)
            try:
                results = self._run(batch)
            except Exception as e:  # a bad request must not stop the worker
                for *_, fut in batch:
                    fut.set_exception(e)
                continue
            for (*_, fut), res in zip(batch, results):
                fut.set_result(res)

    def _run(self, batch: list) -> list[dict]:
        params = batch[0][1]
        encoded = [_encode(self.llm, prompt, p) for prompt, p, _ in batch]
        if params["logprobs"]:
            return [_with_logprobs(self.llm, ids, params) for ids in encoded]
        gen: dict[str, Any] = {"max_new_tokens": params["max_tokens"],
                               "do_sample": params["temperature"] > 0}
        if gen["do_sample"]:
            gen.update(temperature=params["temperature"], top_p=params["top_p"], top_k=0)
        gens = self.llm.generations(encoded, params["n"], seed=params["seed"], **gen)
        return [{"texts": [g.text for g in row], "counts": [g.tokens for g in row],
                 "finish_reasons": [g.finish_reason for g in row], "prompt_tokens": len(ids),
                 "logprobs": None} for row, ids in zip(gens, encoded)]


def _encode(llm: Any, prompt: list[dict] | str, params: dict) -> list[int]:
    """A chat request's messages through the chat template; a completion request's raw
    text as it is, with the tokenizer's special tokens (BOS) only when asked for."""
    if isinstance(prompt, str):
        return llm.tokenizer(prompt, add_special_tokens=params["add_special_tokens"]).input_ids
    return llm.prepare_input(prompt)


def _batch_key(params: dict) -> tuple | None:
    # logprob requests run one by one; the rest batch when their settings match
    if params["logprobs"]:
        return None
    return (params["n"], params["max_tokens"], params["temperature"], params["top_p"],
            params["seed"])


def _with_logprobs(llm: Any, ids: list[int], params: dict) -> dict:
    """Generate for one prompt and keep each token's log-probability and the top
    alternatives (from the raw logits, before temperature)."""
    import torch

    model, tok = llm._model, llm.tokenizer
    if params["seed"] is not None:
        torch.manual_seed(params["seed"])
    sample = params["temperature"] > 0
    gen: dict[str, Any] = {"max_new_tokens": params["max_tokens"], "do_sample": sample,
                           "num_return_sequences": params["n"] if sample else 1}
    if sample:
        gen.update(temperature=params["temperature"], top_p=params["top_p"], top_k=0)
    inp = torch.tensor([ids])
    with torch.inference_mode():
        out = model.generate(input_ids=inp, attention_mask=torch.ones_like(inp),
                             output_logits=True, return_dict_in_generate=True,
                             pad_token_id=tok.pad_token_id, **gen)
    eos = {tok.eos_token_id, *([model.generation_config.eos_token_id]
                               if isinstance(model.generation_config.eos_token_id, int)
                               else model.generation_config.eos_token_id or [])}
    texts, counts, reasons, logprobs = [], [], [], []
    k = params["top_logprobs"] or 0
    for seq in range(out.sequences.shape[0]):
        new = out.sequences[seq, len(ids):].tolist()
        end = next((i + 1 for i, t in enumerate(new) if t in eos), None)
        n = len(new) if end is None else end
        reasons.append("length" if end is None else "stop")
        content = []
        for step in range(n):
            lp = torch.log_softmax(out.logits[step][seq].float(), dim=-1)
            top = torch.topk(lp, k) if k else None
            content.append({
                "token": tok.decode([new[step]]), "logprob": float(lp[new[step]]),
                "bytes": None,
                "top_logprobs": [] if top is None else [
                    {"token": tok.decode([t]), "logprob": float(v), "bytes": None}
                    for v, t in zip(top.values.tolist(), top.indices.tolist())]})
        texts.append(tok.decode(new[:n], skip_special_tokens=True))
        counts.append(n)
        logprobs.append({"content": content})
    reps = params["n"] if not sample else 1
    return {"texts": texts * reps, "counts": counts * reps, "finish_reasons": reasons * reps,
            "prompt_tokens": len(ids), "logprobs": logprobs * reps}


# ------------------------------------------------------------------ the HTTP app

def build_app(llm: Any, served_name: str, batch_size: int = 8):
    from fastapi import FastAPI, HTTPException, Request

    app = FastAPI(title="align model server")
    batcher = Batcher(llm, batch_size=batch_size)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": served_name, "object": "model",
                                            "created": 0, "owned_by": "align"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict:
        import asyncio

        body = await request.json()
        _check_model(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise HTTPException(400, "messages: expected a non-empty list of "
                                     "{role, content} objects")
        params = {**_sampling(body), "logprobs": bool(body.get("logprobs")),
                  "top_logprobs": int(body.get("top_logprobs") or 0)}
        result = await asyncio.wrap_future(batcher.submit(messages, params))
        choices = []
        for i, (text, finish) in enumerate(_stopped(result, body.get("stop"))):
            choice = {"index": i, "message": {"role": "assistant", "content": text},
                      "finish_reason": finish, "logprobs": None}
            if result["logprobs"] is not None:
                choice["logprobs"] = result["logprobs"][i]
            choices.append(choice)
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
                "created": int(time.time()), "model": served_name, "choices": choices,
                "usage": _usage(result)}

    @app.post("/v1/completions")
    async def completions(request: Request) -> dict:
        """Raw text in, its continuation out: no chat template is applied, so a client can
        send a prompt that ends anywhere, such as a bare user-turn prefix (Magpie)."""
        import asyncio

        body = await request.json()
        _check_model(body)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise HTTPException(400, "prompt: expected one non-empty string (lists of "
                                     "prompts and token ids are not supported here)")
        for field in ("echo", "suffix", "logprobs"):
            if body.get(field) not in (None, False, ""):
                raise HTTPException(400, f"{field} is not supported by this server's "
                                         "/v1/completions")
        params = {**_sampling(body), "logprobs": False, "top_logprobs": 0,
                  "add_special_tokens": bool(body.get("add_special_tokens", True))}
        result = await asyncio.wrap_future(batcher.submit(prompt, params))
        choices = [{"index": i, "text": text, "finish_reason": finish, "logprobs": None}
                   for i, (text, finish) in enumerate(_stopped(result, body.get("stop")))]
        return {"id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "text_completion",
                "created": int(time.time()), "model": served_name, "choices": choices,
                "usage": _usage(result)}

    def _check_model(body: dict) -> None:
        if body.get("model") not in (served_name, None):
            raise HTTPException(404, f"model {body.get('model')!r} is not served here; "
                                     f"this server serves {served_name!r}")
        if body.get("stream"):
            raise HTTPException(400, "stream=true is not supported by this server")

    return app


def _sampling(body: dict) -> dict:
    """The generation settings of a request, OpenAI's defaults where it says nothing."""
    return {"n": int(body.get("n") or 1),
            "max_tokens": int(body.get("max_completion_tokens") or body.get("max_tokens")
                              or 256),
            "temperature": float(1.0 if body.get("temperature") is None
                                 else body["temperature"]),
            "top_p": float(body.get("top_p") or 1.0),
            "seed": body.get("seed")}


def _stopped(result: dict, stop: str | list | None) -> list[tuple[str, str]]:
    """Each generated text cut at the first stop string, with how it ended."""
    stops = [stop] if isinstance(stop, str) else (stop or [])
    out = []
    for text, finish in zip(result["texts"], result["finish_reasons"]):
        # how the decoder says it ended: an answer whose end token is its last allowed
        # one stopped, although it used all max_tokens
        for s in stops:
            if s and s in text:
                text, finish = text[:text.index(s)], "stop"
        out.append((text, finish))
    return out


def _usage(result: dict) -> dict:
    completion = sum(result["counts"])
    return {"prompt_tokens": result["prompt_tokens"], "completion_tokens": completion,
            "total_tokens": result["prompt_tokens"] + completion}


def serve(model: str, host: str = "127.0.0.1", port: int = 8000,
          served_name: str | None = None, batch_size: int = 8) -> None:
    import uvicorn

    from pipelines.llms import BatchedTransformersLLM

    llm = BatchedTransformersLLM(model=model, batch_size=batch_size)
    llm.load()
    app = build_app(llm, served_name or model, batch_size=batch_size)
    uvicorn.run(app, host=host, port=port, log_level="warning")


# ------------------------------------------------------------------ starting one locally

def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalServer:
    """``python -m pipelines.server`` in a child process on a free port.

    Use as a context manager; ``base_url`` is ready to pass as ``--base-url`` once the
    server answers ``/health``. The child's output goes to ``log``, shown in the error
    if the server never comes up.

    Examples:
        ```python
        with LocalServer("smollm2") as server:
            run(["in.jsonl", "-o", "out.jsonl", "--base-url", server.base_url,
                 "--model", server.served_name])
        ```
    """

    def __init__(self, model: str = "smollm2", served_name: str | None = None,
                 host: str = "127.0.0.1", port: int | None = None, batch_size: int = 8,
                 startup_timeout: float = 180.0, log: str | Path | None = None):
        self.model, self.served_name = str(model), served_name or str(model)
        self.host, self.port = host, port or free_port(host)
        self.batch_size, self.startup_timeout = batch_size, startup_timeout
        self.log = Path(log) if log else Path(os.environ.get("TMPDIR", "/tmp")) / \
            f"align-server-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> "LocalServer":
        import httpx

        from alignment.models import resolve_model

        root = str(Path(__file__).resolve().parent.parent)
        # resolved here: the child may see another ALIGN_HOME (tests isolate theirs)
        model = resolve_model(self.model)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        cmd = [sys.executable, "-m", "pipelines.server", "--model", model,
               "--served-name", self.served_name, "--host", self.host,
               "--port", str(self.port), "--batch-size", str(self.batch_size)]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                            env=env, cwd=root)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the model server exited with {self.process.returncode} "
                                   f"before it was ready; its log ({self.log}):\n"
                                   f"{self._log_tail()}")
            try:
                if httpx.get(f"http://{self.host}:{self.port}/health", timeout=2).is_success:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the model server did not answer /health within "
                           f"{self.startup_timeout:.0f} s; its log ({self.log}):\n"
                           f"{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pipelines.server", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2",
                    help="bundled name, model folder or hub id (default: %(default)s)")
    ap.add_argument("--served-name", default=None,
                    help="the model name clients ask for (default: --model)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--batch-size", type=int, default=8,
                    help="concurrent requests batched into one generate call")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    serve(args.model, args.host, args.port, args.served_name, args.batch_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
