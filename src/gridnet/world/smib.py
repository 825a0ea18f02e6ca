"""A single machine on an infinite bus (seed 003, section 3.4): the generator G behind its
transient reactance, a line to the infinite bus, a local load behind the load switch SL, and a
power system stabiliser (PSS) engaged through the control switch SC.

The classical swing model, integrated with a fixed 10 ms step (per unit on the machine's base;
``omega`` is the speed deviation)::

    d delta / dt = omega_s * omega
    2 H d omega / dt = Pm - Pe - (D + K_pss [SC closed]) * omega
    Pe = E V sin(delta) / X + P_load [SL closed]

The terminal phasor follows from the current through the line: I = (E e^{j delta} - V) /
(j X), V_t = V + j X_line I. Frequency is 50 Hz × (1 + omega). Opening SL sheds the load: the
machine accelerates and swings; with SC closed the PSS damps the swing, with SC open it barely
decays. Pure: no I/O, deterministic.
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass

NOMINAL_HZ = 50.0
STEP_S = 0.01


@dataclass
class Machine:
    h_s: float = 3.5
    """Inertia constant [s]."""
    d: float = 1.0
    """Natural damping [pu]."""
    k_pss: float = 25.0
    """The stabiliser's added damping while SC is closed [pu]."""
    e: float = 1.1
    """Internal EMF behind the transient reactance [pu]."""
    v: float = 1.0
    """The infinite bus [pu]."""
    x_gen: float = 0.3
    x_line: float = 0.4
    pm: float = 0.9
    """Mechanical power [pu]."""
    p_load: float = 0.3
    """The local load behind SL [pu]."""
    sl_closed: bool = True
    sc_closed: bool = True
    delta: float = 0.0
    omega: float = 0.0

    def __post_init__(self) -> None:
        """Start in equilibrium: Pe = Pm."""
        transfer = self.pm - (self.p_load if self.sl_closed else 0.0)
        self.delta = math.asin(max(-1.0, min(1.0, transfer * self.x / (self.e * self.v))))

    @property
    def x(self) -> float:
        return self.x_gen + self.x_line

    def pe(self) -> float:
        return self.e * self.v * math.sin(self.delta) / self.x + (self.p_load if self.sl_closed else 0.0)

    def step(self, dt: float = STEP_S) -> None:
        damping = self.d + (self.k_pss if self.sc_closed else 0.0)
        accel = (self.pm - self.pe() - damping * self.omega) / (2 * self.h_s)
        self.omega += accel * dt
        self.delta += 2 * math.pi * NOMINAL_HZ * self.omega * dt

    def run(self, seconds: float) -> None:
        for _ in range(round(seconds / STEP_S)):
            self.step()

    def measure(self) -> Sample:
        current = (cmath.rect(self.e, self.delta) - self.v) / (1j * self.x)
        terminal = self.v + 1j * self.x_line * current
        load_current = self.p_load / abs(terminal) if self.sl_closed else 0.0
        return Sample(
            frequency_hz=NOMINAL_HZ * (1 + self.omega),
            voltage_pu=abs(terminal),
            current_pu=abs(current) + load_current,
            power_pu=self.pe(),
            load_current_pu=load_current,
        )


@dataclass(frozen=True)
class Sample:
    frequency_hz: float
    voltage_pu: float
    current_pu: float
    """The generator's current: to the line and to the load [pu]."""
    power_pu: float
    load_current_pu: float
    """Through the load switch SL (0 while it is open) [pu]."""
