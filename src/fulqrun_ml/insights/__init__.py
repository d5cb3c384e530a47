"""fulqrun_ml.insights: see the README section for this capability."""
