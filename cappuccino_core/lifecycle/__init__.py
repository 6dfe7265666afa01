"""The lifecycle's rules: stages (arena, sandbox, production, live, retired), gates, limits, demotion, kill switch.

* ``stages`` — the stages, legal moves and the production/live roles.
* ``store`` / ``tables`` — moves recorded in the project database (invariants enforced by the database).
* ``track_record`` — a model's realised returns, benchmark and errors (what gates and monitors judge).
* ``green_light`` — the owner's criteria for going live.
* ``ramp`` — live capital in steps after profitable days.
* ``limits`` / ``drift`` / ``verdict`` / ``thresholds`` — live limits, drift against the backtest,
  the levels they report and how a figure meets a threshold.
* ``demotion`` — live back to paper (or retired), flattening the live book.
* ``kill_switch`` — the durable halt flag and ``kill``.
* ``alerts`` — scrubbed alerts to the log, the database and notification URLs.

Running the stages on a home (the site, sandbox entry, production and live traders, the
head-to-head challenge, health, the status board, the owner's controls) is the application
layer, ``cappuccino_core.operations``; the sandbox's own runtime is ``cappuccino_core.sandbox``.

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
    **dict.fromkeys(('MonitorConfig', 'evaluate_limits',), "limits"),
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
    "LifecycleStore", "ModelState", "MonitorConfig", "MonitorVerdict", "NoLiveModel", "RampConfig",
    "RampState", "Role", "RoleTaken", "RuleOutcome", "Stage", "TrackRecord", "Transition", "TransitionRefused",
    "check_transition", "compare_with_backtest", "decide_green_light", "demote_live", "enforce_verdict",
    "evaluate_limits", "halt_check",
    "kill", "ramp_state", "scrub",
]


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_SOURCES[name]}"), name)
    globals()[name] = value
    return value
