"""Simulated Forge runtime (the real one holds the PJRT plugin and tt-metal)."""
