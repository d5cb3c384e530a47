"""fulqrun_ml.privacy: see the README section for this capability."""
