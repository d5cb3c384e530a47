"""fulqrun_ml.analytics: see the README section for this capability."""
