"""The real-time feature store: CRM change capture, streaming features, a Redis online store, an offline store
that provably matches it, and serving by entity id (README "Real-time features")."""
