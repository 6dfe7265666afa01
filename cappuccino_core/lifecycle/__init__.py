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

Importing this package declares its tables on ``db.Base`` (so ``db.create_schema`` creates them). The
names below are imported on first use: the command line's views must not pay for MLflow or torch.
"""

from importlib import import_module
from typing import Any

from cappuccino_core.lifecycle import tables as _tables  # noqa: F401 - declares the tables

_SOURCES: dict[str, str] = {
    **dict.fromkeys(('Alert', 'AlertLevel', 'AlertOutcome', 'Alerts', 'Delivery', 'scrub',), "alerts"),
    **dict.fromkeys(('DemotionConfig', 'DemotionResult', 'NoLiveModel', 'demote_live', 'enforce_verdict',), "demotion"),
    **dict.fromkeys(('DriftConfig', 'compare_with_backtest',), "drift"),
    **dict.fromkeys(('GreenLightConfig', 'GreenLightDecision', 'RuleOutcome', 'decide_green_light',), "green_light"),
    **dict.fromkeys(('BrokerKill', 'HaltState', 'KillIncomplete', 'KillReport', 'KillSwitch', 'halt_check', 'kill',), "kill_switch"),
    **dict.fromkeys(('MirrorReport', 'mirror_gate_decision', 'mirror_lifecycle', 'model_id_for', 'parse_model_id',), "mirror"),
    **dict.fromkeys(('MonitorConfig', 'evaluate_limits',), "monitor"),
    **dict.fromkeys(('RampConfig', 'RampState', 'ramp_state',), "ramp"),
    **dict.fromkeys(('LEGAL_TRANSITIONS', 'IllegalTransition', 'LifecycleStateError', 'Role', 'RoleTaken', 'Stage', 'TransitionRefused', 'check_transition',), "stages"),
    **dict.fromkeys(('ConcurrentChange', 'LifecycleStore', 'ModelState', 'Transition',), "store"),
    **dict.fromkeys(('TrackRecord',), "track_record"),
    **dict.fromkeys(('Check', 'Level', 'MonitorVerdict',), "verdict"),
}
"""Each public name and the submodule that defines it."""

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


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_SOURCES[name]}"), name)
    globals()[name] = value
    return value
