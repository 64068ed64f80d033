"""An embedded document store that answers the subset of the Elasticsearch query
language Argilla's server speaks, kept in one SQLite file.

Argilla needs Elasticsearch or OpenSearch for its record index. For a local
annotation server that is a JVM and gigabytes of memory to search a few thousand
records, so ``annotation.search_engine`` answers Argilla's low-level requests with
this store instead. Argilla keeps building its own queries; the store interprets them.

Layout:
- ``indices``: one row per index (name, mappings, a generation that changes when
  the index is re-created);
- ``docs``: one row per document: JSON source, ``pos`` (first insertion order, the
  tie-breaker Elasticsearch uses for equal scores) and ``seq`` (bumped on every
  write; a deleted document keeps a row with NULL source until the index is dropped);
- ``text``: an FTS5 table, one row per (document, text field) plus a ``*`` row with
  every field together, for ``simple_query_string``.

Several processes share the file (the web server and the background worker), so each
process keeps a parsed copy of an index and, before every read, fetches only the rows
whose ``seq`` moved since. Queries are evaluated in Python over that copy: at tens of
thousands of records a filter pass costs milliseconds.

Supported query DSL: match_all, bool (must/filter/should/must_not,
minimum_should_match), term, terms, range, exists, ids, nested, simple_query_string,
function_score with random_score. Sort: field order, nested sort with mode
avg/min/max/sum and a filter. Aggregations: terms, value_count, stats. Anything else
raises ``UnsupportedQuery`` naming the clause, rather than answering wrongly.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sqlite3
import threading
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable

SCHEMA = """
CREATE TABLE IF NOT EXISTS indices (
    name TEXT PRIMARY KEY, mappings TEXT NOT NULL, settings TEXT NOT NULL,
    generation TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS docs (
    index_name TEXT NOT NULL, id TEXT NOT NULL, source TEXT, pos INTEGER NOT NULL,
    seq INTEGER NOT NULL, PRIMARY KEY (index_name, id));
CREATE INDEX IF NOT EXISTS docs_seq ON docs (index_name, seq);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS text USING fts5 (
    body, index_name UNINDEXED, doc_id UNINDEXED, field UNINDEXED);
-- which FTS rows belong to a document: filtering FTS5 on an UNINDEXED column scans
-- the whole table, which made every re-index quadratic
CREATE TABLE IF NOT EXISTS text_rows (
    index_name TEXT NOT NULL, doc_id TEXT NOT NULL, fts_rowid INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS text_rows_doc ON text_rows (index_name, doc_id);
"""


class UnsupportedQuery(ValueError):
    """A query clause this store does not implement."""


class IndexNotFound(KeyError):
    pass


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot store {type(value).__name__} in a document")


def to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def normalise(value: Any) -> Any:
    """What a document looks like once stored: plain JSON types only."""
    return json.loads(to_json(value))


@dataclass
class _CachedIndex:
    generation: str
    seq: int = 0
    docs: dict[str, dict] = field(default_factory=dict)
    pos: dict[str, int] = field(default_factory=dict)


class DocumentStore:
    """One SQLite file of indices. Safe to share between threads of one process."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._pid = -1
        self._conn: sqlite3.Connection | None = None
        self._cache: dict[str, _CachedIndex] = {}

    # -- connection ---------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        # a forked worker must not reuse its parent's connection
        if self._conn is None or self._pid != os.getpid():
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            self._conn, self._pid, self._cache = conn, os.getpid(), {}
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn, self._cache = None, {}

    def _write(self, fn, *args):
        with self._lock:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn, *args)
                conn.execute("COMMIT")
                return out
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @staticmethod
    def _next(conn: sqlite3.Connection, name: str, n: int = 1) -> int:
        conn.execute("INSERT OR IGNORE INTO counters VALUES (?, 0)", (name,))
        conn.execute("UPDATE counters SET value = value + ? WHERE name = ?", (n, name))
        return conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]

    # -- indices ------------------------------------------------------------------
    def create_index(self, name: str, mappings: dict | None = None,
                     settings: dict | None = None) -> None:
        def op(conn):
            if conn.execute("SELECT 1 FROM indices WHERE name = ?", (name,)).fetchone():
                raise ValueError(f"index {name} already exists")
            conn.execute("INSERT INTO indices VALUES (?, ?, ?, ?)",
                         (name, to_json(mappings or {}), to_json(settings or {}),
                          uuid.uuid4().hex))
        self._write(op)

    def delete_index(self, name: str) -> None:
        def op(conn):
            conn.execute("DELETE FROM indices WHERE name = ?", (name,))
            conn.execute("DELETE FROM docs WHERE index_name = ?", (name,))
            conn.execute("DELETE FROM text WHERE index_name = ?", (name,))
            conn.execute("DELETE FROM text_rows WHERE index_name = ?", (name,))
        self._write(op)
        self._cache.pop(name, None)

    def index_exists(self, name: str) -> bool:
        with self._lock:
            return self.conn.execute(
                "SELECT 1 FROM indices WHERE name = ?", (name,)).fetchone() is not None

    def indices(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self.conn.execute("SELECT name FROM indices ORDER BY name")]

    def mappings(self, name: str) -> dict:
        with self._lock:
            row = self.conn.execute(
                "SELECT mappings FROM indices WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise IndexNotFound(name)
        return json.loads(row[0])

    def put_mapping(self, name: str, properties: dict) -> None:
        def op(conn):
            row = conn.execute("SELECT mappings FROM indices WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise IndexNotFound(name)
            mappings = json.loads(row[0])
            mappings.setdefault("properties", {}).update(normalise(properties))
            conn.execute("UPDATE indices SET mappings = ? WHERE name = ?",
                         (to_json(mappings), name))
        self._write(op)

    # -- documents ----------------------------------------------------------------
    def _excluded_fields(self, conn, index: str) -> list[str]:
        row = conn.execute("SELECT mappings FROM indices WHERE name = ?", (index,)).fetchone()
        if row is None:
            raise IndexNotFound(index)
        return json.loads(row[0]).get("_source", {}).get("excludes", [])

    def _put(self, conn, index: str, doc_id: str, source: dict, excludes: list[str]) -> None:
        for path in excludes:
            _delete_path(source, path)
        seq = self._next(conn, "seq")
        row = conn.execute("SELECT pos FROM docs WHERE index_name = ? AND id = ?",
                           (index, doc_id)).fetchone()
        pos = row[0] if row else self._next(conn, "pos")
        conn.execute("INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?, ?)",
                     (index, doc_id, to_json(source), pos, seq))
        self._drop_text(conn, index, doc_id)
        texts = _text_fields(source.get("fields") or {})
        rows = [(body, index, doc_id, name) for name, body in texts.items() if body]
        if rows:
            rows.append(("\n".join(b for b, *_ in rows), index, doc_id, "*"))
            for row in rows:
                rowid = conn.execute("INSERT INTO text VALUES (?, ?, ?, ?)", row).lastrowid
                conn.execute("INSERT INTO text_rows VALUES (?, ?, ?)", (index, doc_id, rowid))

    @staticmethod
    def _drop_text(conn, index: str, doc_id: str) -> None:
        conn.execute("DELETE FROM text WHERE rowid IN (SELECT fts_rowid FROM text_rows "
                     "WHERE index_name = ? AND doc_id = ?)", (index, doc_id))
        conn.execute("DELETE FROM text_rows WHERE index_name = ? AND doc_id = ?", (index, doc_id))

    def _remove(self, conn, index: str, doc_id: str) -> None:
        seq = self._next(conn, "seq")
        conn.execute("UPDATE docs SET source = NULL, seq = ? WHERE index_name = ? AND id = ?",
                     (seq, index, doc_id))
        self._drop_text(conn, index, doc_id)

    def bulk(self, actions: Iterable[dict]) -> list[str]:
        """Elasticsearch-style bulk actions (``_op_type`` index/delete); returns errors."""
        errors: list[str] = []

        def op(conn):
            excludes: dict[str, list[str]] = {}
            for action in actions:
                action = dict(action)
                kind = action.pop("_op_type", "index")
                index, doc_id = action.pop("_index"), str(action.pop("_id"))
                if index not in excludes:
                    try:
                        excludes[index] = self._excluded_fields(conn, index)
                    except IndexNotFound:
                        errors.append(f"{kind} {doc_id}: index {index} not found")
                        continue
                if kind == "index":
                    self._put(conn, index, doc_id, normalise(action), excludes[index])
                elif kind == "delete":
                    self._remove(conn, index, doc_id)
                else:
                    errors.append(f"{kind} {doc_id}: unsupported bulk operation")
        self._write(op)
        return errors

    def get(self, index: str, doc_id: str) -> dict | None:
        return self._snapshot(index).docs.get(str(doc_id))

    def update(self, index: str, doc_id: str, body: dict) -> None:
        """A partial update: ``{"doc": {...}}`` (deep merge) or one of the scripts
        Argilla sends (response upsert/removal, suggestion removal)."""
        def op(conn):
            row = conn.execute("SELECT source FROM docs WHERE index_name = ? AND id = ?",
                               (index, doc_id)).fetchone()
            if row is None or row[0] is None:
                raise KeyError(f"document {doc_id} not found in index {index}")
            source = json.loads(row[0])
            if "doc" in body:
                _deep_merge(source, normalise(body["doc"]))
            elif "script" in body:
                _apply_script(source, body["script"])
            else:
                raise UnsupportedQuery(f"update body with keys {sorted(body)}")
            self._put(conn, index, doc_id, source, self._excluded_fields(conn, index))
        self._write(op)

    # -- reading ------------------------------------------------------------------
    def _snapshot(self, index: str) -> _CachedIndex:
        with self._lock:
            conn = self.conn
            row = conn.execute("SELECT generation FROM indices WHERE name = ?",
                               (index,)).fetchone()
            if row is None:
                self._cache.pop(index, None)
                raise IndexNotFound(index)
            cached = self._cache.get(index)
            if cached is None or cached.generation != row[0]:
                cached = self._cache[index] = _CachedIndex(generation=row[0])
            for doc_id, source, pos, seq in conn.execute(
                    "SELECT id, source, pos, seq FROM docs WHERE index_name = ? AND seq > ?",
                    (index, cached.seq)):
                if source is None:
                    cached.docs.pop(doc_id, None)
                    cached.pos.pop(doc_id, None)
                else:
                    cached.docs[doc_id], cached.pos[doc_id] = json.loads(source), pos
                cached.seq = max(cached.seq, seq)
            return cached

    def count(self, index: str) -> int:
        return len(self._snapshot(index).docs)

    def search(self, index: str, query: dict | None = None, *, size: int | None = 10,
               from_: int | None = 0, sort: list | dict | None = None,
               aggregations: dict | None = None) -> dict:
        """An Elasticsearch search response: hits (ids and scores), total, aggregations."""
        snap = self._snapshot(index)
        matcher = _Query(self, index, snap)
        scored = matcher.run(query or {"match_all": {}})
        ids = sorted(scored, key=lambda i: snap.pos[i])
        if sort:
            ids = _sort(ids, snap, sort)
            hits = [{"_id": i, "_score": None} for i in ids]
        else:
            ids.sort(key=lambda i: -scored[i])  # stable: equal scores stay in insertion order
            hits = [{"_id": i, "_score": scored[i]} for i in ids]
        start = from_ or 0
        end = None if size is None else start + size
        out: dict[str, Any] = {"hits": {"total": {"value": len(ids), "relation": "eq"},
                                        "hits": hits[start:end]}}
        if aggregations:
            docs = [snap.docs[i] for i in ids]
            out["aggregations"] = {name: _aggregate(spec, docs)
                                   for name, spec in aggregations.items()}
        return out

    # -- full text ----------------------------------------------------------------
    def text_scores(self, index: str, query: str, fields: list[str]) -> dict[str, float]:
        """Document id -> relevance for a ``simple_query_string`` over ``fields``."""
        names = set()
        for f in fields:
            f = f.removeprefix("fields.")
            names.add("*" if f in ("*", "") else f.removesuffix(".*"))
        positive, negative = _parse_simple_query(query)
        with self._lock:
            conn = self.conn
            placeholders = ",".join("?" * len(names))
            sql = ("SELECT doc_id, -bm25(text) FROM text WHERE text MATCH ? AND index_name = ? "
                   f"AND field IN ({placeholders})")
            scores: dict[str, float] = {}
            if positive:
                for doc_id, score in conn.execute(sql, (positive, index, *names)):
                    scores[doc_id] = max(scores.get(doc_id, 0.0), score)
            else:  # only exclusions: every document starts in
                scores = {i: 1.0 for i in self._snapshot(index).docs}
            if negative:
                for doc_id, _ in conn.execute(sql, (negative, index, *names)):
                    scores.pop(doc_id, None)
        return scores


# -- text helpers -----------------------------------------------------------------
def _text_fields(fields: dict) -> dict[str, str]:
    out = {}
    for name, value in fields.items():
        if isinstance(value, str):
            out[name] = value
        elif isinstance(value, list):  # a chat: [{"role", "content"}, ...]
            out[name] = "\n".join(str(m.get("content", "")) for m in value
                                  if isinstance(m, dict))
        elif value is not None:
            out[name] = str(value)
    return out


_TOKEN = re.compile(r'(-?)"([^"]*)"\*?|(\|)|(\S+)')


def _fts_term(text: str, prefix: bool) -> str | None:
    text = text.strip()
    if not re.search(r"\w", text):
        return None  # stray punctuation: nothing the tokenizer would index
    quoted = '"' + text.replace('"', '""') + '"'
    return quoted + ("*" if prefix else "")


def _parse_simple_query(query: str) -> tuple[str, str]:
    """Translate Elasticsearch simple_query_string (AND by default, ``|`` for OR,
    ``-`` to exclude, ``"phrases"``, ``prefix*``) into two FTS5 expressions:
    what must match, and what must not."""
    groups: list[list[str]] = [[]]
    negative: list[str] = []
    or_next = False
    for neg_q, phrase, bar, word in _TOKEN.findall(query):
        if bar:
            or_next = True
            continue
        neg = bool(neg_q)
        if word:
            neg = word.startswith("-") and len(word) > 1
            word = word[1:] if neg else word.lstrip("+")
            term = _fts_term(word.rstrip("*"), word.endswith("*"))
        else:
            term = _fts_term(phrase, False)
        if term is None:
            continue
        if neg:
            negative.append(term)
        elif or_next and groups[-1]:
            groups[-1][-1] = f"({groups[-1][-1]} OR {term})"
        else:
            groups[-1].append(term)
        or_next = False
    positive = " AND ".join(groups[0])
    return positive, " OR ".join(negative)


# -- document helpers ---------------------------------------------------------------
def _deep_merge(target: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = value


def _delete_path(doc: dict, dotted: str) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        doc = doc.get(part)
        if not isinstance(doc, dict):
            return
    doc.pop(parts[-1], None)


_REMOVE_KEY = re.compile(r'ctx\._source\["([^"]+)"\]\.remove\("([^"]*)"\)')


def _apply_script(source: dict, script: dict | str) -> None:
    """The painless scripts Argilla sends, recognised by what they do."""
    if isinstance(script, str):
        m = _REMOVE_KEY.fullmatch(script.strip())
        if not m:
            raise UnsupportedQuery(f"script {script!r}")
        parent = source.get(m.group(1))
        if isinstance(parent, dict):
            parent.pop(m.group(2), None)
        return
    code, params = script.get("source", ""), normalise(script.get("params", {}))
    response = params.get("response")
    if response is None or "responses" not in code:
        raise UnsupportedQuery(f"script {code.strip()[:80]!r}")
    responses = [r for r in (source.get("responses") or []) if r.get("id") != response["id"]]
    if ".add(params.response)" in code:
        responses.append(response)
    source["responses"] = responses


def values_at(doc: Any, path: str) -> list:
    """Every value at a dotted path; lists are walked through, as Elasticsearch
    flattens arrays of objects."""
    # fast path: plain nested objects, the common case
    node = doc
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part)
            if node is None:
                return []
        else:
            break
    else:
        return [v for v in node if v is not None] if isinstance(node, list) else [node]
    # a list part-way down the path: walk every element
    current = [doc]
    for part in path.split("."):
        nxt = []
        for item in current:
            if isinstance(item, list):
                item_list = item
            else:
                item_list = [item]
            for it in item_list:
                if isinstance(it, dict) and part in it:
                    nxt.append(it[part])
        current = nxt
    out: list = []
    for item in current:
        if isinstance(item, list):
            out.extend(v for v in item if v is not None)
        elif item is not None:
            out.append(item)
    return out


def _as_list(clause: Any) -> list:
    if clause is None:
        return []
    return clause if isinstance(clause, list) else [clause]


def _comparable(value: Any, bound: Any) -> tuple[Any, Any] | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return value, float(bound)
        except (TypeError, ValueError):
            return None
    if isinstance(value, str):
        if isinstance(bound, (datetime, date)):
            bound = bound.isoformat()
        return value, str(bound)
    return None


def _in_range(value: Any, spec: dict) -> bool:
    for op, bound in spec.items():
        if op in ("format", "time_zone", "boost"):
            continue
        pair = _comparable(value, bound)
        if pair is None:
            return False
        v, b = pair
        ok = {"gte": v >= b, "gt": v > b, "lte": v <= b, "lt": v < b}.get(op)
        if ok is None:
            raise UnsupportedQuery(f"range operator {op}")
        if not ok:
            return False
    return True


Predicate = Callable[[dict, "str | None"], bool]


def _terms_set(values: Iterable) -> tuple[set[str], set[float]]:
    """Strings and numbers to compare against, as Elasticsearch coerces a term."""
    strings, numbers = set(), set()
    for v in values:
        strings.add(str(v).lower() if isinstance(v, bool) else str(v))
        try:
            numbers.add(float(v))
        except (TypeError, ValueError):
            pass
    return strings, numbers


def _in_terms(value: Any, strings: set[str], numbers: set[float]) -> bool:
    if isinstance(value, bool):
        return str(value).lower() in strings
    if isinstance(value, (int, float)):
        return float(value) in numbers
    return str(value) in strings


class _Query:
    """Compiles a query once into a predicate, then evaluates it over one index
    snapshot: returns {doc id: score}."""

    def __init__(self, store: DocumentStore | None, index: str, snap: _CachedIndex):
        self.store, self.index, self.snap = store, index, snap
        self._text: dict[str, dict[str, float]] = {}
        self._compiled: dict[str, Predicate] = {}

    def run(self, query: dict) -> dict[str, float]:
        if set(query) == {"function_score"}:
            spec = query["function_score"]
            inner = self.run(spec.get("query") or {"match_all": {}})
            for fn in spec.get("functions", []):
                if "random_score" not in fn:
                    raise UnsupportedQuery(f"function_score function {sorted(fn)}")
                seed = str(fn["random_score"].get("seed", ""))
                for doc_id in inner:
                    digest = hashlib.sha1(f"{seed}:{doc_id}".encode()).digest()
                    inner[doc_id] *= int.from_bytes(digest[:6], "big") / float(1 << 48)
            return inner
        text = self._text_clauses(query)
        test = self.compile(query)
        if text is None:
            return {i: 1.0 for i, d in self.snap.docs.items() if test(d, i)}
        return {i: s for i, s in text.items()
                if i in self.snap.docs and test(self.snap.docs[i], i)}

    def _text_clauses(self, query: dict) -> dict[str, float] | None:
        """Scores from the full-text parts of a query (None when it has none)."""
        (kind, spec), = query.items()
        if kind == "simple_query_string":
            return self._text_scores(spec)
        if kind == "bool":
            scores = None
            for clause in _as_list(spec.get("must")):
                part = self._text_clauses(clause)
                if part is not None:
                    scores = part if scores is None else {
                        k: v + part[k] for k, v in scores.items() if k in part}
            return scores
        return None

    def _text_scores(self, spec: dict) -> dict[str, float]:
        key = to_json(spec)
        if key not in self._text:
            self._text[key] = self.store.text_scores(
                self.index, spec["query"], spec.get("fields", ["*"]))
        return self._text[key]

    def matches(self, query: dict, doc: dict, doc_id: str | None = None) -> bool:
        return self.compile(query)(doc, doc_id)

    def compile(self, query: dict) -> Predicate:
        key = to_json(query)
        if key not in self._compiled:
            self._compiled[key] = self._compile(query)
        return self._compiled[key]

    def _compile(self, query: dict) -> Predicate:
        if len(query) != 1:
            raise UnsupportedQuery(f"query with clauses {sorted(query)}")
        (kind, spec), = query.items()
        if kind == "match_all":
            return lambda doc, doc_id: True
        if kind == "simple_query_string":
            hits = self._text_scores(spec)
            return lambda doc, doc_id: doc_id in hits
        if kind == "bool":
            return self._compile_bool(spec)
        if kind == "ids":
            wanted = {str(v) for v in spec["values"]}
            return lambda doc, doc_id: doc_id in wanted
        if kind == "nested":
            path, inner = spec["path"], self._compile(spec["query"])
            return lambda doc, doc_id: any(
                inner({path: item}, doc_id) for item in values_at(doc, path)
                if isinstance(item, dict))
        if kind == "exists":
            name = spec["field"]
            return lambda doc, doc_id: bool(values_at(doc, name))
        (name, arg), = spec.items()
        if kind in ("term", "terms"):
            if kind == "term":
                arg = [arg.get("value") if isinstance(arg, dict) else arg]
            strings, numbers = _terms_set(arg)
            return lambda doc, doc_id: any(
                _in_terms(v, strings, numbers) for v in values_at(doc, name))
        if kind == "range":
            return lambda doc, doc_id: any(_in_range(v, arg) for v in values_at(doc, name))
        raise UnsupportedQuery(f"query clause `{kind}`")

    def _compile_bool(self, spec: dict) -> Predicate:
        must = [self._compile(c) for c in _as_list(spec.get("must")) + _as_list(spec.get("filter"))]
        must_not = [self._compile(c) for c in _as_list(spec.get("must_not"))]
        should = [self._compile(c) for c in _as_list(spec.get("should"))]
        needed = spec.get("minimum_should_match")
        if needed is None:
            needed = 0 if (spec.get("must") or spec.get("filter")) else 1
        needed = int(needed) if should else 0

        def test(doc: dict, doc_id: str | None) -> bool:
            for t in must:
                if not t(doc, doc_id):
                    return False
            for t in must_not:
                if t(doc, doc_id):
                    return False
            return not needed or sum(t(doc, doc_id) for t in should) >= needed
        return test


def _sort_value(doc: dict, name: str, spec: dict, store_query: _Query) -> Any:
    nested = spec.get("nested")
    if nested:
        path = nested["path"]
        items = [it for it in values_at(doc, path) if isinstance(it, dict)]
        if "filter" in nested:
            items = [it for it in items if store_query.matches(nested["filter"], {path: it})]
        values = [v for it in items for v in values_at({path: it}, name)]
    else:
        values = values_at(doc, name)
    values = [v for v in values if not isinstance(v, (dict, list))]
    if not values:
        return None
    mode = spec.get("mode") or ("max" if spec.get("order") == "desc" else "min")
    numeric = all(isinstance(v, (int, float)) for v in values)
    if mode == "avg" and numeric:
        return sum(values) / len(values)
    if mode == "sum" and numeric:
        return sum(values)
    return max(values) if mode == "max" else min(values)


def _sort(ids: list[str], snap: _CachedIndex, sort: list | dict) -> list[str]:
    query = _Query(None, "", snap)  # type: ignore[arg-type]
    # stable multi-key sort: apply keys from last to first
    for entry in reversed(_as_list(sort)):
        if isinstance(entry, str):
            name, spec = entry, {"order": "asc"}
        else:
            (name, spec), = entry.items()
            if isinstance(spec, str):
                spec = {"order": spec}
        desc = str(spec.get("order", "asc")).lower() == "desc"
        keyed = [(_sort_value(snap.docs[i], name, spec, query), i) for i in ids]
        present = [(v, i) for v, i in keyed if v is not None]
        missing = [i for v, i in keyed if v is None]  # missing values sort last either way
        present.sort(key=lambda p: _sort_key(p[0]), reverse=desc)
        ids = [i for _, i in present] + missing
    return ids


def _sort_key(value: Any) -> tuple:
    if isinstance(value, bool):
        return (0, int(value), "")
    if isinstance(value, (int, float)):
        return (0, value, "")
    return (1, 0, str(value))


def _aggregate(spec: dict, docs: list[dict]) -> dict:
    (kind, args), = ((k, v) for k, v in spec.items() if k != "meta")
    name = args["field"]
    if kind == "terms":
        counts: dict[Any, int] = {}
        for doc in docs:
            for v in {to_json(x) for x in values_at(doc, name)}:
                counts[v] = counts.get(v, 0) + 1
        buckets = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        size = args.get("size", 10)
        return {"buckets": [{"key": json.loads(k), "doc_count": n}
                            for k, n in buckets[:size]],
                "sum_other_doc_count": sum(n for _, n in buckets[size:])}
    if kind == "value_count":
        return {"value": sum(len(values_at(doc, name)) for doc in docs)}
    if kind == "stats":
        nums = [v for doc in docs for v in values_at(doc, name)
                if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not nums:
            return {"count": 0, "min": None, "max": None, "avg": None, "sum": 0.0}
        return {"count": len(nums), "min": min(nums), "max": max(nums),
                "avg": sum(nums) / len(nums), "sum": float(sum(nums))}
    raise UnsupportedQuery(f"aggregation `{kind}`")


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0
