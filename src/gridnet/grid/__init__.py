"""The grid side: DSO emergency commands (and, later, the grid model)."""
