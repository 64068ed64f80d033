"""Teachers for the pipelines: an in-process batched transformers LLM, or any
OpenAI-compatible endpoint.

Why we extend distilabel here: its stock ``TransformersLLM`` hands prompts to a
transformers ``pipeline("text-generation")``, which runs ``model.generate`` once per
prompt. On a CPU with a small model that leaves most of the matrix units idle; padding a
few prompts of similar length into one ``generate`` call is several times faster (see
``bench/generation.py``). ``BatchedTransformersLLM`` is an ordinary distilabel ``LLM``
subclass, so every distilabel task (``TextGeneration``, ``SelfInstruct``, ...) can use it.

How an answer ended travels with it. Both teachers add a ``finish_reason`` list to each
``GenerateOutput``, one entry per generation: ``"stop"`` (the model ended it), ``"length"``
(the token limit cut it off), OpenAI's words, or None where a backend did not say.
distilabel 1.5.3 hands any key of a ``GenerateOutput`` other than ``generations`` and
``statistics`` to the task's rows as the column ``llm_<task name>_<key>``
(``Task._create_extra``; that is how it carries ``logprobs``), per generation, grouped into
a list with ``group_generations``. ``finish_column`` names that column, and the pipelines
turn it into their rows' ``finish_reasons`` and ``truncated``. (``statistics`` would
reach the rows too, but inside ``distilabel_metadata``, which the next task of a
pipeline overwrites.)
"""

from __future__ import annotations

import os
from typing import Any

from distilabel.models.llms import OpenAILLM
from distilabel.models.llms.base import LLM
from distilabel.models.llms.utils import prepare_output
from distilabel.typing import GenerateOutput, StandardInput
from pydantic import PrivateAttr, validate_call

from alignment.errors import ConfigError

FINISH_REASON = "finish_reason"  # the GenerateOutput key; OpenAI's name for it
LENGTH = "length"  # the finish reason of an answer cut off by the token limit


def finish_column(task: str) -> str:
    """The column distilabel fills from the ``finish_reason`` outputs of task ``task``."""
    return f"llm_{task}_{FINISH_REASON}"


def finish_fields(reasons: list[str | None]) -> dict:
    """A ranked row's ``finish_reasons`` and ``truncated`` (one flag per response)."""
    return {"finish_reasons": list(reasons), "truncated": [r == LENGTH for r in reasons]}


def sft_finish_fields(reasons: list[str | None]) -> dict:
    """An SFT row's ``finish_reasons`` (one per generated assistant turn) and
    ``truncated``: whether any of them was cut off by the token limit."""
    return {"finish_reasons": list(reasons), "truncated": any(r == LENGTH for r in reasons)}


