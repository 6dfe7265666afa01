"""Admission: registered candidates enter the arena, in the order they were registered.

A candidate is a version of the registered model (default ``cappuccino-ppo``) with the tag
``stage=candidate`` (``registry.models.register_candidate``), or ``stage=arena`` if the
lifecycle has already recorded it as an arena entrant. Admission registers every such
version the arena does not know yet as an entrant, in version order (MLflow numbers versions
in registration order), with its id ``models:/<name>/<version>`` and its ``study`` tag, which
is how the arena loads it (``expected_study``) and finds its holdout (``study_market``).

Versions that already left an arena (tag ``arena_status`` ``eliminated`` or ``promoted``, set
by the mirror) are not admitted again. Admission is idempotent: an entrant is registered once,
and a run that crashed half-way admits the rest next time, in the same order.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cappuccino_core.arena.state import EntrantState
from cappuccino_core.arena.tournament import Arena
from cappuccino_core.registry.models import (  # noqa: F401 (parse_version_uri re-exported)
    CANDIDATE_STAGE,
    DEFAULT_MODEL_NAME,
    RegisteredVersion,
    all_versions,
    parse_version_uri,
    version_uri,
)

if TYPE_CHECKING:
    from cappuccino_core.tracking.store import TrackingClient

logger = logging.getLogger(__name__)

STATUS_TAG = "arena_status"
"""Model-version tag the mirror sets: ``king``, ``eliminated`` or ``promoted``."""
LEFT = frozenset({"eliminated", "promoted"})
ENTRY_STAGES = frozenset({CANDIDATE_STAGE, "arena"})
"""Values of the version tag ``stage`` that admission accepts (``lifecycle.stages``: arena)."""


def candidate_versions(client: TrackingClient, model_name: str = DEFAULT_MODEL_NAME) -> list[RegisteredVersion]:
    """Return the versions of ``model_name`` whose ``stage`` tag is an entry stage, in registration order."""
    # Filtered here, not in the search: not every store supports IN on tags.
    return [v for v in all_versions(client, model_name) if v.tags.get("stage") in ENTRY_STAGES]


def admit_candidates(arena: Arena, client: TrackingClient, *, model_name: str = DEFAULT_MODEL_NAME) -> list[EntrantState]:
    """Register every candidate version the arena does not know yet; return the new entrants in order.

    Raises:
        ValueError: a candidate version has no ``study`` tag (it cannot be loaded or placed).
    """
    known = {e.candidate_id for e in arena.status().entrants}
    admitted: list[EntrantState] = []
    for version in candidate_versions(client, model_name):
        candidate_id = version_uri(model_name, version.version)
        if candidate_id in known:
            continue
        if version.tags.get(STATUS_TAG) in LEFT:
            logger.info("%s already left an arena (%s=%s); not admitted", candidate_id, STATUS_TAG,
                        version.tags[STATUS_TAG])
            continue
        study = version.tags.get("study")
        if not study:
            raise ValueError(f"{candidate_id} is tagged stage={version.tags['stage']} but has no study tag")
        registered_at = datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC)
        admitted.append(arena.register(candidate_id, registered_at=registered_at, study=study))
    if admitted:
        logger.info("arena %s: admitted %d candidate(s): %s", arena.arena_id, len(admitted),
                    ", ".join(e.candidate_id for e in admitted))
    return admitted
