"""Right to erasure: forget a contact or company in every store, prove it by re-scanning, flag models for retraining."""
