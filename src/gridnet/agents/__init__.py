"""The participants of a scenario, one module per role, each acting only through its node
and the data network (``world.World``). ``roles.roles()`` finds every module here that
defines ``ROLE``; the scheduler (``gridnet.sim.neighbourhood``) builds them and lets them act."""
