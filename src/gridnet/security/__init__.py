"""Authorities, their roles and flags; trust in them is local to each participant."""