class BatchedTransformersLLM(LLM):
    """A local causal LM that generates for many prompts per batch.

    Prompts are rendered with the tokenizer's chat template once and tokenised without
    adding special tokens again (templates that start with ``{{ bos_token }}`` would
    otherwise get two BOS tokens). Rows are sorted by length and left-padded in batches
    of ``batch_size`` prompts; ``num_generations`` samples per prompt come from the same
    call through ``num_return_sequences``.

    Attributes:
        model: a bundled model name (``smollm2``), a local model folder or a hub id;
            resolved with ``alignment.models.resolve_model``.
        batch_size: prompts decoded together (each expands to ``num_generations``
            sequences).
        torch_dtype: dtype to load the weights in; ``auto`` (the default) is
            ``alignment.engine.pick_dtype``'s choice: bf16 on CPUs with native bf16
            (AMX / avx512_bf16) and GPUs, float32 elsewhere.
        seed: seeds torch before each ``generate`` call so a run is reproducible.
        num_threads: torch CPU threads for this process (None: torch's default). When a
            pipeline runs the teacher and the judge in two processes at once, giving each
            half the cores avoids oversubscription, which slows CPU inference severalfold.
        early_exit: drop each sequence from its batch as soon as it ends
            (``alignment.engine``) instead of padding it to the longest, as
            ``model.generate`` does; False uses ``model.generate``.

    Examples:
        ```python
        llm = BatchedTransformersLLM(model="smollm2", batch_size=8)
        llm.load()
        out = llm.generate_outputs([[{"role": "user", "content": "Hi"}]], num_generations=2,
                                   max_new_tokens=32, temperature=0.8)
        out[0]["generations"]  # two strings
        ```
    """

    model: str = "smollm2"
    batch_size: int = 16
    torch_dtype: str = "auto"
    seed: int | None = 0
    num_threads: int | None = None
    early_exit: bool = True

    _model: Any = PrivateAttr(None)
    _tokenizer: Any = PrivateAttr(None)

    def load(self) -> None:
        super().load()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from alignment.models import resolve_model

        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        path = resolve_model(self.model)
        tok = AutoTokenizer.from_pretrained(path)
        tok.padding_side = "left"  # generation continues from the right edge
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        from alignment.engine import pick_dtype

        dtype = pick_dtype()[0] if self.torch_dtype == "auto" else self.torch_dtype
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
        model.eval()
        self._tokenizer, self._model = tok, model

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def prepare_input(self, input: StandardInput) -> list[int]:
        """Token ids of one conversation, ending with the assistant generation prompt."""
        from alignment.engine import encode_prompt

        return encode_prompt(self._tokenizer, input)

    @validate_call
    def generate(  # type: ignore[override]
        self,
        inputs: list[StandardInput],
        num_generations: int = 1,
        max_new_tokens: int = 128,
        temperature: float = 1.0,
        top_p: float = 1.0,
        do_sample: bool = True,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
    ) -> list[GenerateOutput]:
        """Generates ``num_generations`` responses per input, batched.

        Args:
            inputs: conversations in OpenAI chat format.
            num_generations: responses per input.
            max_new_tokens: cap on generated tokens per response.
            temperature: sampling temperature; ignored when ``do_sample`` is false.
            top_p: nucleus sampling threshold.
            do_sample: sample (true) or decode greedily (false).
            repetition_penalty: transformers' repetition penalty (1.0 = off).
            seed: overrides the LLM's ``seed`` for this call.

        Returns:
            One ``{"generations": [...], "statistics": {"input_tokens", "output_tokens"},
            "finish_reason": [...]}`` per input, in input order; ``finish_reason`` is
            ``"stop"`` or ``"length"`` per generation.
        """
        encoded = [self.prepare_input(conv) for conv in inputs]
        gen_kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample,
                                      "repetition_penalty": repetition_penalty}
        if do_sample:
            gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
        gens = self.generations(encoded, num_generations, seed=seed, **gen_kwargs)
        outputs = []
        for ids, row in zip(encoded, gens):
            out = prepare_output([g.text for g in row], input_tokens=[len(ids)] * len(row),
                                 output_tokens=[g.tokens for g in row])
            out[FINISH_REASON] = [g.finish_reason for g in row]
            outputs.append(out)
        return outputs

    def generations(self, encoded: list[list[int]], num_generations: int = 1,
                    seed: int | None = None, **gen_kwargs: Any):
        """:func:`alignment.engine.generate_ids` on this model: every answer with its
        finish reason (``stop`` or ``length``) and token count."""
        from alignment import engine

        seed = self.seed if seed is None else seed
        if not self.early_exit:
            return self._generate_reference(encoded, num_generations, seed, **gen_kwargs)
        return engine.generate_ids(self._model, self._tokenizer, encoded,
                                   num_return_sequences=num_generations,
                                   batch_size=self.batch_size, seed=seed,
                                   progress=f"generate [{self.model}]", **gen_kwargs)

    def _generate_reference(self, encoded, num_generations, seed, **gen_kwargs):
        """The same through ``model.generate``: the reference path the engine is tested
        against (``early_exit=False``)."""
        import torch

        from alignment.engine import Generation, end_token_ids

        if seed is not None:
            torch.manual_seed(seed)
        tok, model = self._tokenizer, self._model
        sampling = bool(gen_kwargs.get("do_sample"))
        n_call = num_generations if sampling else 1
        eos_ids = end_token_ids(model, tok)
        out: list[list] = [[] for _ in encoded]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            batch = tok.pad({"input_ids": [encoded[i] for i in rows]},
                            return_tensors="pt").to(model.device)
            with torch.inference_mode():
                ids = model.generate(**batch, num_return_sequences=n_call,
                                     pad_token_id=tok.pad_token_id, **gen_kwargs)
            for j, new in enumerate(ids[:, batch["input_ids"].shape[1]:].tolist()):
                end = next((k for k, t in enumerate(new) if t in eos_ids), None)
                kept = new if end is None else new[:end + 1]
                gen = Generation(tok.decode(kept, skip_special_tokens=True),
                                 "length" if end is None else "stop", len(kept))
                out[rows[j // n_call]] += [gen] * (1 if sampling else num_generations)
        return out


class OpenAICompatibleLLM(OpenAILLM):
    """distilabel's ``OpenAILLM`` that also reports how each answer ended.

    Why a subclass: ``OpenAILLM`` builds its output from the choices' texts, logprobs and
    usage and drops ``choice.finish_reason``, and distilabel 1.5.3 is frozen upstream, so
    it will not start keeping it. This adds it as the ``finish_reason`` list of the
    output (see the module docstring), as the in-process teacher does. Only chat
    completions carry it; the other paths (plain-text prompts, structured output) leave
    it out, and the rows then say null.

    Examples:
        ```python
        llm = OpenAICompatibleLLM(model="served", base_url="http://127.0.0.1:8000/v1",
                                  api_key="not-needed")
        llm.load()
        llm.generate_outputs([[{"role": "user", "content": "Hi"}]])[0]["finish_reason"]
        # ["stop"]
        ```
    """

    def _generations_from_openai_completion(self, completion: Any) -> GenerateOutput:
        output = super()._generations_from_openai_completion(completion)
        output[FINISH_REASON] = [choice.finish_reason for choice in completion.choices]
        return output


def make_llm(model: str | None = None, base_url: str | None = None,
             api_key_env: str = "OPENAI_API_KEY", batch_size: int = 16,
             num_threads: int | None = None, **gen: Any) -> LLM:
    """The teacher a pipeline uses: a local batched model, or an OpenAI-compatible endpoint.

    With ``base_url`` set, ``model`` is the served model's name and the API key is read
    from the environment variable ``api_key_env`` (local servers such as vLLM or
    llama.cpp accept any key, so a missing variable falls back to a placeholder).
    Without it, ``model`` is a bundled name, folder or hub id loaded in-process.
    ``gen`` holds generation settings (max_new_tokens, temperature, top_p, do_sample,
    seed); they become the LLM's ``generation_kwargs`` in the form each backend accepts.
    """
    gen = {k: v for k, v in gen.items() if v is not None}
    if base_url is None:
        seed = gen.pop("seed", 0)
        return BatchedTransformersLLM(model=model or "smollm2", batch_size=batch_size,
                                      seed=seed, num_threads=num_threads,
                                      generation_kwargs=gen)
    if not model:
        raise ConfigError(f"--base-url {base_url} needs --model: the name the server serves")
    key = os.environ.get(api_key_env)
    if key is None and "api.openai.com" in base_url:
        raise ConfigError(f"set the API key in the environment variable {api_key_env}")
    # the OpenAI API has no do_sample: greedy is temperature 0; seed travels in the body
    if gen.pop("do_sample", True) is False:
        gen["temperature"] = 0.0
    if (seed := gen.pop("seed", None)) is not None:
        gen["extra_body"] = {"seed": seed}
    return OpenAICompatibleLLM(model=model, base_url=base_url, api_key=key or "not-needed",
                               generation_kwargs=gen)
