"""Feature normalisation fitted on the training segment only, stored with every model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class FeatureNormalizer:
    """Per asset and feature z-scoring: ``(x - mean) / std``.

    Attributes:
        mean: ``[A, F]`` float64.
        std: ``[A, F]`` float64, never zero (constant features get 1.0).
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray) -> FeatureNormalizer:
        """Fit on ``features`` ``[T, A, F]`` (the training rows only)."""
        if features.ndim != 3 or features.shape[0] < 2:
            raise ValueError(f"need at least 2 rows of [T, A, F] features to fit, got shape {features.shape}")
        if not np.isfinite(features).all():
            raise ValueError("features contain NaN or infinity; refusing to fit a normaliser on them")
        mean = features.mean(axis=0, dtype=np.float64)
        std = features.std(axis=0, dtype=np.float64)
        std = np.where(std > 1e-12, std, 1.0)
        return cls(mean=mean, std=std)

    @classmethod
    def identity(cls, num_assets: int, num_features: int) -> FeatureNormalizer:
        """A normaliser that leaves features as they are (for rule-based policies that ignore them)."""
        return cls(mean=np.zeros((num_assets, num_features)), std=np.ones((num_assets, num_features)))

    def transform(self, features: np.ndarray, clip: float) -> np.ndarray:
        """Return normalised ``float32`` features clipped to ``[-clip, clip]``."""
        if features.shape[1:] != self.mean.shape:
            raise ValueError(
                f"features have {features.shape[1:]} (assets, features) but the normaliser was fitted on {self.mean.shape}"
            )
        out = (features - self.mean) / self.std
        return np.clip(out, -clip, clip).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureNormalizer:
        """Rebuild from ``to_dict`` output."""
        return cls(mean=np.asarray(data["mean"], dtype=np.float64), std=np.asarray(data["std"], dtype=np.float64))
