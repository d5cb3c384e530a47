"""fulqrun_ml.search: see the README section for this capability."""
