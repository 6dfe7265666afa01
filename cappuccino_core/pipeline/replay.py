"""The offline lifecycle: sandbox, promotion and paper production replayed over the replay period.

When history ends with a period that neither the search nor the arena saw (the split
``search | arena holdout | replay``), the pipeline walks the arena's promoted models through
the rest of the lifecycle on those bars, doing bar by bar what the scheduled flows do hour by
hour in real time:

1. the promoted models enter the sandbox at the first replay bar (``sandbox_days`` each);
2. on every bar, with the site's clock at the bar's close: the sandbox runs step, the runs
   whose period is over are decided against the production model (``promotion``), and the
   production model steps on its paper account;
3. at the end the green light is judged on the production model's last 2 days
   (``replay_green_light``).

The replay's clock walks the bars of the base interval, as the hourly deployments do, and
each trader acts by the same rule as there (``trading.bars_provider.closed_bar``): a 4h model
on the base bar that closes one of its bars, on that 4h bar, and on no other.

The replay site trades only ``SimBroker`` accounts in the project database: the Alpaca keys
and the live switch are removed from its settings, so a replay never sends an order anywhere.
Every step is idempotent (journal rows, the accounts' last bar), so a re-run continues where a
failed one stopped and repeats nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from cappuccino_core.clock import FixedClock, ensure_utc
from cappuccino_core.config import Settings
from cappuccino_core.data.intervals import Interval
from cappuccino_core.db import default_database_url, make_engine
from cappuccino_core.features.panel import MarketPanel
from cappuccino_core.operations.live import judge_green_light
from cappuccino_core.operations.production import step_production
from cappuccino_core.operations.challenge import WHO, promote_finished_runs
from cappuccino_core.operations.sandbox_entry import enter_sandbox, waiting_for_sandbox
from cappuccino_core.operations.site import LifecycleSite, model_loader
from cappuccino_core.lifecycle.stages import Role, Stage
from cappuccino_core.tracking.store import tracking_uri
from cappuccino_core.trading.bars_provider import PanelBarProvider
from cappuccino_core.trading.clock import ReplayBarClock

logger = logging.getLogger(__name__)


@dataclass
class ReplayReport:
    """What a replay did: who entered the sandbox, every promotion decision, the steps, who holds production."""

    start: datetime
    end: datetime
    bars: int
    admitted: list[str] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    steps: dict[str, dict[str, int]] = field(default_factory=dict)
    production: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "bars": self.bars,
                "admitted": self.admitted, "decisions": self.decisions, "steps": self.steps,
                "production": self.production}


def replay_site(settings: Settings, bars: PanelBarProvider, clock: FixedClock) -> LifecycleSite:
    """Return a site that trades the replay's bars on simulated accounts only, on ``clock``.

    ``bars`` are the clock's (base-interval) bars; each model trades ``bars.at(its interval)``.
    The settings keep the home (project database, MLflow store) but lose every key: the paper
    broker is a ``SimBroker`` and live trading is impossible.
    """
    offline = settings.model_copy(update={
        "alpaca_api_key": None, "alpaca_secret_key": None,
        "live_enabled": False, "live_api_key": None, "live_secret_key": None, "live_capital": None,
    })
    uri = tracking_uri(settings.home)
    return LifecycleSite(offline, make_engine(default_database_url(settings.home)), bars,
                         cache(model_loader(uri)), clock, uri)


@dataclass(frozen=True)
class ReplayPlan:
    """The bars a training study left for the replay, and the site and clock that trade them.

    ``panel`` is the study's panel (its models' interval); ``bar_times`` are the clock's bars
    (the base interval, ``site.bars``).
    """

    site: LifecycleSite
    clock: FixedClock
    panel: MarketPanel
    bar_times: list[datetime]


def plan_replay(settings: Settings, panel: MarketPanel, start: datetime, end: datetime, *,
                build: Callable[[Interval], MarketPanel] | None = None) -> ReplayPlan:
    """Open a replay of the bars in ``[start, end)`` (the study's replay period) on a fresh clock.

    The clock walks the base interval's bars (``settings.base_interval``); ``build`` makes the
    same market's panel at another interval (the base one when ``panel`` is longer, and the
    interval of any other model that trades in the replay).

    Raises:
        ValueError: there is no bar in the period, or the base interval's bars cannot be built.
    """
    bars = PanelBarProvider(panel, build=build).at(settings.base_interval)
    bar_times = replay_bar_times(bars.panel, start, end)
    clock = FixedClock(bar_times[0])
    return ReplayPlan(replay_site(settings, bars, clock), clock, panel, bar_times)


def replay_bar_times(panel: MarketPanel, start: datetime, end: datetime) -> list[datetime]:
    """Open times of the panel's bars that lie wholly in ``[start, end)``.

    Raises:
        ValueError: there is no such bar.
    """
    from cappuccino_core.search.split import rows_between

    rows = rows_between(panel, ensure_utc(start), ensure_utc(end))
    return list(ReplayBarClock.from_timestamps_ns(rows.timestamps, panel.interval))


def replay_lifecycle(plan: ReplayPlan, promoted: Sequence[str], *, sandbox_days: float) -> ReplayReport:
    """Walk ``promoted`` through sandbox, promotion and paper production on ``bar_times``.

    Raises:
        ValueError: no bars to replay.
    """
    site, clock, bar_times = plan.site, plan.clock, plan.bar_times
    if not bar_times:
        raise ValueError("there are no replay bars: set replay_weeks (CAPPUCCINO_REPLAY_WEEKS) > 0")
    interval = site.bars.interval.timedelta  # the clock's: each trader acts on the bars of its own interval
    first, last = ensure_utc(bar_times[0]), ensure_utc(bar_times[-1])
    report = ReplayReport(first, last + interval, len(bar_times))
    _advance(clock, first)
    sandbox = site.sandbox()
    for model_id in waiting_for_sandbox(site, list(promoted)):
        run = enter_sandbox(site, sandbox, model_id, who=WHO, why="promoted by the arena (offline replay)",
                            at=first, start=first, period=timedelta(days=sandbox_days))
        report.admitted.append(run.trader_id)
    steps: dict[str, Counter[str]] = {}
    for bar in bar_times:
        closed = ensure_utc(bar) + interval
        _advance(clock, closed)
        for trader_id, outcome in sandbox.step_all(bar).items():
            steps.setdefault(trader_id, Counter())[str(outcome.status)] += 1
        decided = promote_finished_runs(site, sandbox, at=closed)
        if decided.promoted or decided.retired:
            report.decisions.append(decided.to_dict())
        holder = site.store.holder(Role.PRODUCTION)
        since = None if holder is None else _production_since(site, holder)
        if since is None or closed < since:
            continue  # a model trades production only from the close it became production (a re-run too)
        stepped = step_production(site, bar)
        if stepped is not None:
            steps.setdefault(f"production:{stepped.model_id}", Counter())[stepped.status] += 1
    report.steps = {k: dict(v) for k, v in steps.items()}
    report.production = site.store.holder(Role.PRODUCTION)
    site.mirror()
    return report


def replay_green_light(plan: ReplayPlan) -> dict[str, Any]:
    """Judge the green light for the replay's production model at the end of the replay (a ``GateCheck`` dict)."""
    end = plan.bar_times[-1] + plan.site.bars.interval.timedelta
    _advance(plan.clock, end)
    return judge_green_light(plan.site, at=end).to_dict()


def _production_since(site: LifecycleSite, model_id: str) -> datetime | None:
    """When ``model_id`` last became the production model."""
    moves = [t for t in site.store.transitions(model_id) if t.to_stage is Stage.PRODUCTION]
    return moves[-1].at if moves else None


def _advance(clock: FixedClock, at: datetime) -> None:
    """Move the replay clock forward to ``at`` (a re-run starts a new clock, so never backwards here)."""
    if at > clock.now():
        clock.set(at)
