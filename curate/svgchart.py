"""Small self-contained SVG charts for the calibration page: a histogram and a step curve, with axes,
ticks, axis labels and marked thresholds.

Written as SVG text rather than drawn with matplotlib: a calibration page holds two charts per score,
and matplotlib's figure set-up, layout and PNG rendering cost 0.2-0.6 s per chart (seconds per page),
where building these takes a millisecond and they stay sharp at any zoom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

WIDTH, HEIGHT = 420, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 14, 26, 44  # room for the tick labels and the axis labels
COLORS = ("#4c72b0", "#dd8452", "#55a868")
MARK = "#c44e52"


def value_range(values: list[float], marks: list[float]) -> tuple[float, float]:
    """An x range that holds every value and every mark, never empty: a score that is all one value (all
    zero) gets [0, 1] (or +-50% around a non-zero v) instead of a range of nothing around it."""
    points = [v for v in [*values, *marks] if v is not None and math.isfinite(v)]
    if not points:
        return 0.0, 1.0
    lo, hi = min(points), max(points)
    if hi == lo:
        if lo == 0:
            return 0.0, 1.0
        spread = abs(lo) / 2
        lo, hi = lo - spread, hi + spread
    # 4% of room on each side, so that a threshold at the lowest or highest value is not on the frame; a
    # score that is never negative keeps its axis from 0.
    pad = (hi - lo) * 0.04
    return (max(0.0, lo - pad) if lo >= 0 else lo - pad), hi + pad


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [lo, hi]."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def tick_text(value: float) -> str:
    return f"{value:.3g}" if value else "0"


@dataclass
class Chart:
    title: str
    x_label: str
    y_label: str
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    bars: list[tuple[float, float, float]] = field(default_factory=list)  # (left, right, height)
    lines: list[tuple[str, list[tuple[float, float]]]] = field(default_factory=list)  # (label, points)
    marks: list[tuple[float, str]] = field(default_factory=list)  # vertical lines: (x, label)
    y_percent: bool = False

    def _x(self, value: float) -> float:
        lo, hi = self.x_range
        return LEFT + (value - lo) / ((hi - lo) or 1) * (WIDTH - LEFT - RIGHT)

    def _y(self, value: float) -> float:
        lo, hi = self.y_range
        return HEIGHT - BOTTOM - (value - lo) / ((hi - lo) or 1) * (HEIGHT - TOP - BOTTOM)

    def svg(self) -> str:
        x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP
        out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{HEIGHT}' "
               f"viewBox='0 0 {WIDTH} {HEIGHT}' font-family='sans-serif' font-size='10'>",
               f"<title>{escape(self.title)}</title>",
               f"<text x='{WIDTH / 2}' y='14' text-anchor='middle' font-size='12'>{escape(self.title)}</text>"]
        for left, right, height in self.bars:
            top = self._y(height)
            width = max(self._x(right) - self._x(left), 1)
            out.append(f"<rect x='{self._x(left):.1f}' y='{top:.1f}' width='{width:.1f}' height='{y0 - top:.1f}' "
                       f"fill='{COLORS[0]}'/>")
        for n, (label, points) in enumerate(self.lines):
            path = " ".join(f"{self._x(x):.1f},{self._y(y):.1f}" for x, y in points)
            out.append(f"<polyline points='{path}' fill='none' stroke='{COLORS[n % len(COLORS)]}' "
                       f"stroke-width='1.8'><title>{escape(label)}</title></polyline>")
        for x, label in self.marks:
            px = self._x(x)
            out.append(f"<line x1='{px:.1f}' y1='{y0}' x2='{px:.1f}' y2='{y1}' stroke='{MARK}' stroke-width='1.5' "
                       f"stroke-dasharray='4,2'/>")
            anchor = "end" if px > (x0 + x1) / 2 else "start"
            shift = -3 if anchor == "end" else 3
            out.append(f"<text x='{px + shift:.1f}' y='{y1 + 9}' fill='{MARK}' text-anchor='{anchor}'>"
                       f"{escape(label)}</text>")
        out.append(f"<line x1='{x0}' y1='{y0}' x2='{x1}' y2='{y0}' stroke='#333'/>")
        out.append(f"<line x1='{x0}' y1='{y0}' x2='{x0}' y2='{y1}' stroke='#333'/>")
        for t in nice_ticks(*self.x_range):
            px = self._x(t)
            out.append(f"<line x1='{px:.1f}' y1='{y0}' x2='{px:.1f}' y2='{y0 + 4}' stroke='#333'/>"
                       f"<text x='{px:.1f}' y='{y0 + 14}' text-anchor='middle'>{tick_text(t)}</text>")
        for t in nice_ticks(*self.y_range):
            py = self._y(t)
            text = f"{t * 100:.0f}%" if self.y_percent else tick_text(t)
            out.append(f"<line x1='{x0 - 4}' y1='{py:.1f}' x2='{x0}' y2='{py:.1f}' stroke='#333'/>"
                       f"<text x='{x0 - 6}' y='{py + 3:.1f}' text-anchor='end'>{text}</text>")
        out.append(f"<text x='{(x0 + x1) / 2}' y='{HEIGHT - 8}' text-anchor='middle'>{escape(self.x_label)}</text>")
        out.append(f"<text transform='translate(12,{(y0 + y1) / 2}) rotate(-90)' text-anchor='middle'>"
                   f"{escape(self.y_label)}</text>")
        if len(self.lines) > 1:
            for n, (label, _) in enumerate(self.lines):
                out.append(f"<text x='{x1}' y='{y1 + 22 + 11 * n}' text-anchor='end' "
                           f"fill='{COLORS[n % len(COLORS)]}'>{escape(label)}</text>")
        out.append("</svg>")
        return "".join(out)
