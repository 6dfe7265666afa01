"""Running the stages on one home: the application layer over the lifecycle's rules.

* ``site`` — the database, bars, model loader, MLflow store and brokers of one home; ``live_readiness``.
* ``sandbox_entry`` — arena → sandbox: a promoted model starts its sandbox run.
* ``challenge`` — sandbox → production: a finished sandbox run meets the production model head-to-head.
* ``production`` / ``live_account`` — the production (paper) and live traders; ramped live capital.
* ``live`` — green light, approval and the move to live.
* ``live_monitor`` — live limits and drift, demotion; paper drift alerts.
* ``track_records`` — track records from trade journals; the backtest on the same marks.
* ``health`` / ``notify`` — the health checks; alerts once per quiet period.
* ``control`` — ``kill`` and ``resume`` over every account.
* ``status_board`` / ``model_list`` — the whole pipeline on one page; every registered version.
* ``registry_mirror`` — stages and roles shown in MLflow (``stage`` tag, ``production``/``live`` aliases).

The flows reach these through ``tasks/lifecycle.py`` and ``tasks/trading.py``; the offline replay
of the same stages is ``pipeline.replay``.
"""
