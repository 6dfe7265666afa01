"""Benchmarks: ``make bench`` runs them all and writes one flat JSON object to ``benchmarks/results.json``."""
