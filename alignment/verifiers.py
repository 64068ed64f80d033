"""Verifiers: named, parameterised programmatic checks of a response, each a score in [0, 1].

A verifier is a plain function ``check(response: str, **params) -> float`` (1.0 = the
constraint is met, partial credit where it is natural) registered under a name with
``@register("name")``. Rows carry the checks that apply to them as *specs* in a
``verifiers`` column, JSON-able dicts::

    {"verifiers": [{"name": "max_words", "params": {"limit": 40}},
                   {"name": "ends_with", "params": {"phrase": "Is there anything else?"}}]}

and the command line writes the same specs as ``NAME[:key=value,...]``
(:func:`parse_spec`). A user's own check is ``package.module:function``, imported by
:func:`load` from the command line only: a dataset can name registered verifiers but
never makes align import code.

Three things use them: ``align generate verify`` (verifiers as a judge of ranked
responses), ``align grpo|rloo --verifier`` (verifiers as rewards, RLVR) and evaluation.
Word and sentence counting live here once (:func:`count_words`, :func:`count_sentences`).
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from alignment.errors import ConfigError, DataError

REQUIRED = inspect.Parameter.empty  # the default of a parameter a spec must give


@dataclass(frozen=True)
class Verifier:
    """A registered check: ``func(response, **params) -> float`` and what it accepts.

    ``parameters`` maps each parameter after ``response`` to its default, or to
    :data:`REQUIRED` when a spec must give it.
    """

    name: str
    func: Callable[..., float]
    description: str
    parameters: dict[str, Any] = field(hash=False)
    accepts_any: bool = False  # the function takes **kwargs

    @property
    def required(self) -> list[str]:
        return [k for k, v in self.parameters.items() if v is REQUIRED]


VERIFIERS: dict[str, Verifier] = {}


def _verifier(name: str, func: Callable) -> Verifier:
    if not callable(func):
        raise ConfigError(f"verifier `{name}`: {func!r} is not callable")
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        raise ConfigError(f"verifier `{name}`: cannot read the signature of {func!r}") from None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not params or params[0].kind not in positional:
        raise ConfigError(f"verifier `{name}`: its first parameter must be the response, as in "
                          "`def check(response: str, **params) -> float`")
    named = {p.name: p.default for p in params[1:]
             if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)}
    doc = inspect.getdoc(func) or ""
    return Verifier(name=name, func=func, description=doc.strip().split("\n")[0],
                    parameters=named,
                    accepts_any=any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params))


def register(name: str) -> Callable[[Callable], Callable]:
    """Decorator: add ``func`` to :data:`VERIFIERS` under ``name``."""
    def add(func: Callable) -> Callable:
        old = VERIFIERS.get(name)
        if old is not None and (old.func.__module__, old.func.__qualname__) != (
                func.__module__, func.__qualname__):
            raise ConfigError(f"verifier `{name}` is already registered ({old.func.__module__}."
                              f"{old.func.__qualname__}); pick another name")
        VERIFIERS[name] = _verifier(name, func)
        return func
    return add


def get(name: str) -> Verifier:
    """The registered verifier ``name``; an unknown name is a ConfigError listing the known."""
    if name not in VERIFIERS:
        raise ConfigError(f"unknown verifier `{name}`; known verifiers: "
                          f"{', '.join(sorted(VERIFIERS))} (or `package.module:function` on "
                          "the command line for your own)")
    return VERIFIERS[name]


def load(ref: str) -> Verifier:
    """A registered name, or ``package.module:function`` (imported and registered as ``ref``)."""
    if ref in VERIFIERS or ":" not in ref:
        return get(ref)
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr.isidentifier():
        raise ConfigError(f"verifier `{ref}`: expected `package.module:function`")
    # console scripts put their own bin/ first on sys.path, not the current folder, where
    # a user's `my_checks.py` usually sits
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"verifier `{ref}`: cannot import module `{module_name}` ({e}); it "
                          "must be importable from the current folder or an installed "
                          "package") from None
    func = getattr(module, attr, None)
    if func is None:
        raise ConfigError(f"verifier `{ref}`: module `{module_name}` has no `{attr}`")
    if not callable(func):
        raise ConfigError(f"verifier `{ref}`: `{attr}` in `{module_name}` is not callable")
    VERIFIERS[ref] = _verifier(ref, func)
    return VERIFIERS[ref]


# ------------------------------------------------------------------------------- specs

_PAIR_SPLIT = re.compile(r",(?=\s*[A-Za-z_]\w*\s*=)")  # a comma that starts the next key=


def parse_spec(text: str) -> dict:
    """Command-line form -> a checked spec.

    ``NAME``, ``NAME:key=value,key=value`` or ``package.module:function[:key=value,...]``
    (when the part before the first colon is not a registered name). Values are read as
    JSON when they parse (``limit=40``, ``words=["a","b"]``) and kept as text otherwise;
    a text parameter always keeps the text (``phrase=42`` is the string "42"). A comma
    starts a new pair only when a ``key=`` follows it, so ``phrase=Hi, there`` is one value.
    """
    text = text.strip()
    head, _, rest = text.partition(":")
    if not head:
        raise ConfigError(f"verifier `{text}`: expected NAME, NAME:key=value,... or "
                          "package.module:function[:key=value,...]")
    if head in VERIFIERS or not rest:
        ref, params_text = head, rest
    else:
        function, _, params_text = rest.partition(":")
        if "=" in function:  # NAME:key=value with an unknown NAME
            get(head)
        ref = f"{head}:{function}"
    verifier = load(ref)
    hints = _type_hints(verifier)
    params: dict[str, Any] = {}
    if params_text or text.endswith(":"):
        for pair in _PAIR_SPLIT.split(params_text):
            key, eq, value = pair.partition("=")
            key = key.strip()
            if not eq or not key.isidentifier():
                raise ConfigError(f"verifier `{text}`: `{pair}` is not key=value; write "
                                  f"{ref}:key=value,key=value")
            if key in params:
                raise ConfigError(f"verifier `{text}`: `{key}` is given twice")
            params[key] = value if hints.get(key) is str else _json_or_text(value)
    return check_spec({"name": ref, "params": params}, where=f"verifier `{text}`")


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def format_spec(spec: dict) -> str:
    """The command-line form of a spec: ``max_words:limit=40``."""
    params = ",".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                      for k, v in (spec.get("params") or {}).items() if v is not None)
    return f"{spec['name']}:{params}" if params else spec["name"]


def check_spec(spec: dict, where: str = "verifiers", *, path: object = None,
               row: int | None = None) -> dict:
    """Validate a spec and return it normalised (``{"name", "params"}``, None params dropped).

    Checks that the name is registered, that every parameter is one the function takes,
    of the annotated type, that required ones are present, and that the function accepts
    them on an empty response (any check must score an empty completion). Errors name
    ``where``: a :class:`DataError` of ``path`` and ``row`` when a path is given (a spec
    read from a dataset), else a :class:`ConfigError`.
    """
    def fail(message: str, at: str = "") -> Exception:
        if path is not None:
            return DataError(path, message, row=row, field=where + at)
        return ConfigError(f"{where}{at}: {message}")

    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise fail('expected {"name": VERIFIER, "params": {...}}, got ' f"{spec!r}")
    extra = set(spec) - {"name", "params"}
    if extra:
        raise fail(f"unknown key(s) {', '.join(sorted(extra))}; a spec holds `name` and `params`")
    name = spec["name"]
    if name not in VERIFIERS:
        known = ", ".join(sorted(VERIFIERS))
        why = (" a dataset cannot name your own functions (that would import code); pass "
               f"`--verifier {name}` on the command line" if ":" in name else "")
        raise fail(f"unknown verifier `{name}`; known verifiers: {known}.{why}", ".name")
    verifier = VERIFIERS[name]
    raw = spec.get("params") or {}
    if not isinstance(raw, dict):
        raise fail(f"expected an object of parameters, got {raw!r}", ".params")
    params = {k: v for k, v in raw.items() if v is not None}
    unknown = [k for k in params if k not in verifier.parameters]
    if unknown and not verifier.accepts_any:
        raise fail(f"`{name}` takes no parameter {', '.join(map(repr, unknown))}; it takes "
                   f"{_signature_text(verifier) or 'none'}", ".params")
    missing = [k for k in verifier.required if k not in params]
    if missing:
        raise fail(f"`{name}` needs {', '.join(missing)} ({_signature_text(verifier)})",
                   ".params")
    hints = _type_hints(verifier)
    for key, value in params.items():
        hint = hints.get(key)
        if hint is not None and not _accepts(hint, value):
            raise fail(f"expected {_type_name(hint)}, got {value!r}", f".params.{key}")
        if hint is int and isinstance(value, float):  # Arrow widens ints mixed with floats
            params[key] = int(value)
    try:
        float(verifier.func("", **params))
    except Exception as e:  # noqa: BLE001 - any failure here is about these parameters
        raise fail(f"`{name}` fails on an empty response with these parameters: {e}",
                   ".params") from None
    return {"name": name, "params": params}


def stored(spec: dict) -> dict:
    """A checked spec as a row stores it: without ``params`` when there are none.

    Parquet cannot write a struct with no fields, which is what a column of specs that
    all have ``"params": {}`` becomes; an absent (null) ``params`` reads back as none."""
    return {"name": spec["name"], "params": spec["params"]} if spec.get("params") else {
        "name": spec["name"]}


def _signature_text(verifier: Verifier) -> str:
    return ", ".join(k if v is REQUIRED else f"{k}={v!r}" for k, v in verifier.parameters.items())


def _type_hints(verifier: Verifier) -> dict[str, Any]:
    try:
        return typing.get_type_hints(verifier.func)
    except Exception:  # noqa: BLE001 - a user's annotation we cannot resolve is not checked
        return {}


def _accepts(hint: Any, value: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is list or origin is list:
        return isinstance(value, list) and all(_accepts(args[0], v) for v in value if args)
    return True  # an annotation we do not model is not checked


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) if not typing.get_args(hint) else str(
        hint).replace("typing.", "")


# ------------------------------------------------------------------------------ scoring

def run(spec: dict, response: str) -> float:
    """One spec's score of ``response``, clamped to [0, 1]; None params are dropped.

    A check that raises is a bug in that check: the exception propagates with the
    verifier's name and parameters added to it.
    """
    verifier = get(spec["name"])
    params = {k: v for k, v in (spec.get("params") or {}).items() if v is not None}
    try:
        value = float(verifier.func(response, **params))
    except Exception as e:
        where = f"in verifier {format_spec(spec)!r}"
        if not hasattr(e, "add_note"):  # Python 3.10
            raise RuntimeError(f"{where}: {e!r}") from e
        e.add_note(where)
        raise
    if math.isnan(value):
        raise ValueError(f"verifier {format_spec(spec)!r} returned NaN")
    return min(1.0, max(0.0, value))


def result_keys(specs: list[dict]) -> list[str]:
    """One key per spec: its name, and ``name#2``, ``name#3`` for later specs of that name."""
    seen: dict[str, int] = {}
    keys = []
    for spec in specs:
        seen[spec["name"]] = seen.get(spec["name"], 0) + 1
        n = seen[spec["name"]]
        keys.append(spec["name"] if n == 1 else f"{spec['name']}#{n}")
    return keys


