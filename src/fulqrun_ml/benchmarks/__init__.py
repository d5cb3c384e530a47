"""Benchmarks and studies: drivers that train, time and report through the library, never part of it.

They sit on top of the package (only `cli` is above them): a module here may import anything in `fulqrun_ml`,
and nothing in the library imports this package. Argument parsing, plots and report rendering live here, and
every model they train goes through `training.train.train`, so a study measures the code users run.
"""
