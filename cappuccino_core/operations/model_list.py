"""Every registered model version with its lifecycle stage, its aliases and its arena record (``cappuccino models list``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cappuccino_core.arena.standing import DEFAULT_ARENA
from cappuccino_core.arena.store import ArenaStore
from cappuccino_core.config import Settings
from cappuccino_core.db import create_schema, default_database_url, make_engine, session_factory
from cappuccino_core.lifecycle.store import LifecycleStore
from cappuccino_core.registry.models import all_versions, model_aliases, version_uri
from cappuccino_core.study.storage import sqlite_path
from cappuccino_core.tracking.store import client as mlflow_client
from cappuccino_core.tracking.store import tracking_uri


def list_models(settings: Settings, *, arena_id: str = DEFAULT_ARENA) -> list[dict[str, Any]]:
    """Return one dict per version of the settings' registered model, oldest first.

    Each has the version, its model id, the study and trial it came from, when it was
    registered, its stage (the project database's, else the registry's ``stage`` tag), its
    aliases, and its arena record (status, the match that decided it, why) when it entered the arena.
    """
    uri = tracking_uri(settings.home)
    store_file = sqlite_path(uri)
    if store_file is not None and not store_file.exists():
        return []  # nothing registered yet; looking must not create the store
    client = mlflow_client(uri)
    versions = all_versions(client, settings.model_name)
    # A searched version carries no aliases on every store (SQLite's leaves them empty): read the model's.
    aliases_of: dict[str, list[str]] = {}
    for alias, version in model_aliases(client, settings.model_name).items():
        aliases_of.setdefault(str(version), []).append(alias)
    url = default_database_url(settings.home)
    path = sqlite_path(url)
    stages: dict[str, str] = {}
    arena: dict[str, Any] = {}
    if path is None or path.exists():
        engine = make_engine(url)
        create_schema(engine)
        store = LifecycleStore(engine)
        stages = {model_id: str(stage) for v in versions
                  if (stage := store.stage_of(model_id := version_uri(settings.model_name, v.version))) is not None}
        try:
            arena = {e.candidate_id: e for e in ArenaStore(session_factory(engine)).status(arena_id).entrants}
        except KeyError:  # no arena yet
            arena = {}
    out = []
    for v in versions:
        model_id = version_uri(settings.model_name, v.version)
        entrant = arena.get(model_id)
        out.append({
            "version": int(v.version), "model_id": model_id, "study": v.tags.get("study"), "trial": v.tags.get("trial"),
            "registered_at": datetime.fromtimestamp(v.creation_timestamp / 1000, UTC).isoformat(),
            "stage": stages.get(model_id, v.tags.get("stage")), "aliases": sorted(aliases_of.get(str(v.version), [])),
            "arena": None if entrant is None else {"status": str(entrant.status), "decided_in_match": entrant.decided_in_match,
                                                   "reason": None if entrant.reason is None else str(entrant.reason)},
        })
    return out