def score(specs: list[dict], response: str, partial: bool = True) -> dict:
    """All of ``specs`` on ``response``.

    Returns ``{"score", "passed", "results"}``: ``results`` maps each spec's key (see
    :func:`result_keys`) to its score; ``passed`` is whether every one is 1.0; ``score``
    is their mean (``partial``) or 1.0 / 0.0 for all passed / not.
    """
    if not specs:
        raise ValueError("score() needs at least one verifier spec")
    results = {k: run(s, response) for k, s in zip(result_keys(specs), specs)}
    passed = all(v == 1.0 for v in results.values())
    value = sum(results.values()) / len(results) if partial else float(passed)
    return {"score": value, "passed": passed, "results": results}


# ------------------------------------------------------------------------ text helpers

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+|\n\s*\n")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_BULLET = re.compile(r"^[ \t]*[-*•][ \t]+\S", re.MULTILINE)


def words(text: str) -> list[str]:
    """Whitespace-separated tokens holding at least one letter or digit ("—" is no word)."""
    return [t for t in text.split() if any(c.isalnum() for c in t)]


def count_words(text: str) -> int:
    return len(words(text))


def sentences(text: str) -> list[str]:
    """Stretches ending in . ! ? or … before whitespace (closing quotes allowed), or at a
    blank line or the end, holding a letter or digit. "3.14" does not end a sentence;
    abbreviations such as "e.g. this" do."""
    return [s.strip() for s in _SENTENCE_END.split(text) if any(c.isalnum() for c in s)]


