"""Publishing a flow run's result to the Prefect UI as a markdown artifact."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE


@task(cache_policy=NONE)
def publish_markdown(key: str, markdown: str, description: str) -> str:
    """Publish ``markdown`` as the artifact ``key`` of the running flow; return the artifact's id."""
    return str(create_markdown_artifact(markdown=markdown, key=key, description=description))
