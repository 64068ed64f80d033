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

import asyncio
import os
from typing import Any

from distilabel.models.llms import OpenAILLM
from distilabel.models.llms.base import LLM
from distilabel.models.llms.utils import prepare_output
from distilabel.models.mixins.magpie import MagpieChatTemplateMixin
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
             num_threads: int | None = None, magpie: bool = False,
             template_from: str | None = None, **gen: Any) -> LLM:
    """The teacher a pipeline uses: a local batched model, or an OpenAI-compatible endpoint.

    With ``base_url`` set, ``model`` is the served model's name and the API key is read
    from the environment variable ``api_key_env`` (local servers such as vLLM or
    llama.cpp accept any key, so a missing variable falls back to a placeholder).
    Without it, ``model`` is a bundled name, folder or hub id loaded in-process.
    ``gen`` holds generation settings (max_new_tokens, temperature, top_p, do_sample,
    seed); they become the LLM's ``generation_kwargs`` in the form each backend accepts.
    With ``magpie`` the LLM is the Magpie-capable kind (``MagpieTransformersLLM``, or
    ``MagpieEndpointLLM`` reading its chat template from ``template_from``).
    """
    gen = {k: v for k, v in gen.items() if v is not None}
    if base_url is None:
        seed = gen.pop("seed", 0)
        local = MagpieTransformersLLM if magpie else BatchedTransformersLLM
        return local(model=model or "smollm2", batch_size=batch_size,
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
    if magpie:
        return MagpieEndpointLLM(model=model, base_url=base_url, api_key=key or "not-needed",
                                 template_from=template_from, generation_kwargs=gen)
    return OpenAICompatibleLLM(model=model, base_url=base_url, api_key=key or "not-needed",
                               generation_kwargs=gen)


# ---------------------------------------------------------------- Magpie

# stands in for the user's text while a chat template is rendered; what the template puts
# before it is the prefix a Magpie prompt ends with
_QUERY_MARK = "MAGPIEQUERY7F3A"


def pre_query_prompt(tokenizer: Any, conversation: list[dict] | None = None) -> str:
    """The text ``tokenizer``'s chat template puts before the next user message of
    ``conversation`` (empty: a fresh conversation), i.e. everything the model sees
    before a user's words.

    It is read off the template itself: the template renders ``conversation`` plus a user
    message holding a marker, and the prompt is what comes before the marker. For ChatML
    and a fresh conversation that is ``<|im_start|>user\\n``; after a system message it is
    the rendered system turn followed by the same prefix; a template that opens every
    conversation with text of its own (a BOS token, SmolLM2's default system prompt) keeps
    it, as the model saw it in training.
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise ConfigError("Magpie needs a chat template: this tokenizer has none, so there "
                          "is no user-turn prefix to give the model")
    marked = [*(conversation or []), {"role": "user", "content": _QUERY_MARK}]
    try:
        text = tokenizer.apply_chat_template(marked, tokenize=False,
                                             add_generation_prompt=False)
    except Exception as e:  # jinja's TemplateError, or a template's raise_exception
        raise ConfigError(f"the chat template cannot render a user turn after "
                          f"{[m.get('role') for m in conversation or []]}: {e}") from e
    if text.count(_QUERY_MARK) != 1:
        raise ConfigError("the chat template does not copy a user message verbatim, so its "
                          "user-turn prefix cannot be read off it")
    prefix = text[:text.index(_QUERY_MARK)]
    if not prefix.strip():
        raise ConfigError("the chat template puts nothing before a user message; Magpie "
                          "needs a user-turn prefix to prompt with")
    return prefix


def load_tokenizer(spec: str) -> Any:
    from transformers import AutoTokenizer

    from alignment.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(spec))


class TemplateMagpieMixin(MagpieChatTemplateMixin):
    """distilabel's Magpie mixin, with the pre-query prompt read off the chat template.

    Why: distilabel's ``Magpie`` task runs only on an LLM that is a
    ``MagpieChatTemplateMixin`` (it checks, then sets ``use_magpie_template``), and the
    mixin's ``apply_magpie_pre_query_template`` appends a fixed string to a prompt
    rendered *with* the assistant generation prompt: after a system message that gives
    ``...<|im_start|>assistant\\n<|im_start|>user\\n``, and its presets name two template
    families only. Here ``magpie_pre_query_template`` defaults to the template's own
    prefix of a fresh conversation (:func:`pre_query_prompt`) and each conversation's
    prompt is rendered from the template. Nothing in distilabel is patched.

    Two hooks let a task keep batches reproducible and learn how each instruction ended,
    both of which the ``Magpie`` task's own loop cannot: ``seed_next_call`` seeds the next
    ``generate`` call (every Magpie prompt of a batch is the same text, so a batch seeded
    like the one before would repeat it), and ``last_finish_reasons`` holds that call's
    finish reasons, one per input.
    """

    _next_seed: int | None = PrivateAttr(None)
    _last_finish: list = PrivateAttr(default_factory=list)

    def seed_next_call(self, seed: int) -> None:
        self._next_seed = seed

    def _take_seed(self) -> int | None:
        seed, self._next_seed = self._next_seed, None
        return seed

    @property
    def last_finish_reasons(self) -> list:
        return list(self._last_finish)

    def wants_query(self, input: StandardInput) -> bool:
        """Whether ``input`` is a Magpie prompt: Magpie is on and no user turn is pending."""
        return self.use_magpie_template and (not input or input[-1]["role"] != "user")

    def apply_magpie_pre_query_template(self, prompt: str, input: StandardInput) -> str:
        # the prompt is rendered from the template, not glued on (see the class docstring)
        return pre_query_prompt(self.template_tokenizer(), list(input)) \
            if self.wants_query(input) else prompt

    def template_tokenizer(self) -> Any:
        raise NotImplementedError


class MagpieTransformersLLM(BatchedTransformersLLM, TemplateMagpieMixin):
    """The in-process batched teacher, usable by distilabel's ``Magpie`` task.

    A Magpie prompt (no user turn pending) is the template's user-turn prefix, tokenised
    as is; any other conversation is prompted as by ``BatchedTransformersLLM``, so the
    same LLM can answer the instructions too. ``magpie_pre_query_template`` is computed
    from the tokenizer when the LLM is built (so it is part of the pipeline's signature:
    another template starts another journal).

    Examples:
        ```python
        llm = MagpieTransformersLLM(model="smollm2")
        llm.magpie_pre_query_template  # the template's text before a first user message
        magpie = Magpie(llm=llm, only_instruction=True)
        ```
    """

    def model_post_init(self, __context: Any) -> None:
        super().model_post_init(__context)
        if self.magpie_pre_query_template is None:
            self.magpie_pre_query_template = pre_query_prompt(load_tokenizer(self.model))

    def template_tokenizer(self) -> Any:
        return self._tokenizer

    def prepare_input(self, input: StandardInput) -> list[int]:
        if self.wants_query(input):
            text = self.apply_magpie_pre_query_template("", input)
            return self._tokenizer(text, add_special_tokens=False).input_ids
        return super().prepare_input(input)

    def generate(  # type: ignore[override]
                 self, inputs: list[StandardInput], num_generations: int = 1,
                 max_new_tokens: int = 128, temperature: float = 1.0, top_p: float = 1.0,
                 do_sample: bool = True, repetition_penalty: float = 1.0,
                 seed: int | None = None) -> list[GenerateOutput]:
        seed = self._take_seed() if seed is None else seed
        outputs = super().generate(inputs, num_generations, max_new_tokens, temperature,
                                   top_p, do_sample, repetition_penalty, seed)
        self._last_finish = [o[FINISH_REASON][0] for o in outputs]
        return outputs


class MagpieEndpointLLM(OpenAICompatibleLLM, TemplateMagpieMixin):
    """An OpenAI-compatible endpoint usable by distilabel's ``Magpie`` task.

    A chat-completions request cannot end on a bare user-turn prefix (the server applies
    its template and opens an assistant turn), so a Magpie prompt is rendered here, from
    the template of ``template_from``, and sent as raw text to ``/v1/completions`` (vLLM,
    TGI, llama.cpp and ``pipelines.server`` serve it) with ``add_special_tokens: false``,
    since the template already wrote any BOS token. Other conversations go to chat
    completions as usual. distilabel's ``ClientvLLM`` also prompts raw text, but for every
    request, with the glued-on prefix described in ``TemplateMagpieMixin``, and without
    finish reasons.

    Attributes:
        template_from: where the served model's chat template is read: a bundled name, a
            model folder or a hub id (default: ``model``).
    """

    template_from: str | None = None

    _template: Any = PrivateAttr(None)

    def model_post_init(self, __context: Any) -> None:
        super().model_post_init(__context)
        if self.magpie_pre_query_template is None:
            self.magpie_pre_query_template = pre_query_prompt(self.template_tokenizer())

    def template_tokenizer(self) -> Any:
        if self._template is None:
            self._template = load_tokenizer(self.template_from or self.model)
        return self._template

    def generate(self, inputs: list, num_generations: int = 1,  # type: ignore[override]
                 **kwargs: Any) -> list[GenerateOutput]:
        seed = self._take_seed()
        if seed is None:
            outputs = super().generate(inputs, num_generations, **kwargs)
        else:
            # one request per input: identical prompts sent with one seed would come back
            # identical, so each gets the next seed
            async def each() -> list[GenerateOutput]:
                body = kwargs.get("extra_body") or {}
                return await asyncio.gather(*[
                    self.agenerate(input=conv, num_generations=num_generations,
                                   **{**kwargs, "extra_body": {**body, "seed": seed + i}})
                    for i, conv in enumerate(inputs)])

            outputs = self.event_loop.run_until_complete(each())
        self._last_finish = [(o.get(FINISH_REASON) or [None])[0] for o in outputs]
        return outputs

    async def _generate_chat_completion(self, input: Any, num_generations: int = 1,
                                        max_new_tokens: int = 128, **kwargs: Any
                                        ) -> GenerateOutput:
        if not (isinstance(input, list) and self.wants_query(input)):
            return await super()._generate_chat_completion(
                input, num_generations=num_generations, max_new_tokens=max_new_tokens,
                **kwargs)
        prompt = self.apply_magpie_pre_query_template("", input)
        body = {**(kwargs.get("extra_body") or {}), "add_special_tokens": False}
        completion = await self._aclient.completions.create(
            model=self.model, prompt=prompt, n=num_generations, max_tokens=max_new_tokens,
            temperature=kwargs.get("temperature", 1.0), top_p=kwargs.get("top_p", 1.0),
            stop=kwargs.get("stop"), extra_body=body)
        usage = completion.usage
        out = prepare_output([c.text for c in completion.choices],
                             input_tokens=[usage.prompt_tokens if usage else 0],
                             output_tokens=[usage.completion_tokens if usage else 0])
        out[FINISH_REASON] = [c.finish_reason for c in completion.choices]
        return out
