"""The console's pages as HTML, rendered from the same data the JSON API returns.

Plain functions from data to markup: the server module decides who may see which page; these
only draw it. Forms that change something carry the session's CSRF token; actions go to a
confirmation page first.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from gateway.console import charts
from gateway.console.filters import Filter
from gateway.console.layout import age, esc, hidden, size, table, when
from gateway.queue.model import STATE_WORDS

ACTION_WORDS = {
    "retry": "Retry now",
    "hold": "Hold",
    "release": "Release",
    "delete": "Delete",
}
# What each action does, for the confirmation page.
ACTION_EFFECTS = {
    "retry": "tries delivery again now (queued messages only)",
    "hold": "stops delivery until released (queued messages only)",
    "release": "puts held messages back in the queue, due now",
    "delete": "removes the messages for good; they will not be delivered",
}


def signin(csrf: str, error: str = "", next_path: str = "/", *, microsoft: bool = False) -> str:
    """The sign-in form (and the way to sign in with Microsoft, when configured)."""
    other = (
        f'<p><a href="/signin/microsoft?{urlencode({"next": next_path})}" id="signin-microsoft">'
        "Sign in with Microsoft</a></p>"
        if microsoft
        else ""
    )
    return other + (
        '<form method="post" action="/signin" class="signin">'
        f"{hidden('csrf', csrf)}{hidden('next', next_path)}"
        '<p><label>User name<br><input name="username" id="username" autocomplete="username" '
        "required></label></p>"
        '<p><label>Password<br><input name="password" id="password" type="password" '
        'autocomplete="current-password" required></label></p>'
        '<p><button type="submit" id="signin">Sign in</button></p></form>'
    )


def overview(data: dict[str, Any]) -> str:
    """Ready or not and why; queue counts; per tenant token and credential health."""
    ready = data["ready"]
    parts = [
        f'<p id="ready" class="{"ok" if ready else "bad"}">'
        f"{'Ready: taking and delivering mail' if ready else 'Not ready'}</p>"
    ]
    failing = [name for name, ok in data["checks"].items() if not ok]
    if failing:
        rows = [[esc(name), esc(data["problems"].get(name, "failing"))] for name in sorted(failing)]
        parts.append(table(["check", "why, and what to do"], rows))
    queue = data["queue"]
    cards = "".join(
        f'<div class="card" id="count-{esc(state)}"><b>{esc(count)}</b>'
        f'<a href="/queue?{urlencode({"state": state})}" id="link-{esc(state)}">{esc(state)}</a>'
        "</div>"
        for state, count in queue["states"].items()
    )
    oldest = queue["oldest_age"]
    parts.append(f"<h2>Queue ({esc(queue['backend'])})</h2>")
    if queue.get("error"):
        parts.append(f'<p class="bad">{esc(queue["error"])}</p>')
    parts.append(
        f'<div class="cards">{cards}<div class="card"><b id="oldest">'
        f"{esc(age(oldest) if oldest else '—')}</b>oldest waiting</div></div>"
    )
    silent = data.get("silent_devices", 0)
    if silent:
        parts.append(
            f'<p class="bad" id="silent-devices"><a href="/devices">{silent} silent '
            f"device{'s' if silent != 1 else ''}</a>: sent on most days, then nothing</p>"
        )
    activity = data.get("activity")
    if activity:
        parts.append("<h2>Delivery</h2>")
        parts.append(
            '<div class="charts">'
            + charts.bars("Last hour", activity["hour"], "minute", "chart-hour")
            + charts.bars("Last day", activity["day"], "hour", "chart-day")
            + "</div>"
        )
    parts.append("<h2>Tenants</h2>")
    rows = []
    for tenant in data["tenants"]:
        token = tenant["token"]
        css = {"ok": "ok", "failed": "bad"}.get(token, "muted")
        problem = f"<br>{esc(tenant['token_problem'])}" if tenant["token_problem"] else ""
        expiry = (
            ", ".join(
                f"{esc(kind)}: {esc(days)} days"
                for kind, days in tenant["credential_days_left"].items()
            )
            or "no expiry known"
        )
        last = tenant["last_error"]
        last_text = (
            f"{esc(when(last['at']))} {esc(last['status'] or '')} {esc(last['code'])}"
            f"<br>{esc(last['reason'])}"
            if last
            else "none"
        )
        rows.append(
            [
                esc(tenant["name"]),
                esc(tenant["credential"]),
                f'<span class="{css}">{esc(token)}</span>{problem}',
                expiry,
                last_text,
            ]
        )
    parts.append(
        table(["tenant", "credential", "token", "credential expiry", "last Graph error"], rows)
    )
    return "".join(parts)


def _device_link(device: str) -> str:
    """The device's messages in the queue."""
    return f'<a href="/queue?{esc(urlencode({"device": device}))}">{esc(device)}</a>'


