"""A run's bookkeeping, whatever trains it: its identity and config hash (:mod:`~src.run.config_keys`), its
record (:mod:`~src.run.records`), the skip / resume / refuse decision and the run lock
(:mod:`~src.run.resume`), provenance, atomic writes and distributed ranks.

Nothing here imports training or sweep code: reports read runs through this package alone.
"""
