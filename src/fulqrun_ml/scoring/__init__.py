"""Offline scoring of whole tables with a published model version (no server in the loop)."""
