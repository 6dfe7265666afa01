"""The risk layers that wrap every place a policy trades (``layers``: the one entry point).

``config`` (the owner's limits), ``state`` (per-episode accumulators), ``rules`` (the batched
decision), ``update`` (after fills), ``events`` (what fired and why), ``levels`` and
``conviction`` (their inputs). Importing the package imports none of them, so reading a
``RiskConfig`` stays free of torch.
"""
