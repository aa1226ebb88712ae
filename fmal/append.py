"""Pools that grow: add rows to a finished pool (placeholder, filled in below)."""
