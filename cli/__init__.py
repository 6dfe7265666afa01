"""The ``cappuccino`` command line (``cli.app``): it wires the flows and reads the core's views.

It lives outside ``cappuccino_core`` because it imports ``flows`` (so Prefect); the core must
import without an orchestrator (``tests/test_architecture.py``).
"""
