"""Charts for the consoles, drawn on the server as SVG.

A chart is a title, a unit and labelled values; :func:`bar_chart` turns them into
the geometry the template ``console/_chart.html`` draws (bars, value axis ticks,
category labels) and keeps the values for the table beside it, which screen
readers and a reader without graphics use. No script, no library to serve, no
inline style (the pages' CSP forbids it): colours come from ``console.css``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

#: The drawing's coordinate box. The SVG scales to its container's width (at most
#: 36rem, console.css), so its 15-unit text reads at about 11 px on a 390 px phone.
WIDTH, HEIGHT = 480, 220
#: Room for the value axis's labels on the left and the categories below.
LEFT, BOTTOM, TOP, RIGHT = 64, 36, 12, 8
#: Categories labelled under the axis at most (every n-th one when there are more): a label
#: ("30 Nov") is about 50 units wide at that size.
MAX_LABELS = 7

Number = int | float | Decimal


@dataclass(frozen=True)
class Bar:
    label: str
    value: Number
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Tick:
    value: Number
    y: float


@dataclass(frozen=True)
class Chart:
    """What ``console/_chart.html`` draws: the title and unit are already in the reader's language."""

    title: str
    unit: str
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    #: The indexes of the bars whose label is written under the axis.
    labelled: frozenset[int]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom: int = HEIGHT - BOTTOM


def nice_step(top: float, steps: int = 4) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) that covers ``top`` in about ``steps`` ticks."""
    if top <= 0:
        return 1.0
    raw = top / steps
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return float(factor * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def bar_chart(title: str, unit: str, values: Sequence[tuple[str, Number]]) -> Chart:
    """A bar chart of ``values`` (label, value ≥ 0, in order). Negative values
    draw as zero-height bars (the table still shows them)."""
    top_value = max((float(v) for _, v in values), default=0.0)
    step = nice_step(top_value)
    top = step * max(1, math.ceil(top_value / step)) if top_value > 0 else step * 4
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(values))
    bars = []
    for i, (label, value) in enumerate(values):
        h = plot_h * max(0.0, float(value)) / top
        bars.append(Bar(label, value, x=LEFT + i * slot + slot * 0.15, y=TOP + plot_h - h, width=slot * 0.7, height=h))
    ticks = tuple(Tick(_tick_value(k * step), TOP + plot_h - plot_h * k * step / top)
                  for k in range(int(round(top / step)) + 1))
    every = max(1, math.ceil(len(values) / MAX_LABELS))
    return Chart(title, unit, tuple(bars), ticks, frozenset(range(0, len(values), every)))


def _tick_value(value: float) -> Number:
    return int(value) if float(value).is_integer() else value
