"""Data sources (random access, host side) and per-example numpy preprocessing."""
