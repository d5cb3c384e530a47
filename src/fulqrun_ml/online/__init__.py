"""The real-time feature store: CRM change capture, streaming features, a Redis online store, an offline store
that provably matches it, and serving by entity id (README "Real-time features").

The interface the modules share (views, Redis layout, store, change events) is in INTERFACE.md next to this file.
"""
