"""The embedded document store behind Argilla's search engine, on its own: the
Elasticsearch queries below are the shapes Argilla's server sends."""

from __future__ import annotations

import multiprocessing

import pytest

from annotation.docstore import DocumentStore, IndexNotFound, UnsupportedQuery

INDEX = "rg.test"


def _doc(i: int, prompt: str, *, length: int, source: str, responses=()):
    return {"_op_type": "index", "_index": INDEX, "_id": f"id{i}", "id": f"id{i}",
            "status": "pending", "fields": {"prompt": prompt, "answer": f"answer {i}"},
            "metadata": {"length": length, "source": source},
            "inserted_at": f"2025-01-0{i}T00:00:00", "responses": list(responses)}


@pytest.fixture
def store(tmp_path):
    s = DocumentStore(tmp_path / "index.sqlite3")
    s.create_index(INDEX, {"properties": {}, "_source": {"excludes": ["fields.image"]}})
    s.bulk([
        _doc(1, "the quick brown fox", length=10, source="web"),
        _doc(2, "a lazy dog sleeps", length=30, source="books",
             responses=[{"id": "r1", "status": "submitted", "user_id": "alice", "rating": 4}]),
        _doc(3, "quick thinking dog", length=20, source="web",
             responses=[{"id": "r2", "status": "draft", "user_id": "bob", "rating": 2}]),
    ])
    yield s
    s.close()


def ids(result: dict) -> list[str]:
    return [h["_id"] for h in result["hits"]["hits"]]


def test_match_all_keeps_insertion_order_and_counts(store):
    out = store.search(INDEX, {"match_all": {}}, size=2)
    assert ids(out) == ["id1", "id2"]
    assert out["hits"]["total"]["value"] == 3
    assert ids(store.search(INDEX, None, size=10, from_=2)) == ["id3"]


def test_text_search_is_and_by_default_with_or_prefix_and_exclusion(store):
    q = lambda text, fields=("fields.*",): {"bool": {"must": [{"simple_query_string": {
        "query": text, "fields": list(fields), "default_operator": "AND"}}]}}
    assert sorted(ids(store.search(INDEX, q("quick")))) == ["id1", "id3"]
    assert ids(store.search(INDEX, q("quick dog"))) == ["id3"]
    assert sorted(ids(store.search(INDEX, q("fox | lazy")))) == ["id1", "id2"]
    assert sorted(ids(store.search(INDEX, q("qui*")))) == ["id1", "id3"]
    assert ids(store.search(INDEX, q("dog -lazy"))) == ["id3"]
    assert ids(store.search(INDEX, q('"lazy dog"'))) == ["id2"]
    # one field only: "answer 2" is in `answer`, not in `prompt`
    assert ids(store.search(INDEX, q("answer", ["fields.prompt"]))) == []
    assert len(ids(store.search(INDEX, q("answer", ["fields.answer"])))) == 3
    # punctuation a user types is not FTS syntax
    for text in ('fox"', "(fox)", "fox,", 'AND "fox'):
        assert ids(store.search(INDEX, q(text))) == (["id1"] if "AND" not in text else []), text
    hits = store.search(INDEX, q("quick"))["hits"]["hits"]
    assert all(h["_score"] > 0 for h in hits)


def test_metadata_filters_terms_and_range(store):
    terms = {"bool": {"must": [{"match_all": {}}],
                      "filter": {"bool": {"must": [{"terms": {"metadata.source": ["web"]}}]}}}}
    assert ids(store.search(INDEX, terms)) == ["id1", "id3"]
    rng = {"bool": {"filter": {"range": {"metadata.length": {"gte": 15, "lte": 30}}}}}
    assert ids(store.search(INDEX, rng)) == ["id2", "id3"]


def test_response_status_filters_use_nested_queries(store):
    submitted_by_alice = {"nested": {"path": "responses", "query": {"bool": {"must": [
        {"terms": {"responses.status": ["submitted"]}},
        {"terms": {"responses.user_id": ["alice"]}}]}}}}
    assert ids(store.search(INDEX, submitted_by_alice)) == ["id2"]
    # pending for bob = no response of bob's at all
    pending_for_bob = {"bool": {"must_not": {"term": {"responses.user_id": "bob"}}}}
    assert ids(store.search(INDEX, pending_for_bob)) == ["id1", "id2"]
    no_responses = {"bool": {"must_not": {"exists": {"field": "responses"}}}}
    assert ids(store.search(INDEX, no_responses)) == ["id1"]


