"""The results of a batch of scenarios from a network: each model's passes over the kernels,
grouped so that scenarios sharing work share it; and the single-scenario pairs and flows."""
