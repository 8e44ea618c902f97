"""Trusted public keys, installed with tt-meta-plugin (data only; see README.md)."""
