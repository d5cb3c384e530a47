"""fulqrun_ml.federated: see the README section for this capability."""
