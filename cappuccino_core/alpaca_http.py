"""HTTP plumbing shared by the Alpaca adapters (market data and trading)."""

from __future__ import annotations

import logging
from typing import Any

import requests

logger = logging.getLogger(__name__)


class TimeoutSession(requests.Session):
    """A ``requests`` session that gives every request a timeout (alpaca-py sets none)."""

    def __init__(self, timeout_seconds: float) -> None:
        super().__init__()
        self._timeout_seconds = timeout_seconds

    def request(  # type: ignore[override]
        self, method: str, url: str, *args: Any, **kwargs: Any
    ) -> requests.Response:
        """Send the request with the session's timeout unless one is given."""
        kwargs.setdefault("timeout", self._timeout_seconds)
        response = super().request(method, url, *args, **kwargs)
        logger.debug("%s %s -> HTTP %s", method, response.url, response.status_code)
        return response


# Network failures worth a retry (429 and 5xx replies are judged by status code by each adapter).
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