def count_sentences(text: str) -> int:
    return len(sentences(text))


_LAST_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s|$)")


def whole_sentences(text: str) -> str | None:
    """``text`` cut after its last complete sentence (what a token limit cut off mid-way
    is dropped), layout kept; None when not one sentence is complete."""
    ends = list(_LAST_END.finditer(text))
    return text[:ends[-1].end()].rstrip() if ends else None


def _whole_word(term: str) -> re.Pattern:
    return re.compile(r"(?<!\w)" + re.escape(term.strip()) + r"(?!\w)", re.IGNORECASE)


# ------------------------------------------------------------------------ the checks

@register("lowercase")
def lowercase(response: str) -> float:
    """Passes when the response has lowercase letters and no uppercase letter."""
    return float(any(c.islower() for c in response) and not any(c.isupper() for c in response))


@register("uppercase")
def uppercase(response: str) -> float:
    """Passes when the response has uppercase letters and no lowercase letter."""
    return float(any(c.isupper() for c in response) and not any(c.islower() for c in response))


@register("max_words")
def max_words(response: str, limit: int) -> float:
    """Passes with at most `limit` words; over it, partial credit limit / words."""
    n = count_words(response)
    return 1.0 if n <= limit else limit / n


@register("min_words")
def min_words(response: str, limit: int) -> float:
    """Passes with at least `limit` words; under it, partial credit words / limit."""
    n = count_words(response)
    return 1.0 if n >= limit else n / limit


