"""The body a mail reader shows for a MIME tree, and which parts it is made of.

The body starts at the HTML alternative when there is one, else the text; the root of a related
group; the first readable part of anything else. In a `multipart/mixed`, later inline text parts
(plain or HTML, an inline part with a filename too, as RFC 2183 says) are shown after it, each
kept apart: a line break between text parts, a block per part in HTML. When one of the parts
shown is HTML the body is HTML, and the text parts are escaped into it in order. Pure.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from email.message import EmailMessage, Message

from gateway.mime.buffer import Buffer
from gateway.mime.parts import Part, decoded
from gateway.mime.text import clean, decode_bytes, decode_words

_UNFOLD = re.compile(r"\r?\n(?=[ \t])")  # RFC 5322 unfolding removes only the line break
_TEXT_TYPES = ("text/plain", "text/html")


@dataclass(frozen=True, slots=True)
class Body:
    """The Graph `body` and the parts it shows (which are therefore not attachments)."""

    content_type: str  # "text" or "html"
    content: str
    shown: frozenset[int]  # id() of every leaf shown or rendered by the body

    def resource(self) -> dict[str, str]:
        return {"contentType": self.content_type, "content": self.content}


def raw_header(headers: EmailMessage, name: str) -> str | None:
    """The first `name` field's value as it was sent (unparsed: parsing may fail or reword)."""
    wanted = name.lower()
    for key, value in headers.raw_items():
        if key.lower() == wanted:
            return str(value)
    return None


def disposition(part: Part) -> str:
    value = raw_header(part.headers, "Content-Disposition")
    return value.split(";", 1)[0].strip().lower() if value is not None else ""


def filename(part: Part) -> str:
    # The raw fields, with undeclared 8-bit bytes read first (`clean`), through the legacy
    # parameter API: the header registry would turn those bytes into U+FFFD.
    legacy = Message()
    for field_name in ("Content-Disposition", "Content-Type"):
        value = raw_header(part.headers, field_name)
        if value is not None:
            legacy[field_name] = clean(_UNFOLD.sub("", value))
    try:
        name = legacy.get_filename()
    except Exception:  # noqa: BLE001 - an unreadable parameter: no name
        name = None
    if not name:
        return ""
    return decode_words(str(name)).strip().replace("\r", "").replace("\n", "")


def is_body_text(part: Part) -> bool:
    """Text a reader shows: not an attachment, and either unnamed or explicitly inline."""
    if part.content_type not in _TEXT_TYPES:
        return False
    shown_as = disposition(part)
    return shown_as != "attachment" and (shown_as == "inline" or not filename(part))


def text(data: Buffer, part: Part) -> str:
    try:
        charset = part.headers.get_param("charset")
    except Exception:  # noqa: BLE001 - the library raises anything on some inputs; such a value is skipped
        charset = None
    return decode_bytes(decoded(data, part), charset if isinstance(charset, str) else None)


def find_body(tree: Part, data: Buffer) -> Body:
    """The body shown for the message whose tree is `tree`."""
    first = _first_body(tree)
    if first is None:
        return Body("text", "", frozenset())
    parents = _parents(tree)
    renderings = _other_renderings(first, parents)
    shown = [first, *_continuations(tree, first, parents, renderings)]
    for part in shown[1:]:
        renderings |= _other_renderings(part, parents)
    texts = [(part.content_type == "text/html", text(data, part)) for part in shown]
    if any(is_html for is_html, _ in texts):
        kind, content = "html", _html(texts)
    else:
        kind, content = "text", _plain([content for _, content in texts])
    return Body(kind, content, frozenset(renderings | {id(part) for part in shown}))


def _plain(texts: list[str]) -> str:
    """Text parts one after another, each starting on a line of its own."""
    out: list[str] = []
    for index, content in enumerate(texts):
        out.append(content)
        if index + 1 < len(texts) and not content.endswith("\n"):
            bare_lf = "\n" in content and "\r\n" not in content
            out.append("\n" if bare_lf else "\r\n")  # the line breaks the text already uses
    return "".join(out)


def _html(texts: list[tuple[bool, str]]) -> str:
    """HTML and text parts in order, one block per part (a single HTML part as it is)."""
    if len(texts) == 1:
        return texts[0][1]
    blocks = []
    for is_html, content in texts:
        block = content
        if not is_html:
            escaped = html.escape(content.replace("\r\n", "\n"), quote=False)
            block = escaped.rstrip("\n").replace("\n", "<br>\n")
        blocks.append(f"<div>{block}</div>")
    return "\n".join(blocks)


def _first_body(part: Part) -> Part | None:
    """The part the body starts with: HTML preferred among alternatives, the root of a related
    group, the first readable part of anything else."""
    kind = part.content_type
    if not part.is_multipart:
        return part if is_body_text(part) else None
    if kind == "multipart/alternative":
        found = [body for body in map(_first_body, part.children) if body is not None]
        htmls = [body for body in found if body.content_type == "text/html"]
        return htmls[-1] if htmls else (found[-1] if found else None)
    if kind in ("multipart/related", "multipart/signed", "multipart/encrypted"):
        return _first_body(part.children[0])
    for child in part.children:
        if child.is_multipart or is_body_text(child):
            body = _first_body(child)
            if body is not None:
                return body
        if not child.is_multipart:
            break  # the first leaf is not text: there is no body, only attachments
    return None


def _parents(part: Part, parents: dict[int, Part] | None = None) -> dict[int, Part]:
    """id(child) → its multipart parent, for the whole tree."""
    parents = {} if parents is None else parents
    for child in part.children:
        parents[id(child)] = part
        _parents(child, parents)
    return parents


def _other_renderings(body: Part, parents: dict[int, Part]) -> set[int]:
    """Leaves that render the body's content in another form (the text beside the HTML of a
    multipart/alternative): not attachments. Calendar parts are kept."""
    dropped: set[int] = set()
    branch, parent = body, parents.get(id(body))
    while parent is not None:
        if parent.content_type == "multipart/alternative":
            for sibling in parent.children:
                if sibling is not branch:
                    dropped.update(id(leaf) for leaf in sibling.leaves() if is_body_text(leaf))
        branch, parent = parent, parents.get(id(parent))
    return dropped


def _continuations(
    tree: Part, body: Part, parents: dict[int, Part], dropped: set[int]
) -> list[Part]:
    """Later inline parts of a multipart/mixed that a mail reader shows after the body (the
    text after an attachment in Apple Mail's layout, a list footer, a second note): its text
    leaves, and the part an alternative or related group in it shows (its HTML, say)."""
    found: list[Part] = []
    after_body = False
    for leaf in tree.leaves():
        if leaf is body:
            after_body = True
            continue
        if after_body and id(leaf) not in dropped and is_body_text(leaf):
            branch = _branch_under_mixed(leaf, parents)
            if branch is leaf or (branch is not None and _first_body(branch) is leaf):
                found.append(leaf)
    return found


def _branch_under_mixed(leaf: Part, parents: dict[int, Part]) -> Part | None:
    """The child of the nearest multipart/mixed that holds `leaf` (`leaf` itself when the mixed
    is its parent), through alternative and related groups only; None otherwise."""
    branch, parent = leaf, parents.get(id(leaf))
    while parent is not None and parent.content_type != "multipart/mixed":
        if parent.content_type not in ("multipart/alternative", "multipart/related"):
            return None
        branch, parent = parent, parents.get(id(parent))
    return branch if parent is not None else None
