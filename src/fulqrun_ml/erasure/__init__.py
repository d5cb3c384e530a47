"""Erasure: forget a contact or company in every store, with a report proving it (issue 19 item 5)."""