@register("max_sentences")
def max_sentences(response: str, limit: int) -> float:
    """Passes with at most `limit` sentences; over it, partial credit limit / sentences."""
    n = count_sentences(response)
    return 1.0 if n <= limit else limit / n


@register("min_sentences")
def min_sentences(response: str, limit: int) -> float:
    """Passes with at least `limit` sentences; under it, partial credit sentences / limit."""
    n = count_sentences(response)
    return 1.0 if n >= limit else n / limit


@register("paragraphs")
def paragraphs(response: str, count: int) -> float:
    """Passes with exactly `count` paragraphs (separated by blank lines); no partial credit."""
    found = [p for p in _PARAGRAPH_BREAK.split(response) if p.strip()]
    return float(len(found) == count)


def _same(a: str, b: str, case_sensitive: bool) -> bool:
    return a == b if case_sensitive else a.casefold() == b.casefold()


@register("starts_with")
def starts_with(response: str, phrase: str, case_sensitive: bool = False) -> float:
    """Passes when the response, after leading whitespace, begins with `phrase`."""
    text, phrase = response.lstrip(), phrase.strip()
    if not phrase:
        raise ValueError("`phrase` is empty")
    return float(_same(text[:len(phrase)], phrase, case_sensitive))


@register("ends_with")
def ends_with(response: str, phrase: str, case_sensitive: bool = False) -> float:
    """Passes when the response, ignoring trailing whitespace, ends with exactly `phrase`.

    Punctuation after the phrase fails unless the phrase has it: `phrase="anything else"`
    fails on "...anything else?"."""
    text, phrase = response.rstrip(), phrase.strip()
    if not phrase:
        raise ValueError("`phrase` is empty")
    return float(len(text) >= len(phrase) and _same(text[-len(phrase):], phrase, case_sensitive))


