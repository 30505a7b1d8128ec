"""Small server-rendered SVG charts: bytes-light, no JavaScript needed, numbers only (nothing to escape)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

WIDTH, HEIGHT = 300, 60
MAX_POINTS = 300


def _downsample(points: Sequence[tuple[float, float]], limit: int) -> list[tuple[float, float]]:
    if len(points) <= limit:
        return list(points)
    step = len(points) / limit
    return [points[int(i * step)] for i in range(limit)] + [points[-1]]


def sparkline(points: Sequence[tuple[float, float]], since: float, until: float, label: str, unit: str = "") -> Markup:
    """An SVG polyline of (ts, value) points between since and until; gaps stay gaps.

    The data-* attributes let app.js turn a touch position back into a time and a value.
    """
    pts = _downsample([(float(t), float(v)) for t, v in points], MAX_POINTS)
    if not pts:
        return Markup("")
    low = min(v for _, v in pts)
    high = max(v for _, v in pts)
    span_v = high - low
    span_t = (until - since) or 1.0
    gap = max(span_t / 60, 3 * (pts[-1][0] - pts[0][0]) / max(len(pts), 1))
    lines: list[list[str]] = [[]]
    last_t: float | None = None
    for t, v in pts:
        if last_t is not None and t - last_t > gap:
            lines.append([])
        x = (t - since) / span_t * WIDTH
        # A flat series sits in the middle instead of on the floor.
        y = HEIGHT / 2 if not span_v else HEIGHT - 3 - (v - low) / span_v * (HEIGHT - 6)
        lines[-1].append(f"{x:.1f},{y:.1f}")
        last_t = t
    polylines = "".join(
        f'<polyline points="{" ".join(seg)}"/>' if len(seg) > 1 else f'<polyline class="pt" points="{seg[0]} {seg[0]}"/>'
        for seg in lines
        if seg
    )
    text = f"{label}: min {low:.4g}, max {high:.4g}, last {pts[-1][1]:.4g}{(' ' + unit) if unit else ''}"
    return Markup(  # noqa: S704 - built from numbers and escaped text only
        f'<svg class="spark" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" role="img" tabindex="0" '
        f'aria-label="{Markup.escape(text)}" data-t0="{since:.0f}" data-t1="{until:.0f}" '
        f'data-lo="{low:.6g}" data-hi="{high:.6g}" data-unit="{Markup.escape(unit)}">{polylines}</svg>'
    )