def devices(data: dict[str, Any]) -> str:
    """One row per sending address (and AUTH user): silent ones first."""
    rows = []
    for device in data["devices"]:
        refusal, failure = device["last_refusal"], device["last_failure"]
        rows.append(
            [
                '<span class="bad">silent</span>' if device["silent"] else "",
                _device_link(device["address"]),
                _device_link(device["user"]) if device["user"] else "—",
                esc(device["client"] or "(no client rule)"),
                esc(when(device["last_seen"])),
                esc(device["today"]),
                esc(device["week"]),
                esc(f"{when(refusal['at'])} {refusal['reply']} {refusal['reason']}")
                if refusal
                else "",
                esc(
                    f"{when(failure['at'])} {failure['code'] or failure['status'] or ''} "
                    f"{failure['reason']}"
                )
                if failure
                else "",
            ]
        )
    headings = [
        "",
        "address",
        "AUTH user",
        "client rule",
        "last seen",
        "today",
        "7 days",
        "last refusal",
        "last delivery failure",
    ]
    summary = (
        f'<p id="silent-count" class="{"bad" if data["silent"] else "muted"}">'
        f"{data['silent']} silent device{'s' if data['silent'] != 1 else ''} (sent on most "
        "days, then nothing for console.silent_after)</p>"
    )
    return summary + table(headings, rows, empty="No device has sent anything yet.")


def _filters(where: Filter, tenants: list[str]) -> str:
    states = "".join(
        f'<option value="{esc(word)}"{" selected" if where.state == state else ""}>{esc(word)}'
        "</option>"
        for state, word in STATE_WORDS.items()
    )
    tenant_options = "".join(
        f"<option{' selected' if where.tenant == name else ''}>{esc(name)}</option>"
        for name in tenants
    )

    def text(name: str, label: str, value: str, hint: str = "") -> str:
        return (
            f'<label>{esc(label)}<input name="{name}" id="filter-{name}" value="{esc(value)}"'
            f' placeholder="{esc(hint)}"></label>'
        )

    query = where.query()
    return (
        '<form method="get" action="/queue" class="filters">'
        f'<label>state<select name="state" id="filter-state"><option value="">any</option>'
        f"{states}</select></label>"
        + text("sender", "sender", where.sender)
        + text("recipient", "recipient", where.recipient)
        + text("device", "device", where.device, "address or AUTH user")
        + f'<label>tenant<select name="tenant" id="filter-tenant"><option value="">any</option>'
        f"{tenant_options}</select></label>"
        + text("older_than", "older than", query.get("older_than", ""), "e.g. 1h")
        + text("newer_than", "newer than", query.get("newer_than", ""), "e.g. 1d")
        + '<button type="submit" id="filter">Filter</button></form>'
    )


