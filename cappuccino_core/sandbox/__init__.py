"""The sandbox (stage 5): promoted models paper-trade their own simulated accounts side by side.

* ``runner`` — the ``Sandbox``: start runs, step every due run on its model's closed bars.
* ``runs`` — the ``sandbox_run`` table and its records (read without the traders).
* ``report`` — how each run is doing, from its journal, through the one metrics module.

Entering the sandbox and leaving it for production are ``operations.sandbox_entry`` and
``operations.challenge``.
"""
