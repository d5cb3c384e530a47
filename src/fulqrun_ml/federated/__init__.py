"""Federated learning across organisations: rows never leave a client process (issue 19 item 2)."""
