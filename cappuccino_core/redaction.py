"""Keeping secrets out of messages: scrubbing known values, the secret parts of URLs, log filters.

Secret values are the configured keys and notification URLs. A notification URL hides its
token in its own syntax (``json://host/TOKEN``, ``discord://ID/TOKEN``, ``mailto://user:PASS@host``,
``...?token=VALUE``), where masking the whole URL does not catch the token quoted alone, and
Apprise's privacy form does not mask every scheme's path. So:

* ``url_secret_parts`` names the parts of a URL that may be a credential: the user and
  password, every path segment and every query value that looks like a token (it holds a
  digit, or is at least 16 characters long); these are scrubbed like the URL itself;
* ``describe_url`` is the only way a URL is shown: scheme, host and port, nothing after;
* ``ScrubFilter`` scrubs log records (message and arguments) before any handler writes them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

REDACTED = "***"
MIN_SECRET_LENGTH = 4
_TOKEN_LENGTH = 16
_DIGIT = re.compile(r"\d")


def scrub(text: str, secrets: Sequence[str]) -> str:
    """Return ``text`` with every occurrence of every secret replaced by ``***`` (longest first)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def _looks_like_token(part: str) -> bool:
    return len(part) >= MIN_SECRET_LENGTH and (bool(_DIGIT.search(part)) or len(part) >= _TOKEN_LENGTH)


def url_secret_parts(url: str) -> tuple[str, ...]:
    """Return the parts of ``url`` that may be credentials (see the module docstring), raw and unquoted."""
    try:
        split = urlsplit(url)
        user, password = split.username, split.password
    except ValueError:  # not parseable as a URL: the whole value is the secret
        return (url,)
    parts: list[str] = [p for p in (user, password) if p and len(p) >= MIN_SECRET_LENGTH]
    parts += [seg for seg in split.path.split("/") if _looks_like_token(seg)]
    parts += [value for _key, value in parse_qsl(split.query, keep_blank_values=False) if _looks_like_token(value)]
    return tuple(dict.fromkeys(p for part in parts for p in (part, unquote(part))))


def describe_url(url: str) -> str:
    """Return ``scheme://host[:port]`` of ``url``: never its user, password, path or query."""
    try:
        split = urlsplit(url)
        host = split.hostname or "?"
        port = f":{split.port}" if split.port else ""
    except ValueError:
        return "(unparseable URL)"
    return f"{split.scheme or '?'}://{host}{port}"


def secrets_with_url_parts(secrets: Iterable[str], urls: Iterable[str]) -> tuple[str, ...]:
    """Return ``secrets`` plus every URL and its secret parts, empty values dropped, each once."""
    values = [s for s in secrets if s] + [p for url in urls if url for p in (url, *url_secret_parts(url))]
    return tuple(dict.fromkeys(values))


class ScrubFilter(logging.Filter):
    """A logging filter that replaces secret values in a record's message (arguments included) by ``***``."""

    def __init__(self, secrets: Sequence[str]) -> None:
        """Scrub ``secrets`` (empty values are ignored) from every record the filter sees."""
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the record's message, scrub it, and keep the record (never drops one)."""
        if self.secrets:
            message = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.msg, record.args = scrub(message, self.secrets), ()
            if record.exc_text:
                record.exc_text = scrub(record.exc_text, self.secrets)
        return True


def install_scrub_filter(secrets: Sequence[str], loggers: Iterable[logging.Logger] = ()) -> ScrubFilter | None:
    """Scrub ``secrets`` from every record of the root logger's handlers and of ``loggers``.

    Returns the filter (``None`` when there is nothing to scrub). Idempotent per secret set:
    an earlier Cappuccino filter on the same handler is replaced.
    """
    secrets = tuple(s for s in secrets if s)
    if not secrets:
        return None
    scrubber = ScrubFilter(secrets)
    targets: list[logging.Filterer] = [*logging.getLogger().handlers, *loggers]
    for target in targets:
        for old in [f for f in target.filters if isinstance(f, ScrubFilter)]:
            target.removeFilter(old)
        target.addFilter(scrubber)
    return scrubber
