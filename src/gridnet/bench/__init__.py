"""Benchmarks (``gridnet bench ...``): each returns a dict of figures, printed as JSON."""
