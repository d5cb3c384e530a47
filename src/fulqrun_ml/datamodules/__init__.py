"""Lightning datamodules and the task builders that feed them; they sit above `data/` and `features/`."""
