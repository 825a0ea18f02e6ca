"""``gridnet dashboard``: a run's results (and its chain) in a browser, served on 127.0.0.1."""
