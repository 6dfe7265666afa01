"""Trading pairs: ``BASE/QUOTE`` in memory, ``BASE-QUOTE`` in file names."""

from __future__ import annotations

import re

_PAIR = re.compile(r"^([A-Z0-9]{2,12})[/-]([A-Z0-9]{2,12})$")


def parse_symbol(text: str) -> str:
    """Return the canonical ``BASE/QUOTE`` form of ``text`` (``btc-usd`` -> ``BTC/USD``).

    Raises:
        ValueError: ``text`` is not a pair of 2-12 alphanumerics joined by ``/`` or ``-``.
    """
    match = _PAIR.match(text.strip().upper())
    if not match:
        raise ValueError(f"invalid symbol {text!r}; expected BASE/QUOTE such as BTC/USD")
    return f"{match.group(1)}/{match.group(2)}"


def symbol_key(symbol: str) -> str:
    """Return the file-name key of a symbol: ``BTC/USD`` -> ``BTC-USD``."""
    return parse_symbol(symbol).replace("/", "-")


def base_asset(symbol: str) -> str:
    """Return the base asset of a symbol: ``BTC/USD`` -> ``BTC``."""
    return parse_symbol(symbol).split("/")[0]
