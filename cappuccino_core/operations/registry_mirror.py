"""The lifecycle mirrored into MLflow: a ``stage`` tag on every version, ``production``/``live`` aliases.

The project database is the source of truth; MLflow shows it. ``mirror_lifecycle`` makes the
registry match the store: every model version in the lifecycle gets the tag ``stage`` (its
current stage), the alias ``production`` points at the production holder and ``live`` at the
live holder, and an alias whose role is free (or held by a version of another registered
model) is removed. It only writes what differs, so it is idempotent and cheap to run after
every move (or to repair MLflow after an outage: the next run converges).

Versions never entered in the lifecycle keep their ``stage`` tag (``candidate`` while they
wait for the arena).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cappuccino_core.lifecycle.stages import Role
from cappuccino_core.lifecycle.store import LifecycleStore
from cappuccino_core.registry.models import parse_version_uri, set_alias, set_version_tag, version_uri

if TYPE_CHECKING:
    from cappuccino_core.tracking.store import TrackingClient

logger = logging.getLogger(__name__)

STAGE_TAG = "stage"
GREEN_LIGHT_TAG = "green_light"
ALIASES: Mapping[Role, str] = {Role.PRODUCTION: "production", Role.LIVE: "live"}


# The lifecycle names a model by its registry version id (one definition, in the registry).
model_id_for = version_uri
parse_model_id = parse_version_uri


@dataclass(frozen=True)
class MirrorReport:
    """What one ``mirror_lifecycle`` changed in MLflow."""

    tags_set: tuple[str, ...]
    aliases_set: tuple[str, ...]
    aliases_removed: tuple[str, ...]


def mirror_lifecycle(store: LifecycleStore, client: TrackingClient) -> MirrorReport:
    """Make MLflow's ``stage`` tags and ``production``/``live`` aliases match the store.

    Raises:
        ValueError: a lifecycle id is not a registered model version.
        LookupError: a lifecycle model is missing from the registry.
        mlflow.exceptions.MlflowException: MLflow refused a change (the next run retries it).
    """
    tags_set, aliases_set, removed = [], [], []
    wanted_stages: dict[str, dict[str, str]] = {}
    for model in store.models():
        name, version = parse_model_id(model.model_id)
        wanted_stages.setdefault(name, {})[version] = str(model.stage)
    names = set(wanted_stages)
    for name, stages in sorted(wanted_stages.items()):
        shown = _stage_tags(client, name)
        for version, stage in sorted(stages.items(), key=lambda item: int(item[0])):
            if version not in shown:
                raise LookupError(f"models:/{name}/{version} is in the lifecycle but not in the MLflow registry")
            if shown[version] != stage:
                set_version_tag(client, name, version, STAGE_TAG, stage)
                tags_set.append(f"{model_id_for(name, version)}={stage}")
    holders = store.holders()
    for name in sorted(names):
        # MLflow reports alias targets as ints or strings depending on the store: compare as text.
        current = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
        for role, alias in ALIASES.items():
            holder = holders[role]
            wanted = None
            if holder is not None:
                holder_name, holder_version = parse_model_id(holder)
                wanted = holder_version if holder_name == name else None
            if wanted is not None and current.get(alias) != wanted:
                set_alias(client, name, alias, wanted)
                aliases_set.append(f"{name}@{alias}={wanted}")
            elif wanted is None and alias in current:
                client.delete_registered_model_alias(name, alias)
                removed.append(f"{name}@{alias}")
    if tags_set or aliases_set or removed:
        logger.info("lifecycle mirror: tags %s; aliases set %s; removed %s", tags_set, aliases_set, removed)
    return MirrorReport(tuple(tags_set), tuple(aliases_set), tuple(removed))


def _stage_tags(client: TrackingClient, name: str) -> dict[str, str | None]:
    """Return the ``stage`` tag of every version of ``name`` (one paged search, not one call per version)."""
    if "'" in name:
        raise ValueError(f"model names with single quotes cannot be searched: {name!r}")
    found: dict[str, str | None] = {}
    token = None
    while True:
        page = client.search_model_versions(f"name = '{name}'", max_results=1000, page_token=token)
        found.update({str(v.version): v.tags.get(STAGE_TAG) for v in page})
        token = page.token
        if not token:
            return found


def mirror_gate_decision(client: TrackingClient, model_id: str, decision: Mapping[str, Any]) -> None:
    """Tag the version with a green-light decision: ``green_light`` and one tag per rule.

    ``decision`` is ``GreenLightDecision.to_dict()``: tags ``green_light`` (``allowed`` or
    ``refused``), ``green_light.decided_at`` and ``green_light.<rule>`` (``value op threshold:
    pass|fail``). The full decision is in the database (``LifecycleStore.gate_decisions``).
    """
    name, version = parse_model_id(model_id)
    set_version_tag(client, name, version, GREEN_LIGHT_TAG, "allowed" if decision["allowed"] else "refused")
    set_version_tag(client, name, version, f"{GREEN_LIGHT_TAG}.decided_at", str(decision["decided_at"]))
    for rule in decision["rules"]:
        outcome = "pass" if rule["passed"] else "fail"
        set_version_tag(client, name, version, f"{GREEN_LIGHT_TAG}.{rule['name']}",
                        f"{rule['value']} {rule['comparison']} {rule['threshold']}: {outcome}")
