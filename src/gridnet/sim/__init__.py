"""The simulator: scenarios drive real nodes on a simulated clock and produce a report."""
