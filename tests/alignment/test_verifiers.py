"""alignment.verifiers: every shipped check passes and fails where its docstring says, specs
parse and validate, scores combine; and `align generate verify` end to end."""

from __future__ import annotations

import json

import pytest

from alignment import verifiers as v
from alignment.errors import ConfigError, DataError


def check(name: str, response: str, **params) -> float:
    return v.run({"name": name, "params": params}, response)


# (verifier, params, response, expected score)
CASES = [
    ("lowercase", {}, "all lower case, 42 times.", 1.0),
    ("lowercase", {}, "Not lower.", 0.0),
    ("lowercase", {}, "123 ...", 0.0),  # no letters at all
    ("uppercase", {}, "ALL CAPS, 42!", 1.0),
    ("uppercase", {}, "MOSTLY caps", 0.0),
    ("max_words", {"limit": 3}, "one two three", 1.0),
    ("max_words", {"limit": 3}, "one two three four five six", 0.5),
    ("max_words", {"limit": 2}, "one — two", 1.0),  # a dash is no word
    ("min_words", {"limit": 4}, "one two three four", 1.0),
    ("min_words", {"limit": 4}, "one two", 0.5),
    ("max_sentences", {"limit": 2}, "Pi is 3.14. It is irrational!", 1.0),
    ("max_sentences", {"limit": 1}, "One. Two? Three!", 1 / 3),
    ("min_sentences", {"limit": 3}, 'He said "hi." Then left. Done', 1.0),
    ("min_sentences", {"limit": 4}, "One. Two.", 0.5),
    ("paragraphs", {"count": 2}, "First para.\nstill first.\n\n  \nSecond.", 1.0),
    ("paragraphs", {"count": 2}, "Only one\nparagraph.", 0.0),
    ("paragraphs", {"count": 2}, "A\n\nB\n\nC", 0.0),
    ("starts_with", {"phrase": "Dear sir"}, "  dear Sir, hello", 1.0),
    ("starts_with", {"phrase": "Dear sir", "case_sensitive": True}, "dear Sir, hello", 0.0),
    ("starts_with", {"phrase": "Dear sir"}, "Hello, dear sir", 0.0),
    ("ends_with", {"phrase": "Is there anything else?"}, "Done. is there anything else?  \n", 1.0),
    ("ends_with", {"phrase": "Is there anything else"}, "Done. Is there anything else?", 0.0),
    ("ends_with", {"phrase": "Bye", "case_sensitive": True}, "ok bye", 0.0),
    ("forbidden_chars", {"chars": ","}, "no commas here.", 1.0),
    ("forbidden_chars", {"chars": ","}, "one, two", 0.0),
    ("forbidden_chars", {"chars": "!?"}, "calm?", 0.0),
    ("keyword_count", {"keyword": "cat"}, "The Cat sat.", 1.0),
    ("keyword_count", {"keyword": "cat"}, "concatenate cats", 0.0),  # whole words only
    ("keyword_count", {"keyword": "cat", "min": 4}, "cat cat dog", 0.5),
    ("keyword_count", {"keyword": "cat", "min": 1, "max": 2}, "cat CAT cat", 0.0),
    ("keyword_count", {"keyword": "ice cream", "min": 2}, "Ice cream, ice  cream? ice cream.",
     1.0),
    ("forbidden_words", {"words": ["very", "really"]}, "It is quite good.", 1.0),
    ("forbidden_words", {"words": ["very", "really"]}, "It is REALLY good.", 0.0),
    ("forbidden_words", {"words": ["very"]}, "Everything is fine.", 1.0),
    ("bullet_count", {"count": 3}, "Intro:\n- a\n* b\n  • c\n**bold** line", 1.0),
    ("bullet_count", {"count": 4}, "- a\n- b\n- c", 0.75),
    ("bullet_count", {"count": 1}, "- a\n- b\n- c", 0.0),
    ("bullet_count", {"count": 0}, "-not a bullet\n---", 1.0),
    ("quoted", {}, '  "Wrapped in quotes."\n', 1.0),
    ("quoted", {}, "“Curly quotes.”", 1.0),
    ("quoted", {}, 'He said "hi"', 0.0),
    ("quoted", {}, '""', 0.0),
    ("json_keys", {"keys": ["name", "age"]}, '{"name": "Ada", "age": 36}', 1.0),
    ("json_keys", {"keys": ["name", "age"]}, '```json\n{"name": "Ada"}\n```', 0.5),
    ("json_keys", {"keys": ["name"]}, 'Here it is: {"name": "Ada"}', 0.0),
    ("json_keys", {"keys": ["name"]}, '["name"]', 0.0),
    ("final_answer", {"answer": 18}, "16 - 3 - 4 = 9 eggs, 9 * 2 = 18. #### 18", 1.0),
    ("final_answer", {"answer": 1234.5}, "It costs $1,234.50 in total.", 1.0),
    ("final_answer", {"answer": -7}, "So x = −7.", 1.0),
    ("final_answer", {"answer": "3/4"}, "The answer is 3/4 of the cake.", 1.0),
    ("final_answer", {"answer": 0.75}, "The answer is 6/8, not 1/2", 1.0),
    ("final_answer", {"answer": 5}, "The answer is 5, then 6 more steps", 1.0),  # answer is > last
    ("final_answer", {"answer": 42}, "I computed 42 then 43.", 0.0),  # the last number is 43
    ("final_answer", {"answer": 1000}, "The answer is 1,000", 1.0),
    ("final_answer", {"answer": 2}, "no number at all", 0.0),
    ("final_answer", {"answer": 0.1, "tolerance": 0.01}, "answer: 0.105", 1.0),
    ("final_answer", {"answer": 7}, "The answer is \\boxed{7}.", 1.0),
]


