"""The model registry: policies as MLflow models, registered versions, and the one loader.

- ``pyfunc``: a checkpoint directory logged as an MLflow pyfunc model of an existing run.
- ``models``: registered versions (candidates), their provenance tags and aliases.
- ``loader``: ``load_policy`` from ``models:/``, ``runs:/`` or a local path, refusing mismatches.
"""
