"""fulqrun_ml.dashboard: see the README section for this capability."""
