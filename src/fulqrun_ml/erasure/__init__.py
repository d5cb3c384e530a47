"""fulqrun_ml.erasure: see the README section for this capability."""