@register("forbidden_chars")
def forbidden_chars(response: str, chars: str) -> float:
    """Passes when no character of `chars` occurs (`chars=","`: no commas)."""
    if not chars:
        raise ValueError("`chars` is empty")
    return float(not any(c in response for c in chars))


@register("keyword_count")
def keyword_count(response: str, keyword: str, min: int = 1, max: int | None = None) -> float:
    """Passes when `keyword` occurs `min` to `max` times (case-insensitive, whole words).

    Too few: partial credit found / min; more than `max`: 0."""
    if not keyword.strip():
        raise ValueError("`keyword` is empty")
    found = len(_whole_word(keyword).findall(response))
    if max is not None and found > max:
        return 0.0
    return 1.0 if found >= min else found / min


@register("forbidden_words")
def forbidden_words(response: str, words: list[str]) -> float:
    """Passes when none of `words` occurs (case-insensitive, whole words); no partial credit."""
    return float(not any(_whole_word(w).search(response) for w in words if w.strip()))


@register("bullet_count")
def bullet_count(response: str, count: int) -> float:
    """Passes with exactly `count` bullet lines (starting with "-", "*" or "•" and a space).

    Otherwise partial credit 1 - |found - count| / count, floored at 0 (0 when count is 0)."""
    found = len(_BULLET.findall(response))
    if found == count:
        return 1.0
    return 0.0 if count == 0 else max(0.0, 1 - abs(found - count) / count)


@register("quoted")
def quoted(response: str) -> float:
    """Passes when the whole (stripped) response is in double quotes, straight or curly."""
    text = response.strip()
    return float(len(text) > 2 and text[0] in "\"“" and text[-1] in "\"”"
                 and bool(text[1:-1].strip()))


_FENCE = re.compile(r"^```[ \t]*(?:json)?[ \t]*\n(.*?)\n?```$", re.DOTALL | re.IGNORECASE)


@register("json_keys")
def json_keys(response: str, keys: list[str]) -> float:
    """Passes when the response is a JSON object holding every key of `keys`.

    The object may be wrapped in one ```json fence. An object holding some of the keys
    scores the fraction present; anything that does not parse as an object scores 0."""
    text = response.strip()
    fenced = _FENCE.match(text)
    try:
        value = json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        return 0.0
    if not isinstance(value, dict):
        return 0.0
    return 1.0 if not keys else sum(k in value for k in keys) / len(keys)


_NUMBER = re.compile(r"(?<![\w.])(-)?\$?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
                     r"(?:\s?/\s?(\d+(?:\.\d+)?))?")
_ANSWER_MARKERS = (re.compile(r"####"), re.compile(r"\\boxed\{"),
                   re.compile(r"answer\s*(?:is|:)", re.IGNORECASE), re.compile(r"="))


def _numbers(text: str) -> list[float]:
    out = []
    for m in _NUMBER.finditer(text.replace("−", "-")):
        value = float(m.group(2).replace(",", ""))
        if m.group(3) is not None:
            if float(m.group(3)) == 0:
                continue
            value /= float(m.group(3))
        out.append(-value if m.group(1) else value)
    return out


def final_number(text: str) -> float | None:
    """The response's final answer: the first number after the last "####", "\\boxed{",
    "answer is"/"answer:" or "=" (in that order of preference), else its last number.
    Thousands commas, negatives, decimals, "$" and simple fractions (3/4) are read."""
    for marker in _ANSWER_MARKERS:
        hits = list(marker.finditer(text))
        if hits:
            after = _numbers(text[hits[-1].end():])
            if after:
                return after[0]
    found = _numbers(text)
    return found[-1] if found else None


