"""The configuration: its typed schema and checks (:mod:`~agglo.engine.config.schema`); Hydra
composes it from the YAML and the command line at the edge (the run's entry points only)."""
