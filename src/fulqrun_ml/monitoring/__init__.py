"""Production monitoring and governance: prediction log, outcomes, drift, alerts, fairness, A/B experiments and
compliance reports (README "Monitoring and governance")."""
