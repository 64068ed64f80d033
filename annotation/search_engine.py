"""Argilla's search engine, answered by the embedded SQLite document store.

Importing this module registers the engine under ``ENGINE_NAME`` with Argilla's
``SearchEngine.register``. The server picks it when ``ARGILLA_SEARCH_ENGINE`` names it,
and Argilla reads that setting when ``argilla_server`` is first imported, so the
variable must be set before anything imports it (``annotation.server`` does so in
the processes it starts).

The engine subclasses Argilla's ``BaseElasticAndOpenSearchEngine``: Argilla keeps
building its Elasticsearch queries, mappings and documents, and only the low-level
requests (create index, bulk, update, search) land in ``annotation.docstore``.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from pathlib import Path
from typing import Any
from uuid import UUID

from argilla_server.models import VectorSettings
from argilla_server.search_engine.base import SearchEngine
from argilla_server.search_engine.commons import (
    BaseElasticAndOpenSearchEngine,
    es_field_for_vector_settings,
)
from argilla_server.settings import settings

from annotation.docstore import DocumentStore, IndexNotFound, _Query, cosine, values_at

ENGINE_NAME = "align-sqlite"
# where the index lives; by default beside Argilla's own database in its home folder
INDEX_PATH_ENV = "ALIGN_ARGILLA_INDEX"

_stores: dict[str, DocumentStore] = {}


def index_path() -> Path:
    return Path(os.environ.get(INDEX_PATH_ENV) or Path(settings.home_path) / "search-index.sqlite3")


def store_for(path: str | os.PathLike) -> DocumentStore:
    """One store per file per process: Argilla makes a new engine for every request,
    and the parsed index copy must outlive them."""
    key = str(Path(path).resolve())
    if key not in _stores:
        _stores[key] = DocumentStore(key)
    return _stores[key]


@SearchEngine.register(engine_name=ENGINE_NAME)
@dataclasses.dataclass
class SQLiteSearchEngine(BaseElasticAndOpenSearchEngine):
    store: DocumentStore | None = None

    @classmethod
    async def new_instance(cls) -> "SQLiteSearchEngine":
        return cls(number_of_shards=1, number_of_replicas=0, store=store_for(index_path()))

    async def close(self) -> None:
        pass  # the store is shared by every engine of this process

    async def ping(self) -> bool:
        try:
            self.store.indices()
        except sqlite3.Error:
            return False
        return True

    async def info(self) -> dict:
        return {"distribution": ENGINE_NAME, "version": {"number": sqlite3.sqlite_version},
                "path": str(self.store.path)}

    def _mapping_for_vector_settings(self, vector_settings: VectorSettings) -> dict:
        return {es_field_for_vector_settings(vector_settings): {
            "type": "dense_vector", "dims": vector_settings.dimensions}}

    async def _request_similarity_search(self, index: str, vector_settings: VectorSettings,
                                         value: list[float], k: int,
                                         excluded_id: UUID | None = None,
                                         query_filters: list[dict] | None = None) -> dict:
        # brute force: exact cosine similarity over every record that passes the filters
        snap = self.store._snapshot(index)
        query = _Query(self.store, index, snap)
        path = es_field_for_vector_settings(vector_settings)
        hits = []
        for doc_id, doc in snap.docs.items():
            if excluded_id is not None and doc_id == str(excluded_id):
                continue
            if not all(query.matches(f, doc, doc_id) for f in query_filters or []):
                continue
            vector = values_at(doc, path)
            if vector:
                # Elasticsearch's cosine score, mapped into [0, 1]
                hits.append({"_id": doc_id, "_score": (1 + cosine(value, vector)) / 2})
        hits.sort(key=lambda h: -h["_score"])
        return {"hits": {"total": {"value": len(hits)}, "hits": hits[:k]}}

    async def _create_index_request(self, index_name: str, mappings: dict, settings: dict) -> None:
        self.store.create_index(index_name, mappings, settings)

    async def _delete_index_request(self, index_name: str) -> None:
        self.store.delete_index(index_name)

    async def _update_document_request(self, index_name: str, id: str, body: dict) -> None:
        self.store.update(index_name, id, body)

    async def put_index_mapping_request(self, index: str, mappings: dict) -> None:
        self.store.put_mapping(index, mappings)

    async def _index_search_request(self, index: str, query: dict, size: int | None = None,
                                    from_: int | None = None, sort: Any = None,
                                    aggregations: dict | None = None) -> dict:
        return self.store.search(index, query, size=size, from_=from_, sort=sort,
                                 aggregations=aggregations)

    async def _index_exists_request(self, index_name: str) -> bool:
        return self.store.index_exists(index_name)

    async def _bulk_op_request(self, actions: list[dict[str, Any]]) -> None:
        for error in self.store.bulk(actions):
            self._LOGGER.error(f"Error in bulk operation: {error}")


async def reindex(dataset_id: UUID | None = None) -> dict[str, int]:
    """Rebuild the index of every dataset (or one) from Argilla's database.
    Returns {dataset name: records indexed}."""
    from argilla_server.cli.search_engine.reindex import Reindexer
    from argilla_server.database import AsyncSessionLocal

    counts: dict[str, int] = {}
    async with AsyncSessionLocal() as db:
        async with SearchEngine.get_by_name(ENGINE_NAME) as engine:
            if dataset_id is not None:
                datasets = [await Reindexer.reindex_dataset(db, engine, dataset_id)]
            else:
                datasets = [d async for d in Reindexer.reindex_datasets(db, engine)]
            for dataset in datasets:
                counts[dataset.name] = 0
                async for records in Reindexer.reindex_dataset_records(db, engine, dataset):
                    counts[dataset.name] += len(records)
    return counts


__all__ = ["ENGINE_NAME", "SQLiteSearchEngine", "reindex", "index_path", "store_for",
           "IndexNotFound"]
