"""What users run on top of the engine: the command line, cube analysis, figures, calibration, flow export."""
