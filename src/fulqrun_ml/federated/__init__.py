"""Federated learning across organisations: rows stay in each organisation's process, only weights travel."""
