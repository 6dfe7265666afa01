"""Cappuccino's domain core: plain Python, no orchestration imports.

Everything that decides anything (data quality, features, the environment, PPO,
metrics, the arena, risk, gating) lives here; ``tasks/`` and ``flows/`` only wire it.
"""

__version__ = "0.1.0"
