"""Encryption at rest, below every layer that writes data: the AES-GCM envelope, the key providers and the
atomic publish of a sealed file.

Why its own low package: the data layer writes snapshots (data/snapshot_files.py) and the registry writes model
files, and both must seal with the same envelope and the same keyring. The data layer sits below the registry,
so the primitive lives here, under both, and the registry re-exports it instead of keeping a second copy.
"""
