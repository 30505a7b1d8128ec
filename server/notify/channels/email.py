"""Email over SMTP (STARTTLS by default, or implicit TLS), plain text plus escaped HTML, threaded per incident.

URL: smtp://[user[:password]@]host[:port]/?from=ADDR&to=ADDR[,ADDR]&starttls=yes|no&verify=yes|no&cafile=PATH
(smtp:// defaults to port 587 with STARTTLS required; smtps:// is implicit TLS on 465).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from dataclasses import replace
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

from agents.safety import check_address, check_host_name, parse_target
from server.notify.channels import ChannelError, checked_host, register
from server.notify.masking import mask
from server.notify.message import Note, clean
from server.notify.outcome import Outcome

MAX_RECIPIENTS = 50


def _address(text: str) -> str:
    text = text.strip()
    try:
        Address(addr_spec=text)
    except (ValueError, IndexError):
        raise ChannelError(f"not an email address: {text[:100]!r}") from None
    if len(text) > 254:
        raise ChannelError("email address too long")
    return text


def _yes(value: str, default: bool) -> bool:
    if not value:
        return default
    if value.lower() in ("yes", "true", "1", "on"):
        return True
    if value.lower() in ("no", "false", "0", "off"):
        return False
    raise ChannelError(f"expected yes or no, got {value[:20]!r}")


class Email:
    """An SMTP destination with one sender and up to 50 recipients."""

    kind = "email"

    def __init__(self, url: str, allow_unsafe: bool = False) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        self.implicit_tls = scheme == "smtps"
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = set(query) - {"from", "to", "starttls", "verify", "cafile"}
        if unknown:
            raise ChannelError(f"unknown email options: {', '.join(sorted(unknown))}")
        host = parts.hostname or ""
        try:
            port = parts.port
        except ValueError:
            raise ChannelError("invalid port") from None
        target = parse_target(f"[{host}]" if ":" in host else host)
        check_host_name(target.host)
        if target.ip is not None and not allow_unsafe:
            check_address(target.ip)
        self.host = target.host
        self.port = port or (465 if self.implicit_tls else 587)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else ""
        self.sender = _address(query.get("from", ""))
        recipients = [r for r in query.get("to", "").split(",") if r.strip()]
        if not recipients:
            raise ChannelError("give recipients: ?to=a@example.net,b@example.net")
        if len(recipients) > MAX_RECIPIENTS:
            raise ChannelError(f"at most {MAX_RECIPIENTS} recipients per channel")
        self.recipients = [_address(r) for r in recipients]
        self.starttls = _yes(query.get("starttls", ""), True) and not self.implicit_tls
        self.verify = _yes(query.get("verify", ""), True)
        self.cafile = query.get("cafile") or None
        loopback = (target.ip is not None and target.ip.is_loopback) or target.host == "localhost"
        if not self.implicit_tls and not self.starttls and not loopback and not allow_unsafe:
            raise ChannelError("refused: cleartext SMTP off loopback (use STARTTLS, smtps://, or allow_unsafe)")
        if not self.verify and not allow_unsafe:
            raise ChannelError("refused: verify=no needs allow_unsafe")
        if self.user and not (self.implicit_tls or self.starttls) and not loopback:
            raise ChannelError("refused: a password over cleartext SMTP")
        self.allow_unsafe = allow_unsafe
        self._masked = mask(url, self.host, self.port, f" → {', '.join(self.recipients)}")

    def display(self) -> str:
        """Server and recipients; the user name and password are never shown."""
        return self._masked.display

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cafile)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def message(self, note: Note) -> EmailMessage:
        """The MIME message: plain text and HTML alternatives, threaded on the dedup key."""
        msg = EmailMessage()
        msg["Subject"] = clean(note.heading, 200)
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg["Date"] = formatdate(time.time(), usegmt=True)
        domain = self.sender.rsplit("@", 1)[-1]
        msg["Message-ID"] = make_msgid(idstring=note.kind, domain=domain)
        thread = f"<{note.dedup_key}@{domain}>"
        msg["In-Reply-To"] = thread
        msg["References"] = thread
        msg["X-Pocketnoc-Dedup-Key"] = note.dedup_key
        msg.set_content(f"{note.heading}\n\n{note.text}")
        msg.add_alternative(note.html, subtype="html")
        return msg

    def _send_sync(self, note: Note, timeout: float) -> Outcome:
        msg = self.message(note)
        client: smtplib.SMTP
        try:
            if self.implicit_tls:
                client = smtplib.SMTP_SSL(self.host, self.port, timeout=timeout, context=self._context())
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=timeout)
            with client:
                client.ehlo()
                if self.starttls:
                    client.starttls(context=self._context())
                    client.ehlo()
                if self.user:
                    client.login(self.user, self.password)
                refused = client.send_message(msg, from_addr=self.sender, to_addrs=self.recipients)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            permanent = all(c >= 500 for c in codes)
            return Outcome(False, f"SMTP {codes[0] if codes else '?'}", "every recipient was refused", permanent=permanent)
        except smtplib.SMTPResponseException as exc:
            detail = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            return Outcome(False, f"SMTP {exc.smtp_code}", clean(detail), permanent=exc.smtp_code >= 500)
        except ssl.SSLCertVerificationError as exc:
            return Outcome(False, "TLS", clean(exc.verify_message or str(exc)), permanent=True)
        except smtplib.SMTPNotSupportedError as exc:
            return Outcome(False, "SMTP", clean(str(exc)), permanent=True)
        except (smtplib.SMTPException, OSError) as exc:
            return Outcome(False, "connect", clean(str(exc)) or type(exc).__name__)
        if refused:
            return Outcome(True, "SMTP 250", f"refused for {len(refused)} of {len(self.recipients)} recipients")
        return Outcome(True, "SMTP 250")

    async def send(self, note: Note, time_limit: float) -> Outcome:
        """Check the server's addresses, then talk SMTP in a thread (smtplib blocks)."""
        refused = await checked_host(self.host, self.port, self.allow_unsafe)
        if refused is not None:
            return refused
        outcome = await asyncio.to_thread(self._send_sync, note, time_limit)
        return replace(outcome, detail=self._masked.redact(outcome.detail))


register("email", Email, ("smtp", "smtps"))