@pytest.mark.parametrize("name,params,response,expected", CASES)
def test_shipped_verifier(name, params, response, expected):
    assert check(name, response, **params) == pytest.approx(expected)


def test_every_shipped_verifier_passes_and_fails_somewhere():
    scores: dict[str, set[float]] = {}
    for name, params, response, expected in CASES:
        scores.setdefault(name, set()).add(expected)
    for name in v.VERIFIERS:
        if ":" in name:  # a user function loaded by another test
            continue
        assert 1.0 in scores[name] and min(scores[name]) < 1.0, name
        assert v.VERIFIERS[name].description.startswith("Passes"), name


def test_registry_reads_parameters_and_description():
    kc = v.get("keyword_count")
    assert kc.parameters == {"keyword": v.REQUIRED, "min": 1, "max": None}
    assert kc.required == ["keyword"]
    assert "whole words" in kc.description and "\n" not in kc.description


def test_word_and_sentence_helpers():
    assert v.count_words("Well-known  facts:\n don't — change.") == 4
    assert v.sentences("Dr. Who? Yes!  It is 3.14.\n\nNew para") == [
        "Dr.", "Who?", "Yes!", "It is 3.14.", "New para"]
    assert v.count_sentences("") == 0


def test_parse_spec_forms():
    assert v.parse_spec("lowercase") == {"name": "lowercase", "params": {}}
    assert v.parse_spec("max_words:limit=40") == {"name": "max_words", "params": {"limit": 40}}
    assert v.parse_spec("ends_with:phrase=Is there anything else?")["params"] == {
        "phrase": "Is there anything else?"}
    # a comma starts a new pair only before `key=`; text params keep their text
    assert v.parse_spec("starts_with:phrase=Hi, there,case_sensitive=true")["params"] == {
        "phrase": "Hi, there", "case_sensitive": True}
    assert v.parse_spec("starts_with:phrase=42")["params"] == {"phrase": "42"}
    assert v.parse_spec("forbidden_chars:chars=,")["params"] == {"chars": ","}
    assert v.parse_spec('forbidden_words:words=["very", "really"]')["params"] == {
        "words": ["very", "really"]}
    assert v.parse_spec("final_answer:answer=3/4")["params"] == {"answer": "3/4"}


def test_parse_spec_user_function():
    spec = v.parse_spec("tests.user_verifier:mentions:word=cat,times=2")
    assert spec == {"name": "tests.user_verifier:mentions", "params": {"word": "cat", "times": 2}}
    assert v.get("tests.user_verifier:mentions").description.startswith("Passes when")
    assert v.run(spec, "cat and cat") == 1.0 and v.run(spec, "a cat") == 0.5
    assert v.parse_spec("tests.user_verifier:mentions")["params"] == {}
    assert v.load("tests.user_verifier:mentions") is v.VERIFIERS["tests.user_verifier:mentions"]