@register("final_answer")
def final_answer(response: str, answer: float | str, tolerance: float = 1e-6) -> float:
    """Passes when the response's final number equals `answer` within `tolerance`.

    The final number is :func:`final_number`'s; the tolerance is absolute; `answer` may
    be text such as "3/4" or "1,000"."""
    if isinstance(answer, str):
        parsed = _numbers(answer.strip())
        if len(parsed) != 1:
            raise ValueError(f"`answer` {answer!r} is not one number")
        answer = parsed[0]
    found = final_number(response)
    return float(found is not None and abs(found - answer) <= tolerance)


# ------------------------------------------------------------------------ repairs
#
# A repair is the smallest edit that makes a response pass one check: lowercase it, cut it
# to whole sentences under a word limit, wrap it in quotes. `align loop --repair` uses it
# to build preference pairs where the policy's own samples never pass (a 135M model
# almost never writes a whole answer in capitals when asked): the chosen answer is the
# repaired sample, the rejected one the sample as written, so the pair differs only in
# what the check is about. Checks with no repair (keyword counts, arithmetic) only ever
# pair samples the policy wrote.

REPAIRS: dict[str, Callable[..., str | None]] = {}


def repairer(name: str) -> Callable[[Callable], Callable]:
    """Register ``func(response, **params) -> str | None`` as the repair of check ``name``."""
    def add(func: Callable) -> Callable:
        REPAIRS[name] = func
        return func
    return add


def repair(specs: list[dict], response: str) -> str | None:
    """``response`` edited so that every spec passes, or None when some failing check has
    no repair or the edits do not add up to a pass."""
    text = response.strip()
    for _ in range(len(specs) + 1):  # one edit can undo another (a phrase added in capitals)
        if score(specs, text)["passed"]:
            return text
        for spec in specs:
            if run(spec, text) >= 1.0:
                continue
            fix = REPAIRS.get(spec["name"])
            params = {k: v for k, v in (spec.get("params") or {}).items() if v is not None}
            text = fix(text, **params) if fix else None
            if not text:
                return None
    return None


def _whole_sentences(text: str, fits: Callable[[list[str]], bool]) -> str | None:
    kept: list[str] = []
    for s in sentences(text):
        if not fits(kept + [s]):
            break
        kept.append(s)
    return " ".join(kept) or None


repairer("lowercase")(lambda response: response.lower())
repairer("uppercase")(lambda response: response.upper())
repairer("max_words")(lambda response, limit: _whole_sentences(
    response, lambda kept: count_words(" ".join(kept)) <= limit))
repairer("max_sentences")(lambda response, limit: _whole_sentences(
    response, lambda kept: len(kept) <= limit))
repairer("forbidden_chars")(lambda response, chars: re.sub(
    r"[ \t]{2,}", " ", "".join(c for c in response if c not in chars)))
repairer("quoted")(lambda response: '"' + response.strip().strip("\"“”") + '"')


@repairer("starts_with")
def _start(response: str, phrase: str, case_sensitive: bool = False) -> str:
    rest = response.lstrip()
    joined = rest[:1].lower() + rest[1:] if rest[:2] != "I " else rest
    return f"{phrase.strip()}, {joined}" if phrase.strip()[-1:].isalnum() else f"{phrase.strip()} {rest}"


@repairer("ends_with")
def _end(response: str, phrase: str, case_sensitive: bool = False) -> str:
    return f"{response.rstrip()} {phrase.strip()}"


@repairer("bullet_count")
def _bullets(response: str, count: int) -> str | None:
    found = [s.lstrip("-*• ").strip() for s in sentences(response.replace("\n", " \n"))]
    found = [s for s in found if s]
    if len(found) < count or count < 1:
        return None
    return "\n".join(f"- {s}" for s in found[:count])


@repairer("json_keys")
def _json(response: str, keys: list[str]) -> str | None:
    parts = sentences(response)
    if not keys or not parts:
        return None
    # the first key gets the first sentence, the last key the rest
    values = [parts[0]] + [" ".join(parts[1:]) or parts[0]] * (len(keys) - 1)
    return json.dumps(dict(zip(keys, values)), ensure_ascii=False)
