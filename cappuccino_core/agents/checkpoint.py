"""Checkpoints: a directory holding the weights (``actor.pt``) and their model card.

The card says everything needed to rebuild the model's inputs exactly (feature spec, symbols
in order, interval, lookback, normalisation, action mapping, env and PPO configs) and pins the
weights by SHA-256, so a loaded model is either the one that was saved or an error.

Card format 2 adds ``architecture`` (``networks.*.describe()``: the network's kind and what
rebuilds it). A format-1 card has none and always described the dense MLP
(``ActorCritic``), so it loads with that architecture, exactly as it was trained; a card of a
format newer than this code reads is refused with one line saying so.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
from dataclasses import MISSING, asdict, dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

import cappuccino_core
from cappuccino_core.agents.config import Architecture
from cappuccino_core.agents.networks import ActorCritic, AssetEncoderActorCritic, PolicyNetwork, SharedTrunkActorCritic
from cappuccino_core.env.protocol import ObservationLayout
from cappuccino_core.features.spec import FeatureSpec

WEIGHTS_FILE = "actor.pt"
CARD_FILE = "model_card.json"
CARD_FORMAT_VERSION = 2
MLP_ARCHITECTURE: dict[str, Any] = {"kind": str(Architecture.MLP)}
"""What a card without ``architecture`` (format 1) describes: the dense MLP."""


class CheckpointError(RuntimeError):
    """A checkpoint directory is missing, incomplete, corrupt or does not match its card."""


class ModelMismatchError(ValueError):
    """A model's card disagrees with the inputs it would be fed.

    Attributes:
        differences: one sentence per thing that differs.
    """

    def __init__(self, differences: list[str]) -> None:
        self.differences = differences
        super().__init__("model does not match the given inputs: " + "; ".join(differences))


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to rebuild a model's inputs and to trust its weights.

    Attributes:
        feature_spec: ``FeatureSpec.to_dict()`` of the features the model was trained on.
        interval: bar interval string (``Interval`` value, e.g. ``"1h"``).
        lookback: bars per observation window.
        symbols: symbols in observation/action order (e.g. ``("BTC/USD", ...)``).
        normalisation: feature normalisation, e.g. ``{"mean": [[...]], "std": [[...]]}`` as
            asset x feature lists.
        action_mapping: how actions become target weights (the env's description of it).
        env_config: the environment's config as a JSON-serialisable dict.
        ppo_config: ``PPOConfig.to_dict()``; its ``activation`` is needed to rebuild the net.
        obs_dim: observation length.
        action_dim: action length.
        hidden_sizes: hidden-layer widths of actor and critic.
        data_hash: hash of the training data.
        seed: training seed.
        library_versions: python, torch, numpy, cappuccino (see ``library_versions()``).
        created_at: UTC-aware ISO-8601 time, passed in by the caller (no clock in core).
        weights_sha256: SHA-256 of ``actor.pt``; filled in by ``save_checkpoint``.
        study: Optuna study name, if any.
        trial: Optuna trial number, if any.
        format_version: version of this card's layout.
        architecture: the network (``describe()`` of it); None means the dense MLP, the only
            architecture of format-1 cards.
    """

    feature_spec: dict[str, Any]
    interval: str
    lookback: int
    symbols: tuple[str, ...]
    normalisation: dict[str, Any]
    action_mapping: dict[str, Any]
    env_config: dict[str, Any]
    ppo_config: dict[str, Any]
    obs_dim: int
    action_dim: int
    hidden_sizes: tuple[int, ...]
    data_hash: str
    seed: int
    library_versions: dict[str, str]
    created_at: str
    weights_sha256: str = ""
    study: str | None = None
    trial: int | None = None
    format_version: int = CARD_FORMAT_VERSION
    architecture: dict[str, Any] | None = None

    @property
    def network(self) -> dict[str, Any]:
        """The architecture the weights belong to (the dense MLP when the card names none)."""
        return dict(self.architecture) if self.architecture is not None else dict(MLP_ARCHITECTURE)

    def __post_init__(self) -> None:
        """Coerce JSON lists to tuples and check ``created_at`` is UTC-aware ISO-8601."""
        object.__setattr__(self, "symbols", tuple(self.symbols))
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        object.__setattr__(self, "interval", str(self.interval))
        try:
            created = datetime.fromisoformat(self.created_at)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"created_at is not an ISO-8601 time: {self.created_at!r}") from exc
        if created.utcoffset() is None:
            raise ValueError(f"created_at must carry a time zone (UTC): {self.created_at!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        data = asdict(self)
        data["symbols"] = list(self.symbols)
        data["hidden_sizes"] = list(self.hidden_sizes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Rebuild a card from ``to_dict`` output; raise ValueError on missing or unknown keys."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown model card fields: {unknown}")
        required = {f.name for f in fields(cls) if f.default is MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f"model card is missing fields: {missing}")
        return cls(**data)


def library_versions() -> dict[str, str]:
    """Return the versions that matter for reproducing a model."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cappuccino": cappuccino_core.__version__,
    }


def save_checkpoint(
    path: str | Path, agent: PolicyNetwork, card: ModelCard, *, overwrite: bool = False
) -> ModelCard:
    """Write ``actor.pt`` and ``model_card.json`` into directory ``path``; return the card saved.

    The returned card has ``weights_sha256`` filled in. The weights are written first and the
    card last, each atomically, so a directory with a card always has its weights.

    Raises:
        ValueError: the card's dimensions or activation disagree with ``agent``.
        FileExistsError: ``path`` already holds a checkpoint and ``overwrite`` is False.
    """
    _check_card_describes(card, agent)
    directory = Path(path)
    if (directory / CARD_FILE).exists() and not overwrite:
        raise FileExistsError(f"{directory} already holds a checkpoint (pass overwrite=True)")
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    weights = buffer.getvalue()
    saved = replace(card, weights_sha256=hashlib.sha256(weights).hexdigest())
    _write_atomically(directory / WEIGHTS_FILE, weights)
    card_json = json.dumps(saved.to_dict(), indent=2, sort_keys=True) + "\n"
    _write_atomically(directory / CARD_FILE, card_json.encode())
    return saved


def load_checkpoint(path: str | Path) -> tuple[PolicyNetwork, ModelCard]:
    """Load a checkpoint directory, verifying the weights against the card's SHA-256.

    The network is the one the card's ``architecture`` names (a format-1 card: the dense MLP).

    Raises:
        CheckpointError: the card or weights file is missing, unreadable, corrupt, of a newer
            format, names an unknown architecture, or the weights do not match the card. The
            message names the file.
    """
    directory = Path(path)
    card = _read_card(directory / CARD_FILE)
    if card.format_version > CARD_FORMAT_VERSION:
        raise CheckpointError(
            f"{directory / CARD_FILE}: model card format {card.format_version} is newer than this "
            f"cappuccino reads (up to {CARD_FORMAT_VERSION}); upgrade cappuccino to load it"
        )
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: weights file is missing")
    weights = weights_path.read_bytes()
    digest = hashlib.sha256(weights).hexdigest()
    if digest != card.weights_sha256:
        raise CheckpointError(
            f"{weights_path}: weights file does not match its model card "
            f"(sha256 {digest[:12]}..., card says {card.weights_sha256[:12]}...; "
            f"{len(weights)} bytes): tampered, truncated or from another checkpoint"
        )
    try:
        state_dict = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises zip, pickle and runtime errors here; re-raise as ours
        raise CheckpointError(f"{weights_path}: weights file is corrupt: {exc}") from exc
    activation = card.ppo_config.get("activation")
    if activation is None:
        raise CheckpointError(f"{directory / CARD_FILE}: ppo_config has no 'activation'")
    agent = _build_network(card, activation, directory / CARD_FILE)
    try:
        agent.load_state_dict(state_dict)
    except (RuntimeError, TypeError) as exc:
        raise CheckpointError(
            f"{weights_path}: weights do not fit the network described by the card: {exc}"
        ) from exc
    agent.eval()
    return agent, card


def check_compatible(
    card: ModelCard,
    *,
    feature_spec: FeatureSpec,
    symbols: tuple[str, ...] | list[str],
    interval: str | None = None,
    lookback: int | None = None,
) -> None:
    """Raise ModelMismatchError listing every way ``card`` disagrees with the given inputs.

    Symbols must match as a set and in order (order fixes which action moves which asset).
    ``interval`` and ``lookback`` are checked only when given.
    """
    differences: list[str] = []
    card_spec = FeatureSpec.from_dict(card.feature_spec)
    if card_spec.version != feature_spec.version:
        differences.append(f"feature spec version: model {card_spec.version!r}, "
                           f"given {feature_spec.version!r}")
    if card_spec.fingerprint() != feature_spec.fingerprint():
        differences.append(f"feature spec fingerprint: model {card_spec.fingerprint()}, "
                           f"given {feature_spec.fingerprint()}")
    given = tuple(symbols)
    if set(given) != set(card.symbols):
        missing = sorted(set(card.symbols) - set(given))
        extra = sorted(set(given) - set(card.symbols))
        differences.append(f"symbol set: model {list(card.symbols)}, given {list(given)} "
                           f"(missing {missing}, extra {extra})")
    elif given != card.symbols:
        differences.append(f"symbol order: model {list(card.symbols)}, given {list(given)}")
    if interval is not None and str(interval) != card.interval:
        differences.append(f"interval: model {card.interval!r}, given {str(interval)!r}")
    if lookback is not None and lookback != card.lookback:
        differences.append(f"lookback: model {card.lookback}, given {lookback}")
    if differences:
        raise ModelMismatchError(differences)


def _build_network(card: ModelCard, activation: str, card_path: Path) -> PolicyNetwork:
    """Build the (untrained) network the card describes."""
    spec = card.network
    try:
        kind = Architecture(spec.get("kind"))
    except ValueError:
        raise CheckpointError(f"{card_path}: unknown network architecture {spec.get('kind')!r}") from None
    if kind is Architecture.MLP:
        return ActorCritic(card.obs_dim, card.action_dim, card.hidden_sizes, activation)
    if kind is Architecture.SHARED_TRUNK:
        return SharedTrunkActorCritic(card.obs_dim, card.action_dim, card.hidden_sizes, activation)
    try:
        layout = ObservationLayout(int(spec["num_assets"]), int(spec["lookback"]), int(spec["num_features"]))
        encoder_sizes = tuple(int(w) for w in spec["encoder_sizes"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{card_path}: architecture {kind} does not say {exc}") from None
    if layout.obs_dim != card.obs_dim:
        raise CheckpointError(f"{card_path}: architecture reads observations of {layout.obs_dim} values, "
                              f"the card says obs_dim {card.obs_dim}")
    return AssetEncoderActorCritic(layout, card.action_dim, card.hidden_sizes, activation,
                                   encoder_sizes=encoder_sizes)


def _read_card(card_path: Path) -> ModelCard:
    if not card_path.is_file():
        raise CheckpointError(f"{card_path}: model card is missing (not a checkpoint directory?)")
    try:
        return ModelCard.from_dict(json.loads(card_path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"{card_path}: model card is unreadable: {exc}") from exc


def _check_card_describes(card: ModelCard, agent: PolicyNetwork) -> None:
    pairs = {
        "architecture": (card.network, agent.describe()),
        "obs_dim": (card.obs_dim, agent.obs_dim),
        "action_dim": (card.action_dim, agent.action_dim),
        "hidden_sizes": (card.hidden_sizes, agent.hidden_sizes),
        "ppo_config.activation": (card.ppo_config.get("activation"), str(agent.activation)),
    }
    for name, (in_card, in_agent) in pairs.items():
        if in_card != in_agent:
            raise ValueError(f"model card {name}={in_card!r} but the agent has {in_agent!r}")


def _write_atomically(target: Path, data: bytes) -> None:
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
