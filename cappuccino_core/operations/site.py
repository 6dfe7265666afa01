"""The lifecycle site: everything the lifecycle flows work with, opened once from the settings.

One ``LifecycleSite`` holds the project database (stages, journal, accounts, alerts, halt
flag), the bars every trader decides on, how models are loaded, the clock, the MLflow store
the stages are mirrored into, and the brokers:

* **Paper** (the production model): the Alpaca *paper* account when the Alpaca keys
  (``APCA_API_KEY_ID``/``APCA_API_SECRET_KEY``) are set, otherwise a ``SimBroker`` account
  of its own (``production_cash``) in the project database. One Alpaca paper account is
  shared by successive production models (a new one starts from the positions the previous
  one left); a SimBroker account is one per production model and starts flat.
* **Live**: the Alpaca *live* account, and only when ``live_enabled`` is set **and** the
  separate live keys (``CAPPUCCINO_LIVE_API_KEY``/``CAPPUCCINO_LIVE_SECRET_KEY``) and
  ``live_capital`` are configured (``live_readiness``). The paper/data keys never trade
  live, so no setting alone can put real money at risk.

Models are referred to by their lifecycle id, ``models:/<name>/<version>``; ``model_loader``
loads those through the registry loader (``registry.loader.load_policy``: the weights and card
verified against the SHA-256 recorded at registration, the registry tags against the card) and
nothing else: a checkpoint directory or run URI never trades. Sandbox, production, live and
the offline replay all load through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from cappuccino_core.clock import Clock, SystemClock
from cappuccino_core.config import Settings
from cappuccino_core.data.store import BarStore
from cappuccino_core.db import default_database_url, make_engine
from cappuccino_core.lifecycle.alerts import AlertLevel, AlertOutcome, Alerts
from cappuccino_core.lifecycle.kill_switch import KillSwitch
from cappuccino_core.lifecycle.store import LifecycleStore
from cappuccino_core.tracking.store import tracking_uri
from cappuccino_core.trading.bars_provider import BarProvider, StoreBarProvider
from cappuccino_core.trading.broker import Broker

# MLflow, torch (models, SimBroker, journals) and alpaca-py are imported where they are used:
# the status board opens a site only to read the database.
if TYPE_CHECKING:
    from cappuccino_core.accounting import ExecutionCosts
    from cappuccino_core.operations.registry_mirror import MirrorReport
    from cappuccino_core.tracking.store import TrackingClient
    from cappuccino_core.trading.alpaca_broker import AlpacaBroker
    from cappuccino_core.trading.journal import TradeJournal
    from cappuccino_core.trading.model import TradingModel
    from cappuccino_core.sandbox.runner import ModelLoader, Sandbox


class LiveNotAllowed(RuntimeError):
    """Live trading is not enabled, or its keys or capital are missing (the message says which)."""


@dataclass(frozen=True)
class LiveReadiness:
    """Whether the configuration allows trading real money, and if not, what is missing."""

    ready: bool
    missing: tuple[str, ...]

    @property
    def message(self) -> str:
        """One line for the owner: ready, or each missing piece and the variable that sets it."""
        return "live trading is configured" if self.ready else "live trading is not allowed: " + "; ".join(self.missing)


def live_readiness(settings: Settings) -> LiveReadiness:
    """Return whether live trading is allowed: ``live_enabled`` **and** live keys **and** ``live_capital``."""
    missing = []
    if not settings.live_enabled:
        missing.append("live trading is disabled (set CAPPUCCINO_LIVE_ENABLED=true)")
    if not settings.has_live_keys:
        missing.append("no live Alpaca keys (set CAPPUCCINO_LIVE_API_KEY and CAPPUCCINO_LIVE_SECRET_KEY)")
    if settings.live_capital is None:
        missing.append("no live capital (set CAPPUCCINO_LIVE_CAPITAL)")
    return LiveReadiness(not missing, tuple(missing))


def model_loader(tracking: str) -> ModelLoader:
    """Return the loader of every model that trades: registered versions ``models:/<name>/<version>`` only.

    Raises (from the returned loader):
        ModelNotFoundError: the reference is not a registered version, or names none.
        ModelIntegrityError: the version's files are not the ones registered.
        ModelMismatchError: the registry tags (study, trial, data, feature spec) contradict the card.
    """

    def load(ref: str) -> TradingModel:
        from cappuccino_core.registry.loader import ModelNotFoundError, load_policy
        from cappuccino_core.registry.models import parse_version_uri
        from cappuccino_core.trading.model import TradingModel

        try:
            parse_version_uri(ref)
        except ValueError:
            raise ModelNotFoundError(f"{ref}: only a registered model version (models:/<name>/<version>) "
                                     "may trade") from None
        loaded = load_policy(ref, None, tracking_uri=tracking)
        return TradingModel.from_card(ref, loaded.policy, loaded.normalizer, loaded.env_config, loaded.card)

    return load


@dataclass
class LifecycleSite:
    """The database, bars, model loader, clock, MLflow store and brokers of one Cappuccino home.

    Attributes:
        settings: the settings everything else follows.
        engine: the project database.
        bars: the bars traders decide on and replays are built from.
        load_model: loads a model from its lifecycle id.
        clock: the wall clock.
        tracking: the MLflow store stages are mirrored into (``None``: no mirror, for tests of the core).
    """

    settings: Settings
    engine: Engine
    bars: BarProvider
    load_model: ModelLoader
    clock: Clock = field(default_factory=SystemClock)
    tracking: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock | None = None,
                      database_url: str | None = None) -> LifecycleSite:
        """Open the site of ``settings``: SQLite under the home (or ``database_url``), the bar store, MLflow."""
        uri = tracking_uri(settings.home)
        bars = StoreBarProvider(BarStore(settings.bars_dir), settings.symbols, settings.base_interval,
                                max_gap_bars=settings.max_gap_bars)
        return cls(settings, make_engine(database_url or default_database_url(settings.home)), bars,
                   model_loader(uri), clock or SystemClock(), uri)

    @cached_property
    def store(self) -> LifecycleStore:
        """Stages, roles, transitions and gate decisions."""
        return LifecycleStore(self.engine)

    @cached_property
    def switch(self) -> KillSwitch:
        """The durable halt flag every trader checks."""
        return KillSwitch(self.engine)

    @cached_property
    def alerts(self) -> Alerts:
        """Alerts scrubbed of every configured secret, sent to the configured URLs."""
        urls = [u.get_secret_value() for u in self.settings.notify_urls]
        return Alerts(self.engine, secrets=self.settings.secret_values(), notify_urls=urls)

    @cached_property
    def journal(self) -> TradeJournal:
        """Every trader's journal."""
        from cappuccino_core.trading.journal import TradeJournal

        return TradeJournal(self.engine)

    def sandbox(self) -> Sandbox:
        """The sandbox on this site's bars, loader, clock and halt flag."""
        from cappuccino_core.sandbox.runner import Sandbox

        return Sandbox(self.engine, self.bars, load_model=self.load_model, clock=self.clock,
                       halted=self.switch.is_halted, in_flight=self.switch.step_in_flight)

    def now(self) -> datetime:
        """The site's clock."""
        return self.clock.now()

    def alert(self, level: AlertLevel, source: str, message: str, *, at: datetime | None = None) -> AlertOutcome:
        """Raise one alert (scrubbed, logged, stored, sent)."""
        return self.alerts.raise_alert(level, source, message, at=at or self.now())

    def mirror(self) -> MirrorReport | None:
        """Make MLflow's stage tags and aliases match the database (``None`` when the site has no MLflow store)."""
        from cappuccino_core.operations.registry_mirror import mirror_lifecycle

        client = self.mlflow()
        return None if client is None else mirror_lifecycle(self.store, client)

    def mlflow(self) -> TrackingClient | None:
        """A client of the site's MLflow store (created if needed), ``None`` without one."""
        from cappuccino_core.tracking.store import client as mlflow_client
        from cappuccino_core.tracking.store import ensure_store

        if self.tracking is None:
            return None
        ensure_store(self.tracking)
        return mlflow_client(self.tracking)

    # --- brokers -----------------------------------------------------------------------------

    @property
    def paper_mode(self) -> str:
        """``alpaca-paper`` when the Alpaca keys are set, else ``sim``."""
        return "alpaca-paper" if self.settings.has_alpaca_keys else "sim"

    def paper_broker(self, account_id: str, costs: ExecutionCosts) -> Broker:
        """The production model's account: Alpaca paper with keys, else SimBroker account ``account_id``."""
        from cappuccino_core.trading.alpaca_broker import AlpacaBroker
        from cappuccino_core.trading.sim_broker import SimBroker

        s = self.settings
        if s.has_alpaca_keys:
            assert s.alpaca_api_key is not None and s.alpaca_secret_key is not None
            return AlpacaBroker(s.alpaca_api_key.get_secret_value(), s.alpaca_secret_key.get_secret_value(),
                                paper=True, url_override=s.alpaca_paper_url)
        return SimBroker(self.engine, account_id, costs=costs, initial_cash=s.production_cash, clock=self.clock)

    def live_broker(self) -> AlpacaBroker:
        """The Alpaca live account (real money).

        Raises:
            LiveNotAllowed: live trading is not enabled, or its keys or capital are missing.
        """
        readiness = live_readiness(self.settings)
        if not readiness.ready:
            raise LiveNotAllowed(readiness.message)
        return self.live_account()

    def live_account(self) -> AlpacaBroker:
        """The Alpaca live account whenever live keys are set, enabled or not (to cancel and flatten it).

        Raises:
            LiveNotAllowed: no live keys.
        """
        from cappuccino_core.trading.alpaca_broker import AlpacaBroker

        s = self.settings
        if s.live_api_key is None or s.live_secret_key is None:
            raise LiveNotAllowed("no live Alpaca keys (CAPPUCCINO_LIVE_API_KEY, CAPPUCCINO_LIVE_SECRET_KEY)")
        return AlpacaBroker(s.live_api_key.get_secret_value(), s.live_secret_key.get_secret_value(), paper=False,
                            url_override=s.alpaca_live_url)