def queue(
    data: dict[str, Any], where: Filter, tenants: list[str], *, csrf: str, may_act: bool
) -> str:
    """The filtered, paged queue; checkboxes and bulk actions for operators."""
    rows = []
    for item in data["messages"]:
        qid = esc(item["queue_id"])
        box = (
            f'<input type="checkbox" name="id" value="{qid}" aria-label="select {qid}">'
            if may_act
            else ""
        )
        rows.append(
            [
                box,
                f'<a href="/messages/{qid}">{qid}</a>',
                f'<span class="state">{esc(item["state"])}</span>',
                esc(item["mail_from"] or "<>"),
                esc(", ".join(item["rcpt_tos"])),
                esc(item["tenant"]),
                esc(item["peer"] + (f" ({item['user']})" if item["user"] else "")),
                esc(age(item["age"])),
                esc(size(item["size"])),
                esc(item["reason"]),
            ]
        )
    headings = [
        "",
        "queue ID",
        "state",
        "sender",
        "recipients",
        "tenant",
        "device",
        "age",
        "size",
        "why",
    ]
    listing = table(headings, rows, empty="No messages match.")
    total, number, per_page = data["total"], data["page"], data["per_page"]
    last = max(1, -(-total // per_page))
    links = []
    if number > 1:
        links.append(f'<a href="/queue?{urlencode(where.query(page=number - 1))}">previous</a>')
    if number < last:
        links.append(f'<a href="/queue?{urlencode(where.query(page=number + 1))}">next</a>')
    paging = (
        f'<p class="muted" id="total">{total} message{"s" if total != 1 else ""}, '
        f"page {number} of {last} {' '.join(links)}</p>"
    )
    if may_act and rows:
        buttons = "".join(
            f'<button type="submit" name="operation" value="{op}" id="bulk-{op}">'
            f"{esc(word)} selected</button> "
            for op, word in ACTION_WORDS.items()
        )
        back = "/queue?" + urlencode(where.query())
        listing = (
            f'<form method="post" action="/queue/confirm">{hidden("csrf", csrf)}'
            f"{hidden('back', back)}{listing}<p>{buttons}</p></form>"
        )
    return _filters(where, tenants) + paging + listing


def confirm(operation: str, queue_ids: list[str], *, csrf: str, back: str) -> str:
    """Are you sure? The messages named, what the action does, and two buttons."""
    items = "".join(f"<li><code>{esc(qid)}</code></li>" for qid in queue_ids)
    fields = "".join(hidden("id", qid) for qid in queue_ids)
    return (
        f"<p>{esc(ACTION_WORDS[operation])} {len(queue_ids)} "
        f"message{'s' if len(queue_ids) != 1 else ''}: this "
        f"{esc(ACTION_EFFECTS[operation])}.</p><ul>{items}</ul>"
        f'<form method="post" action="/queue/act">{hidden("csrf", csrf)}'
        f"{hidden('operation', operation)}{hidden('back', back)}{fields}"
        f'<button type="submit" id="confirm">Yes, {esc(ACTION_WORDS[operation].lower())}'
        f'</button> <a href="{esc(back)}" id="cancel">Cancel</a></form>'
    )


def message(data: dict[str, Any], *, csrf: str, may_act: bool) -> str:
    """One message: envelope, headers, attachments, attempts, hold reason; never the body."""
    parts = []
    envelope = data["envelope"]
    last = data.get("last_attempt")
    if data["state"] == "delivered" and last:
        took = f" in {last['duration_ms']} ms" if last.get("duration_ms") is not None else ""
        parts.append(
            f'<p class="ok" id="delivered">Delivered: {esc(last.get("status") or "")} '
            f"from {esc(last.get('mailbox') or '')} through tenant {esc(last.get('tenant'))}"
            f"{esc(took)}, {esc(when(last['at']))}. It has left the queue.</p>"
        )
        return "".join(parts)
    if data.get("error"):
        parts.append(f'<p class="bad">Unreadable: {esc(data["error"])}</p>')
    hold = data.get("hold")
    if hold:
        parts.append(
            f'<div class="error" id="hold-reason"><b>Held:</b> {esc(hold.get("reason"))}'
            + (f"<br>Graph said: {esc(hold['graph_message'])}" if hold.get("graph_message") else "")
            + "</div>"
        )
    facts = [("state", f'<span id="state">{esc(data["state"])}</span>')]
    if data.get("next_attempt"):
        facts.append(("next attempt", esc(when(data["next_attempt"]))))
    if data.get("leased_by"):
        facts.append(("sending on", esc(data["leased_by"])))
    if envelope:
        facts += [
            ("envelope sender", esc(envelope["mail_from"] or "<>")),
            ("recipients", esc(", ".join(envelope["rcpt_tos"]))),
            ("tenant", esc(data.get("tenant", ""))),
            ("received", esc(f"{when(envelope['received_at'])} on {envelope['listener']}")),
            ("client", esc(f"{envelope['client']} ({envelope['peer']})")),
            ("AUTH user", esc(envelope["user"] or "—")),
            ("size", esc(size(envelope["size"]))),
        ]
    parts.append(table(["", ""], ([name, value] for name, value in facts)))
    summary = data.get("summary")
    if summary:
        parts.append("<h2>Headers</h2>")
        parts.append(
            table(["header", "value"], ([esc(k), esc(v)] for k, v in summary["headers"].items()))
        )
        parts.append("<h2>Attachments</h2>")
        parts.append(
            table(
                ["name", "type", "size"],
                (
                    [esc(a["name"]), esc(a["type"]), esc(size(a["size"]))]
                    for a in summary["attachments"]
                ),
                empty="No attachments.",
            )
        )
        if summary.get("partial"):
            parts.append(
                '<p class="muted">Only the first 32 MiB were read: attachments after them are '
                "not listed.</p>"
            )
    elif data["state"] == "sending":
        parts.append('<p class="muted">Headers are shown again once the attempt ends.</p>')
    parts.append("<h2>Attempts</h2>")
    rows = [
        [
            esc(when(a.get("at"))),
            esc(a.get("result", "")),
            esc(a.get("status", "")),
            esc(a.get("code", "")),
            f"<code>{esc(a.get('request_id', ''))}</code>",
            esc(f"{a['duration_ms']} ms" if a.get("duration_ms") is not None else ""),
            esc(a.get("reason", "")),
        ]
        for a in data["attempts"]
    ]
    headings = ["at", "result", "status", "error code", "request-id", "duration", "reason"]
    parts.append(table(headings, rows, empty="No attempts yet."))
    if may_act:
        qid = data["queue_id"]
        buttons = "".join(
            f'<button type="submit" name="operation" value="{op}" id="action-{op}">'
            f"{esc(word)}</button> "
            for op, word in ACTION_WORDS.items()
        )
        parts.append(
            "<h2>Actions</h2>"
            f'<form method="post" action="/queue/confirm">{hidden("csrf", csrf)}'
            f"{hidden('id', qid)}{hidden('back', f'/messages/{qid}')}{buttons}</form>"
            f'<p><a href="/messages/{esc(qid)}/raw" id="download">Download the raw message</a>'
            ' <span class="muted">(logged)</span></p>'
        )
    return "".join(parts)


def test_form(csrf: str, sender: str = "", recipient: str = "") -> str:
    """Send a test message: from which mailbox, to whom."""
    return (
        "<p>The message is queued and delivered like any other (the sender's tenant, its "
        "credential, Graph); its page shows the attempts as they happen.</p>"
        f'<form method="post" action="/test-message">{hidden("csrf", csrf)}'
        '<p><label>From (a mailbox a tenant sends for)<br><input name="sender" id="test-sender" '
        f'value="{esc(sender)}" required size="40"></label></p>'
        '<p><label>To<br><input name="recipient" id="test-recipient" '
        f'value="{esc(recipient)}" required size="40"></label></p>'
        '<p><button type="submit" id="test-send">Send</button></p></form>'
    )


def problem(text: str) -> str:
    """An error page's body."""
    return f'<p><a href="/">Back to the overview</a></p><p class="muted">{esc(text)}</p>'
