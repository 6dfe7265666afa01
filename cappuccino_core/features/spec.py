"""The feature spec: what a model was trained on, so its inputs can be rebuilt exactly."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

FEATURE_SPEC_VERSION = "1"

# Rows in the trailing volume mean (part of spec version 1, not a tunable parameter).
VOLUME_WINDOW = 20

# How each feature is made scale-free (computed in ``features.indicators``).
FEATURE_TRANSFORMS: dict[str, str] = {
    "open": "log(open_t / close_{t-1})",
    "high": "log(high_t / close_{t-1})",
    "low": "log(low_t / close_{t-1})",
    "close": "log(close_t / close_{t-1})",
    "volume": f"log1p(volume_t) - mean(log1p(volume) over rows t-{VOLUME_WINDOW - 1}..t)",
    "macd": "talib.MACD(close, macd_fast, macd_slow, macd_signal).macd / close_t",
    "macd_signal": "talib.MACD(close, macd_fast, macd_slow, macd_signal).signal / close_t",
    "macd_hist": "talib.MACD(close, macd_fast, macd_slow, macd_signal).hist / close_t",
    "rsi": "talib.RSI(close, rsi_period), raw",
    "cci": "talib.CCI(high, low, close, cci_period), raw",
    "dx": "talib.DX(high, low, close, dx_period), raw",
}

# The 11 features per asset, in the order they appear in the feature tensor.
FEATURE_NAMES: tuple[str, ...] = (
    "open", "high", "low", "close", "volume",
    "macd", "macd_signal", "macd_hist", "rsi", "cci", "dx",
)


@dataclass(frozen=True)
class FeatureSpec:
    """Names, parameters and version of the per-asset features.

    Attributes:
        version: bumped whenever the meaning of any feature changes.
        names: feature names, in tensor order.
        params: indicator parameters (periods), JSON-serialisable.
        transforms: how each feature is made scale-free before normalisation (one line each).
    """

    version: str = FEATURE_SPEC_VERSION
    names: tuple[str, ...] = FEATURE_NAMES
    params: dict[str, Any] = field(
        default_factory=lambda: {
            "macd_fast": 12, "macd_slow": 26, "macd_signal": 9,
            "rsi_period": 14, "cci_period": 14, "dx_period": 14,
        }
    )
    transforms: dict[str, str] = field(default_factory=lambda: dict(FEATURE_TRANSFORMS))

    @property
    def num_features(self) -> int:
        """Number of features per asset."""
        return len(self.names)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {
            "version": self.version,
            "names": list(self.names),
            "params": dict(self.params),
            "transforms": dict(self.transforms),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        """Rebuild a spec from ``to_dict`` output."""
        return cls(
            version=str(data["version"]),
            names=tuple(data["names"]),
            params=dict(data["params"]),
            transforms=dict(data.get("transforms", {})),
        )

    def fingerprint(self) -> str:
        """Return a short hash of the spec; two specs with equal fingerprints build equal inputs."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