@pytest.mark.parametrize("text,message", [
    ("no_such_check", "unknown verifier `no_such_check`; known verifiers: bullet_count"),
    ("no_such_check:limit=3", "unknown verifier `no_such_check`"),
    ("max_words", "`max_words` needs limit"),
    ("max_words:", "is not key=value"),
    ("max_words:40", "`40` is not key=value"),
    ("max_words:limit=40,limit=50", "`limit` is given twice"),
    ("max_words:limit=forty", "`max_words:limit=forty`.params.limit: expected int, got 'forty'"),
    ("max_words:words=4", "takes no parameter 'words'; it takes limit"),
    ("final_answer:answer=abc", "fails on an empty response with these parameters"),
    ("no_such_module_xyz:check", "cannot import module `no_such_module_xyz`"),
    ("tests.user_verifier:missing", "has no `missing`"),
    ("tests.user_verifier:NOT_A_FUNCTION", "is not callable"),
])
def test_parse_spec_errors_name_the_text(text, message):
    with pytest.raises(ConfigError) as e:
        v.parse_spec(text)
    assert message in str(e.value)


def test_check_spec_normalises_and_locates_errors():
    # Arrow fills absent keys of a union struct with None, and widens ints beside floats
    assert v.check_spec({"name": "max_words", "params": {"limit": 40.0, "phrase": None}}) == {
        "name": "max_words", "params": {"limit": 40}}
    assert v.check_spec({"name": "lowercase"}) == {"name": "lowercase", "params": {}}
    with pytest.raises(DataError) as e:
        v.check_spec({"name": "max_words", "params": {"limit": "x"}}, "verifiers[2]",
                     path="rows.jsonl", row=5)
    assert str(e.value).startswith("rows.jsonl row 5: field `verifiers[2].params.limit`")
    with pytest.raises(ConfigError, match="takes no parameter 'count'"):
        v.check_spec({"name": "lowercase", "params": {"count": 1}})
    with pytest.raises(ConfigError, match="a spec holds `name` and `params`"):
        v.check_spec({"name": "lowercase", "weight": 2})
    with pytest.raises(ConfigError, match='expected {"name"'):
        v.check_spec("lowercase")  # type: ignore[arg-type]
    # a dataset cannot make align import code
    with pytest.raises(ConfigError, match="cannot name your own functions"):
        v.check_spec({"name": "os:system", "params": {}})


def test_run_drops_none_params_and_clamps():
    assert v.run({"name": "keyword_count", "params": {"keyword": "a", "min": None,
                                                      "max": None}}, "a") == 1.0

    @v.register("test_overshoot")
    def overshoot(response: str) -> float:
        """Returns 3."""
        return 3.0

    @v.register("test_broken")
    def broken(response: str, n: int = 1) -> float:
        """Raises on non-empty responses."""
        if response:
            raise KeyError("oops")
        return 0.0

    try:
        assert v.run({"name": "test_overshoot"}, "x") == 1.0
        with pytest.raises(KeyError) as e:
            v.run({"name": "test_broken", "params": {"n": 2}}, "x")
        assert "test_broken:n=2" in "".join(getattr(e.value, "__notes__", []))
        with pytest.raises(ConfigError, match="already registered"):
            v.register("test_broken")(overshoot)
    finally:
        del v.VERIFIERS["test_overshoot"], v.VERIFIERS["test_broken"]


def test_score_keys_repeated_names_and_all_or_nothing():
    specs = [{"name": "max_words", "params": {"limit": 2}},
             {"name": "max_words", "params": {"limit": 8}},
             {"name": "lowercase", "params": {}}]
    got = v.score(specs, "four words are here")
    assert got["results"] == {"max_words": 0.5, "max_words#2": 1.0, "lowercase": 1.0}
    assert got["score"] == pytest.approx(2.5 / 3) and got["passed"] is False
    strict = v.score(specs, "four words are here", partial=False)
    assert strict["score"] == 0.0 and strict["results"] == got["results"]
    assert v.score(specs[1:], "all good")["score"] == 1.0
    assert v.score(specs[1:], "all good", partial=False) == {
        "score": 1.0, "passed": True, "results": {"max_words": 1.0, "lowercase": 1.0}}
    assert v.format_spec(specs[0]) == "max_words:limit=2"


# ---------------------------------------------------------------- align generate verify

RANKED = [
    {"id": "r1", "prompt": "Answer in lowercase, at most 3 words.",
     "responses": ["fine, thanks", "I Am Fine Thank You", "ok"],
     "models": ["a", "b", "c"], "scores": [None] * 3, "judge": "none", "judge_raw": [""] * 3,
     "verifiers": [{"name": "lowercase", "params": {}},
                   {"name": "max_words", "params": {"limit": 3}}]},
    {"id": "r2", "prompt": "What is 6 x 7? End with the number.",
     "responses": ["6 x 7 = 42", "It is 43."], "models": ["a", "b"], "scores": [None, None],
     "judge": "none", "judge_raw": ["", ""],
     "verifiers": [{"name": "final_answer", "params": {"answer": 42}}]},
]


