"""Jittable array operations shared by task families (boxes, matching)."""
