"""Demotion: a live model that broke a limit goes back to paper (or out), and its live book is flattened.

``demote_live`` moves the live model, as one recorded transition, to the configured target:

* ``production`` (default, "back to paper"). A model that held both roles keeps the
  production role: paper trading goes on with it exactly as before it went live, so the
  production model is restored as it was. If the role is free it takes it. If another model
  holds production (a sandbox winner beat it on paper while it was live), the demoted model
  is retired instead, and the result says so.
* ``retired``. The model gives up every role; a production role left free is filled by the
  next promotion (the best qualifying sandbox model).

The transition is recorded **before** the live book is flattened: if the broker then fails,
the model is already out of live (no new live orders), the error propagates, and
``close_all`` can be retried.

``enforce_verdict`` is the monitor's response to a ``MonitorVerdict``: nothing below
critical; a demotion at critical; a demotion and the kill switch's halt at emergency.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cappuccino_core.lifecycle.kill_switch import KillSwitch
from cappuccino_core.lifecycle.stages import Role, Stage
from cappuccino_core.lifecycle.store import LifecycleStore, Transition
from cappuccino_core.lifecycle.verdict import MonitorVerdict
from cappuccino_core.trading.broker import Broker, Order

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemotionConfig:
    """Where a demoted live model goes, and whether its live positions are closed."""

    target: Stage = Stage.PRODUCTION  # production (back to paper) or retired
    flatten: bool = True  # close every live position (and cancel open orders) on demotion

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", Stage(self.target))
        if self.target not in (Stage.PRODUCTION, Stage.RETIRED):
            raise ValueError(f"a live model is demoted to production or retired, not {self.target}")


class NoLiveModel(LookupError):
    """There is no live model to demote."""


@dataclass(frozen=True)
class DemotionResult:
    """What a demotion did."""

    model_id: str
    transition: Transition
    production_after: str | None
    closing_orders: tuple[Order, ...]
    flattened: bool

    def to_dict(self) -> dict[str, Any]:
        """Return the result as a JSON-ready dict."""
        return {"model_id": self.model_id, "transition": self.transition.to_dict(),
                "production_after": self.production_after, "flattened": self.flattened,
                "closing_orders": [{"id": o.id, "symbol": o.symbol, "qty": o.qty, "status": str(o.status)}
                                   for o in self.closing_orders]}


def demote_live(
    store: LifecycleStore,
    *,
    reason: str,
    who: str,
    at: datetime,
    figures: Mapping[str, Any] | None = None,
    broker: Broker | None = None,
    config: DemotionConfig | None = None,
) -> DemotionResult:
    """Demote the live model (see the module docstring) and flatten its live account.

    Args:
        store: the lifecycle store.
        reason: why (e.g. the monitor's breached limits).
        who: who or what demotes (``monitor``, a person).
        at: when (UTC).
        figures: the numbers behind it (e.g. ``MonitorVerdict.to_dict()``).
        broker: the live account; required when ``config.flatten``.
        config: target stage and flattening (default: back to production, flatten).

    Raises:
        NoLiveModel: no model is live.
        ValueError: ``flatten`` without a broker.
        TransitionRefused: the state changed concurrently (nothing was moved).
        BrokerError: flattening failed (the model is already demoted).
    """
    config = config or DemotionConfig()
    if config.flatten and broker is None:
        raise ValueError("demotion with flatten=True needs the live broker")
    holders = store.holders()
    live = holders[Role.LIVE]
    if live is None:
        raise NoLiveModel("no model is live; nothing to demote")
    target, why = config.target, reason
    production = holders[Role.PRODUCTION]
    if target is Stage.PRODUCTION and production not in (None, live):
        target = Stage.RETIRED
        why = f"{reason} (retired, not returned to paper: {production} holds production)"
    details = {**dict(figures or {}), "demotion": {"requested": str(config.target), "flatten": config.flatten,
                                                    "held_production": production == live}}
    transition = store.move(live, target, who=who, why=why, at=at, figures=details)
    logger.warning("demoted %s from live to %s: %s", live, target, why)
    closing: tuple[Order, ...] = ()
    if config.flatten:
        assert broker is not None
        closing = tuple(broker.close_all())
        logger.warning("demotion of %s: placed %d closing order(s) on the live account", live, len(closing))
    return DemotionResult(live, transition, store.holder(Role.PRODUCTION), closing, config.flatten)


def enforce_verdict(
    store: LifecycleStore,
    verdict: MonitorVerdict,
    *,
    switch: KillSwitch,
    who: str,
    broker: Broker | None = None,
    config: DemotionConfig | None = None,
) -> DemotionResult | None:
    """Act on a live monitor's verdict: demote at critical; demote and halt trading at emergency.

    Returns the demotion, or ``None`` when the verdict is below critical (nothing done).

    Raises:
        NoLiveModel: the verdict breaks a limit but no model is live.
        (and what ``demote_live`` raises)
    """
    if not verdict.demote:
        return None
    reason = f"live limits broken ({', '.join(verdict.breached)}): " + "; ".join(verdict.reasons())
    if verdict.stop_trading:
        switch.halt(reason=reason, who=who, at=verdict.as_of)
    return demote_live(store, reason=reason, who=who, at=verdict.as_of, figures={"verdict": verdict.to_dict()},
                       broker=broker, config=config)
