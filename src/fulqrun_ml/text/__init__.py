"""fulqrun_ml.text: see the README section for this capability."""
