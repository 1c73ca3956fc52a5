"""The console's HTML frame and small helpers: escaping, times, sizes, the stylesheet.

Pages are plain server-rendered HTML with forms: no script, no outside font or stylesheet,
so they work on an isolated LAN and with JavaScript off. Every value from a message or the
configuration is escaped here, once.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Iterable

from gateway.config import format_size

STYLESHEET = """
body{font-family:system-ui,sans-serif;margin:0;color:#1d2328;background:#f6f7f8}
header{background:#1f3b57;color:#fff;padding:.6rem 1rem;display:flex;gap:1.2rem;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}
header .who{margin-left:auto;font-size:.9rem}
header form{display:inline}
main{padding:1rem 1.5rem;max-width:80rem}
h1{font-size:1.4rem;margin:.2rem 0 1rem}
h2{font-size:1.1rem;margin:1.4rem 0 .5rem}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{border:1px solid #d5d9dd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th,td{font-size:.9rem}
th{background:#eef1f3}
.ok{color:#17692f;font-weight:600}.bad{color:#a51d1d;font-weight:600}
.notice{background:#e7f3ea;border:1px solid #9ccaa8;padding:.5rem .8rem;margin-bottom:1rem}
.error{background:#fbe9e9;border:1px solid #e0a3a3;padding:.5rem .8rem;margin-bottom:1rem}
form.filters{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end;margin-bottom:1rem}
form.filters label{display:flex;flex-direction:column;font-size:.8rem}
button{padding:.3rem .8rem;cursor:pointer}
.cards{display:flex;flex-wrap:wrap;gap:1rem}
.card{background:#fff;border:1px solid #d5d9dd;padding:.6rem 1rem;min-width:8rem}
.card b{display:block;font-size:1.5rem}
.muted{color:#5c6770;font-size:.85rem}
code{font-size:.85rem}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}
figure.chart{margin:0}
figure.chart>svg{border:1px solid #d5d9dd;display:block;margin:.3rem 0}
.legend{font-size:.85rem;display:flex;gap:1rem}
"""


def esc(value: object) -> str:
    """Text for HTML (attribute values too)."""
    return html.escape("" if value is None else str(value), quote=True)


def when(timestamp: float | None) -> str:
    """A UTC time as `queue show` prints it."""
    if not timestamp:
        return ""
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def age(seconds: float | None) -> str:
    """A duration in words an operator reads at a glance: 45s, 12m, 3h 5m, 2d 4h."""
    if seconds is None:
        return ""
    total = int(max(0.0, seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def size(value: int | None) -> str:
    return format_size(value) if value is not None else ""


def table(headings: Iterable[str], rows: Iterable[Iterable[str]], *, empty: str = "") -> str:
    """A table of already-escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in headings)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body and empty:
        return f'<p class="muted">{esc(empty)}</p>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{esc(name)}" value="{esc(value)}">'


def frame(
    title: str,
    body: str,
    *,
    user: str = "",
    role: str = "",
    csrf: str = "",
    notice: str = "",
    error: str = "",
    refresh: int = 0,
    refresh_to: str = "",
) -> str:
    """A whole page: header with navigation and sign-out (when signed in), then `body`
    (`refresh`: seconds after which the browser loads `refresh_to` again, without any script;
    it should carry `auto=1`, so that reloading does not keep an idle session alive)."""
    nav = ""
    if user:
        nav = (
            '<a href="/">Overview</a><a href="/queue">Queue</a><a href="/devices">Devices</a>'
            + ('<a href="/test-message">Send a test</a>' if role == "operator" else "")
            + '<a href="/api/openapi.json">API</a>'
            f'<span class="who">{esc(user)} ({esc(role)}) '
            f'<form method="post" action="/signout">{hidden("csrf", csrf)}'
            '<button type="submit" id="signout">Sign out</button></form></span>'
        )
    banner = f'<div class="notice" role="status">{esc(notice)}</div>' if notice else ""
    banner += f'<div class="error" role="alert">{esc(error)}</div>' if error else ""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        + (
            f'<meta http-equiv="refresh" content="{refresh}; url={esc(refresh_to)}">'
            if refresh
            else ""
        )
        + f"<title>{esc(title)} · smtp-graph-gateway</title>"
        '<link rel="stylesheet" href="/console.css"></head><body>'
        f"<header><span>smtp-graph-gateway</span>{nav}</header>"
        f"<main><h1>{esc(title)}</h1>{banner}{body}</main></body></html>"
    )