def _align(*argv: str) -> int:
    from alignment.cli import main

    return main(list(argv))


def test_generate_verify_end_to_end(tmp_path, capsys):
    from alignment.data import read_card, read_rows, write_rows

    src, out = write_rows(RANKED, tmp_path / "ranked.jsonl"), tmp_path / "verified.jsonl"
    assert _align("generate", "verify", str(src), "-o", str(out),
                  "--verifier", "forbidden_chars:chars=,") == 0
    assert "5 responses checked" in capsys.readouterr().out
    rows = read_rows(out)
    first, second = rows
    assert first["judge"] == "verifiers" and first["responses"] == RANKED[0]["responses"]
    # r1: lowercase + max_words(3) from the row, forbidden_chars(",") from the command line
    assert first["verifier_results"][0] == {"lowercase": 1.0, "max_words": 1.0,
                                            "forbidden_chars": 0.0}
    assert first["verifier_results"][1] == {"lowercase": 0.0, "max_words": 0.6,
                                            "forbidden_chars": 1.0}
    assert first["scores"] == pytest.approx([2 / 3, 1.6 / 3, 1.0])
    assert first["ranks"] == [2, 3, 1]
    assert [s["name"] for s in first["verifiers"]] == ["lowercase", "max_words",
                                                       "forbidden_chars"]
    assert second["scores"] == pytest.approx([1.0, 0.5])  # final_answer 1/0, no commas 1/1
    assert json.loads(second["judge_raw"][0])["passed"] is True
    card = read_card(out)
    assert card["counts"] == {"rows": 2, "responses": 5, "responses_passing_all": 2}
    assert card["checks"]["max_words:limit=3"] == {"responses": 3, "passed": 2,
                                                   "pass_rate": 0.6667, "mean_score": 0.8667}
    assert card["checks"]["forbidden_chars:chars=,"]["pass_rate"] == 0.8
    assert card["checks"]["final_answer:answer=42"]["passed"] == 1

    strict = tmp_path / "strict.parquet"
    assert _align("generate", "verify", str(src), "-o", str(strict), "--no-partial",
                  "--only-cli-verifiers", "--verifier", "lowercase") == 0
    rows = read_rows(strict)
    assert rows[0]["scores"] == [1.0, 0.0, 1.0] and rows[1]["scores"] == [1.0, 0.0]
    # Parquet cannot store a column of empty param structs: specs without params omit them
    assert rows[0]["verifiers"] == [{"name": "lowercase"}]


def test_generate_verify_reads_parquet_param_unions(tmp_path):
    """Parquet stores the rows' params as one struct of every key, absent ones null."""
    from alignment.data import read_rows, write_rows

    src = write_rows(RANKED, tmp_path / "ranked.parquet")
    assert read_rows(src)[1]["verifiers"][0]["params"] == {"limit": None, "answer": 42}
    out = tmp_path / "out.jsonl"
    assert _align("generate", "verify", str(src), "-o", str(out)) == 0
    assert [r["scores"] for r in read_rows(out)] == [[1.0, 0.3, 1.0], [1.0, 0.0]]


def test_generate_verify_refuses_rows_without_checks(tmp_path, capsys):
    from alignment.data import write_rows

    rows = [RANKED[1], {k: v for k, v in RANKED[0].items() if k != "verifiers"}]
    src = write_rows(rows, tmp_path / "ranked.jsonl")
    assert _align("generate", "verify", str(src), "-o", str(tmp_path / "o.jsonl")) == 2
    err = capsys.readouterr().err
    assert "ranked.jsonl row 2: field `verifiers`: has no verifiers" in err
    assert not (tmp_path / "o.jsonl").exists()
    bad = write_rows([dict(RANKED[0], verifiers=[{"name": "max_words", "params": {}}])],
                     tmp_path / "bad.jsonl")
    assert _align("generate", "verify", str(bad), "-o", str(tmp_path / "o.jsonl")) == 2
    assert "bad.jsonl row 1: field `verifiers[0].params`: `max_words` needs limit" in (
        capsys.readouterr().err)
    assert _align("generate", "verify", str(src), "-o", str(tmp_path / "o.jsonl"),
                  "--verifier", "max_words:limit=x") == 2
    assert "expected int, got 'x'" in capsys.readouterr().err


def test_generate_verify_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        _align("generate", "verify", "--help")
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "align generate verify" in out and "--only-cli-verifiers" in out
    assert _align("generate", "--help") == 0
    assert "verify" in capsys.readouterr().out
