"""One masking rule for every channel kind: a URL shows its scheme and the server it contacts, nothing else.

Apprise's own privacy mode masks passwords and tokens but keeps user names, paths and a token that sits in the host
part (ntfy://TOPIC, tgram://BOT:TOKEN): so the rule is ours, applied to every kind. User names, passwords, paths,
queries, fragments and any host part that is not the server contacted are secret-bearing and shown as "…".
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

HIDDEN = "…"
MIN_FRAGMENT = 4  # shorter pieces ("ops", "tg") would mangle unrelated words when redacted from error text


@dataclass(frozen=True)
class Masked:
    """A channel URL as lists and logs show it, and the secret pieces to redact from its error messages."""

    display: str
    fragments: tuple[str, ...]

    def redact(self, text: str) -> str:
        """The text with every secret piece of the URL replaced by "…" (receivers and libraries echo them)."""
        for piece in self.fragments:
            text = text.replace(piece, HIDDEN)
        return text


def _port(parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def mask(url: str, server: str = "", port: int | None = None, suffix: str = "") -> Masked:
    """Mask `url`: `server` (and `port`) is the host the channel contacts, shown only when it is the URL's host part."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    hostname = (parts.hostname or "").lower()
    shown = bool(server) and server.lower().strip("[]") == hostname.strip("[]")
    netloc = ""
    if parts.username is not None or parts.password is not None:
        netloc = f"{HIDDEN}@"
    if shown:
        netloc += f"[{hostname}]" if ":" in hostname else hostname
        url_port = _port(parts)
        if url_port is not None or port is not None:
            netloc += f":{url_port if url_port is not None else port}"
    else:
        netloc += HIDDEN if parts.netloc else ""
    rest = "/" + HIDDEN if (parts.path.strip("/") or parts.query or parts.fragment) else "/"
    return Masked(f"{scheme}://{netloc}{rest}{suffix}"[:300], _fragments(parts, shown))


def _fragments(parts: SplitResult, host_shown: bool) -> tuple[str, ...]:
    """Every secret-bearing piece of the URL, raw and unquoted, longest first."""
    userinfo, _at, hostport = parts.netloc.rpartition("@")
    pieces: list[str] = userinfo.split(":")
    if not host_shown:  # a token in the host part, "port" included (tgram://BOT:TOKEN)
        pieces.extend(hostport.split(":"))
    for chunk in (parts.path, parts.fragment):
        pieces.extend(chunk.replace(":", "/").split("/"))
    for pair in parts.query.split("&"):
        pieces.append(pair.partition("=")[2])
    found: set[str] = set()
    for piece in pieces:
        for form in (piece, unquote(piece), unquote(piece).lstrip("#!@")):
            if len(form) >= MIN_FRAGMENT:
                found.add(form)
    return tuple(sorted(found, key=len, reverse=True))