def test_sort_by_metadata_dates_and_nested_values(store):
    assert ids(store.search(INDEX, None, sort=[{"metadata.length": "desc"}])) == [
        "id2", "id3", "id1"]
    assert ids(store.search(INDEX, None, sort=[{"inserted_at": "desc"}])) == ["id3", "id2", "id1"]
    nested = [{"responses.rating": {"order": "asc", "mode": "avg",
                                    "nested": {"path": "responses"}}}]
    # missing values sort last in both directions, as in Elasticsearch
    assert ids(store.search(INDEX, None, sort=nested)) == ["id3", "id2", "id1"]


def test_random_score_is_a_stable_per_seed_shuffle(store):
    q = lambda seed: {"function_score": {"query": {"match_all": {}}, "functions": [
        {"random_score": {"seed": seed, "field": "_seq_no"}}]}}
    first = ids(store.search(INDEX, q("alice")))
    assert first == ids(store.search(INDEX, q("alice")))
    assert sorted(first) == ["id1", "id2", "id3"]


def test_aggregations_terms_value_count_stats(store):
    aggs = {"t": {"terms": {"field": "metadata.source", "size": 10}},
            "c": {"value_count": {"field": "responses.status"}},
            "s": {"stats": {"field": "metadata.length"}}}
    out = store.search(INDEX, None, size=0, aggregations=aggs)["aggregations"]
    assert out["t"]["buckets"] == [{"key": "web", "doc_count": 2},
                                   {"key": "books", "doc_count": 1}]
    assert out["c"]["value"] == 2
    assert (out["s"]["min"], out["s"]["max"], out["s"]["count"]) == (10, 30, 3)


def test_partial_updates_and_argilla_scripts(store):
    store.update(INDEX, "id1", {"doc": {"status": "completed", "metadata": {"length": 99}}})
    doc = store.get(INDEX, "id1")
    assert doc["status"] == "completed" and doc["metadata"] == {"length": 99, "source": "web"}
    add = {"script": {"source": "... ctx._source.responses.add(params.response)",
                      "params": {"response": {"id": "r9", "status": "submitted",
                                              "user_id": "carol"}}}}
    store.update(INDEX, "id1", add)
    store.update(INDEX, "id1", add)  # an upsert: replaces, never duplicates
    assert [r["id"] for r in store.get(INDEX, "id1")["responses"]] == ["r9"]
    remove = {"script": {"source": "ctx._source.responses.remove(i)",
                         "params": {"response": {"id": "r9"}}}}
    store.update(INDEX, "id1", remove)
    assert store.get(INDEX, "id1")["responses"] == []
    store.update(INDEX, "id1", {"doc": {"suggestions": {"q": {"value": 1}}}})
    store.update(INDEX, "id1", {"script": 'ctx._source["suggestions"].remove("q")'})
    assert store.get(INDEX, "id1")["suggestions"] == {}
    with pytest.raises(UnsupportedQuery):
        store.update(INDEX, "id1", {"script": "ctx._source.x = 1"})


def test_delete_documents_and_index(store):
    store.bulk([{"_op_type": "delete", "_index": INDEX, "_id": "id2"}])
    assert ids(store.search(INDEX, None)) == ["id1", "id3"]
    q = {"simple_query_string": {"query": "lazy", "fields": ["fields.*"]}}
    assert ids(store.search(INDEX, q)) == []
    store.delete_index(INDEX)
    assert not store.index_exists(INDEX)
    with pytest.raises(IndexNotFound):
        store.search(INDEX, None)


def test_excluded_fields_are_not_stored(store):
    store.bulk([{**_doc(4, "img", length=1, source="x"), "fields": {"prompt": "img",
                                                                    "image": "data:..."}}])
    assert store.get(INDEX, "id4")["fields"] == {"prompt": "img"}


def test_unsupported_clause_is_an_error_not_a_wrong_answer(store):
    with pytest.raises(UnsupportedQuery, match="regexp"):
        store.search(INDEX, {"regexp": {"fields.prompt": "q.*"}})


def _write_from_another_process(path: str) -> None:
    other = DocumentStore(path)
    other.bulk([_doc(5, "written elsewhere", length=5, source="worker")])
    other.update(INDEX, "id1", {"doc": {"status": "completed"}})
    other.close()


def test_writes_of_another_process_are_seen(store):
    assert store.count(INDEX) == 3  # the reader has a parsed copy now
    p = multiprocessing.get_context("spawn").Process(
        target=_write_from_another_process, args=(str(store.path),))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert store.count(INDEX) == 4
    assert store.get(INDEX, "id1")["status"] == "completed"
    assert ids(store.search(INDEX, {"simple_query_string": {
        "query": "elsewhere", "fields": ["fields.*"]}})) == ["id5"]
