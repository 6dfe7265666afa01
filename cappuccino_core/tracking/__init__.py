"""The MLflow record of studies and trials.

- ``store``: where the record lives (absolute URIs), creating the store once, the code version.
- ``runs``: experiments, one parent run per (study, phase), one child run per trial, batched logging.
- ``plots``: small PNG charts attached to runs.

Only this package and ``registry`` import MLflow. Everything takes an explicit ``MlflowClient``
and run ids; nothing uses MLflow's global active run or experiment.
"""
