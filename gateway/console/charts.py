"""Small server-rendered SVG bar charts of delivery outcomes (no script, no stylesheet of
their own: colours are SVG attributes, which the console's Content-Security-Policy allows)."""

from __future__ import annotations

from gateway.console.layout import esc

COLOURS = {"delivered": "#2e7d4f", "deferred": "#c98a12", "held": "#b3261e"}
_WIDTH, _HEIGHT = 480, 90


def bars(title: str, series: list[dict[str, int]], unit: str, element_id: str) -> str:
    """Stacked bars, one per period, oldest left; a legend with the totals under it."""
    peak = max([sum(bucket.values()) for bucket in series] + [1])
    step = _WIDTH / max(1, len(series))
    shapes = []
    for index, bucket in enumerate(series):
        bottom = float(_HEIGHT)
        for outcome, colour in COLOURS.items():
            count = bucket.get(outcome, 0)
            if not count:
                continue
            height = count / peak * (_HEIGHT - 4)
            bottom -= height
            shapes.append(
                f'<rect x="{index * step + 0.5:.1f}" y="{bottom:.1f}" '
                f'width="{max(1.0, step - 1):.1f}" height="{height:.1f}" fill="{colour}">'
                f"<title>{esc(outcome)}: {count}</title></rect>"
            )
    totals = {outcome: sum(b.get(outcome, 0) for b in series) for outcome in COLOURS}
    legend = " ".join(
        f'<span><svg width="10" height="10" aria-hidden="true"><rect width="10" height="10" '
        f'fill="{colour}"/></svg> {esc(outcome)} {totals[outcome]}</span>'
        for outcome, colour in COLOURS.items()
    )
    label = ", ".join(f"{outcome} {count}" for outcome, count in totals.items())
    return (
        f'<figure class="chart" id="{esc(element_id)}"><figcaption>{esc(title)} '
        f'<span class="muted">(one bar per {esc(unit)}, peak {peak})</span></figcaption>'
        f'<svg viewBox="0 0 {_WIDTH} {_HEIGHT}" width="{_WIDTH}" height="{_HEIGHT}" role="img" '
        f'aria-label="{esc(title)}: {esc(label)}">'
        f'<rect width="{_WIDTH}" height="{_HEIGHT}" fill="#ffffff"/>{"".join(shapes)}</svg>'
        f'<div class="legend">{legend}</div></figure>'
    )
