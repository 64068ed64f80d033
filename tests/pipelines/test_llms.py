"""BatchedTransformersLLM: batching must not change what greedy decoding produces."""

from pathlib import Path

import pytest

from alignment.errors import ConfigError
from pipelines.llms import BatchedTransformersLLM, make_llm
from tests.helpers import PROMPTS


@pytest.fixture(autouse=True)
def _float32(monkeypatch):
    # exact-logit fixtures and greedy-equality checks compare to the last digit: run them in
    # float32 on every CPU (bf16 CPUs would otherwise pick bf16 and round the logits)
    monkeypatch.setenv("ALIGN_DTYPE", "float32")


def _chat(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _unbatched_greedy(path: Path, prompt: str, max_new_tokens: int) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    text = tok.apply_chat_template(_chat(prompt), tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=tok.pad_token_id)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    if tok.eos_token_id in new:
        new = new[:new.index(tok.eos_token_id) + 1]
    return tok.decode(new, skip_special_tokens=True)


@pytest.mark.parametrize("early_exit", [True, False])  # pipelines.decoding, or model.generate
def test_batched_greedy_equals_one_prompt_at_a_time(varied_model, early_exit):
    llm = BatchedTransformersLLM(model=str(varied_model), batch_size=4, early_exit=early_exit)
    llm.load()
    out = llm.generate_outputs([_chat(p) for p in PROMPTS], num_generations=2,
                               max_new_tokens=12, do_sample=False)
    expected = [_unbatched_greedy(varied_model, p, 12) for p in PROMPTS]
    assert [o["generations"] for o in out] == [[e, e] for e in expected]
    assert len(set(expected)) == len(expected)  # the comparison is not trivial
    for o, p in zip(out, PROMPTS):
        stats = o["statistics"]
        assert stats["input_tokens"] == [len(llm.prepare_input(_chat(p)))] * 2
        assert all(0 < n <= 12 for n in stats["output_tokens"])


def test_sampling_gives_num_generations_per_prompt_and_is_seeded(varied_model):
    llm = BatchedTransformersLLM(model=str(varied_model), batch_size=2, seed=7)
    llm.load()
    kwargs = dict(num_generations=3, max_new_tokens=8, temperature=1.0)
    first = llm.generate_outputs([_chat(p) for p in PROMPTS[:3]], **kwargs)
    again = llm.generate_outputs([_chat(p) for p in PROMPTS[:3]], **kwargs)
    assert first == again
    assert [len(o["generations"]) for o in first] == [3, 3, 3]
    assert len(set(first[0]["generations"])) > 1


def test_chat_template_bos_is_not_doubled(tiny_bos_model):
    llm = BatchedTransformersLLM(model=str(tiny_bos_model))
    llm.load()
    ids = llm.prepare_input(_chat("hi"))
    bos = llm.tokenizer.bos_token_id
    assert ids[0] == bos and ids.count(bos) == 1


def test_make_llm_local_and_openai(monkeypatch):
    local = make_llm("smollm2", None, max_new_tokens=16, temperature=0.5, seed=3)
    assert isinstance(local, BatchedTransformersLLM) and local.seed == 3
    assert local.generation_kwargs == {"max_new_tokens": 16, "temperature": 0.5}

    monkeypatch.setenv("MY_KEY", "sk-secret-value")
    remote = make_llm("served-model", "http://127.0.0.1:8000/v1", api_key_env="MY_KEY",
                      do_sample=False, seed=5, max_new_tokens=8)
    from distilabel.models.llms import OpenAILLM

    assert isinstance(remote, OpenAILLM)  # distilabel's, keeping each choice's finish_reason
    assert remote.api_key.get_secret_value() == "sk-secret-value"
    assert "sk-secret-value" not in repr(remote)
    assert remote.generation_kwargs == {"max_new_tokens": 8, "temperature": 0.0,
                                        "extra_body": {"seed": 5}}
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        make_llm("gpt-4o-mini", "https://api.openai.com/v1")
    with pytest.raises(ConfigError, match="--model"):
        make_llm(None, "http://127.0.0.1:8000/v1")


def _serve_chat_completions(model_path: Path):
    """A minimal OpenAI-compatible /v1/chat/completions server over the tiny model, so
    the OpenAI path is exercised through the real `openai` client and HTTP."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    llm = BatchedTransformersLLM(model=str(model_path))
    llm.load()
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"auth": self.headers.get("Authorization"), **body})
            out = llm.generate([body["messages"]], num_generations=body.get("n", 1),
                               max_new_tokens=body.get("max_tokens", 8), do_sample=False)[0]
            reply = {"id": "x", "object": "chat.completion", "created": 0,
                     "model": body["model"],
                     "choices": [{"index": i, "finish_reason": "length", "logprobs": None,
                                  "message": {"role": "assistant", "content": g}}
                                 for i, g in enumerate(out["generations"])],
                     "usage": {"prompt_tokens": out["statistics"]["input_tokens"][0],
                               "completion_tokens": sum(out["statistics"]["output_tokens"]),
                               "total_tokens": 0}}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen, llm


def test_openai_compatible_endpoint_through_make_llm(varied_model, monkeypatch):
    server, seen, local = _serve_chat_completions(varied_model)
    try:
        monkeypatch.setenv("LOCAL_KEY", "local-key")
        llm = make_llm("tiny", f"http://127.0.0.1:{server.server_port}/v1",
                       api_key_env="LOCAL_KEY", max_new_tokens=6, seed=1)
        llm.load()
        out = llm.generate_outputs([_chat("hi")], num_generations=2,
                                   **llm.generation_kwargs)
    finally:
        server.shutdown()
    expected = local.generate([_chat("hi")], max_new_tokens=6, do_sample=False)[0]
    assert out[0]["generations"] == expected["generations"] * 2
    assert seen[0]["auth"] == "Bearer local-key"
    assert seen[0]["n"] == 2 and seen[0]["seed"] == 1 and seen[0]["model"] == "tiny"
