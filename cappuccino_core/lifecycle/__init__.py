"""The lifecycle: stages (arena, sandbox, production, live, retired), gates, monitors, demotion, kill switch.

* ``stages`` — the stages, legal moves and the production/live roles.
* ``store`` — moves recorded in the project database (invariants enforced by the database).
* ``mirror`` — the stages and roles shown in MLflow (``stage`` tag, ``production``/``live`` aliases).
* ``track_record`` — a model's realised returns, benchmark and errors (what gates and monitors judge).
* ``green_light`` — the owner's criteria for going live.
* ``ramp`` — live capital in steps after profitable days.
* ``monitor`` / ``drift`` — live limits, and drift against the backtest.
* ``demotion`` — live back to paper (or retired), flattening the live book.
* ``kill_switch`` — the durable halt flag and ``kill``.
* ``alerts`` — scrubbed alerts to the log, the database and notification URLs.

The orchestration glue (imported by the flows, not re-exported here):

* ``site`` — the database, bars, model loader, MLflow store and brokers of one home; ``live_readiness``.
* ``records`` — track records from trade journals; replays on the same marks.
* ``sandbox_entry`` / ``promotion`` — arena → sandbox; sandbox → production (the head-to-head).
* ``production`` / ``live_account`` — the production (paper) and live traders; ramped live capital.
* ``live`` — green light, approval and the move to live.
* ``live_monitor`` — live limits and drift, demotion; paper drift alerts.
* ``health`` / ``notify`` — the health checks; alerts once per quiet period.
* ``control`` — ``kill`` and ``resume`` over every account.
* ``board`` — the status board of the whole pipeline.

Importing this package declares its tables on ``db.Base`` (so ``db.create_schema`` creates them).
"""

from cappuccino_core.lifecycle.alerts import Alert, AlertLevel, AlertOutcome, Alerts, Delivery, scrub
from cappuccino_core.lifecycle.demotion import (
    DemotionConfig,
    DemotionResult,
    NoLiveModel,
    demote_live,
    enforce_verdict,
)
from cappuccino_core.lifecycle.drift import DriftConfig, compare_with_backtest
from cappuccino_core.lifecycle.green_light import (
    GreenLightConfig,
    GreenLightDecision,
    RuleOutcome,
    decide_green_light,
)
from cappuccino_core.lifecycle.kill_switch import (
    BrokerKill,
    HaltState,
    KillIncomplete,
    KillReport,
    KillSwitch,
    halt_check,
    kill,
)
from cappuccino_core.lifecycle.mirror import (
    MirrorReport,
    mirror_gate_decision,
    mirror_lifecycle,
    model_id_for,
    parse_model_id,
)
from cappuccino_core.lifecycle.monitor import MonitorConfig, evaluate_limits
from cappuccino_core.lifecycle.ramp import RampConfig, RampState, ramp_state
from cappuccino_core.lifecycle.stages import (
    LEGAL_TRANSITIONS,
    IllegalTransition,
    LifecycleStateError,
    Role,
    RoleTaken,
    Stage,
    TransitionRefused,
    check_transition,
)
from cappuccino_core.lifecycle.store import ConcurrentChange, LifecycleStore, ModelState, Transition
from cappuccino_core.lifecycle.track_record import TrackRecord
from cappuccino_core.lifecycle.verdict import Check, Level, MonitorVerdict

__all__ = [
    "LEGAL_TRANSITIONS", "Alert", "AlertLevel", "AlertOutcome", "Alerts", "BrokerKill", "Check", "ConcurrentChange",
    "Delivery", "DemotionConfig", "DemotionResult", "DriftConfig", "GreenLightConfig", "GreenLightDecision",
    "HaltState", "IllegalTransition", "KillIncomplete", "KillReport", "KillSwitch", "Level", "LifecycleStateError",
    "LifecycleStore", "MirrorReport", "ModelState", "MonitorConfig", "MonitorVerdict", "NoLiveModel", "RampConfig",
    "RampState", "Role", "RoleTaken", "RuleOutcome", "Stage", "TrackRecord", "Transition", "TransitionRefused",
    "check_transition", "compare_with_backtest", "decide_green_light", "demote_live", "enforce_verdict",
    "evaluate_limits", "halt_check",
    "kill", "mirror_gate_decision", "mirror_lifecycle", "model_id_for", "parse_model_id", "ramp_state", "scrub",
]
