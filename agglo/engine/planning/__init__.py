"""From a configuration to work: the scenarios of a sweep (grid, sample or table), their
parameters as arrays, and the batches and chunks that cover them."""
