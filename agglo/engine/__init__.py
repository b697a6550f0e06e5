"""Towns, configuration, sweep planning, execution and the Zarr result cube."""
