"""The physical world under the market: sun and weather at a place, PV arrays, household and
business demand. Each function turns a scenario's description into integer energy per
15-minute interval [Wh], the unit meters sign; the heavy libraries (pvlib, demandlib, pandas)
are imported only here, when a run first needs them."""
