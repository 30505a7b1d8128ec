"""SSH host keys: pins (key lines or SHA256 fingerprints), checking the key a server offers, and what a refusal says.

Never trust on first use: an unpinned key raises HostKeyUnknown with what an admin needs to confirm it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
from collections.abc import Iterable

import paramiko

from agents.base import CollectError


class HostKeyUnknown(CollectError):
    """The server's host key is not pinned; key_line and fingerprint let an admin confirm and pin it."""

    def __init__(self, key_line: str, fingerprint: str) -> None:
        super().__init__(f"host key not pinned: {fingerprint} ({key_line.split()[0]})")
        self.key_line = key_line
        self.fingerprint = fingerprint

    @property
    def facts(self) -> dict[str, str]:
        """What the server shows an admin who may trust this key."""
        return {
            "ssh_host_key_problem": "unknown",
            "ssh_host_key_offered": self.key_line,
            "ssh_host_key_fingerprint": self.fingerprint,
        }


class HostKeyMismatch(CollectError):
    """The server offered a host key other than the pinned ones: refused before logging in."""

    def __init__(self, expected: list[str], offered: str | None, key_line: str | None) -> None:
        shown = offered or "no key of a pinned type"
        super().__init__(f"host key mismatch: offered {shown}, pinned {', '.join(expected)}")
        self.expected = expected
        self.offered = offered
        self.key_line = key_line

    @property
    def facts(self) -> dict[str, str]:
        """What the server shows: a changed key (a possible attack), and what was offered."""
        out = {"ssh_host_key_problem": "changed", "ssh_host_key_fingerprint": self.offered or ""}
        if self.key_line:
            out["ssh_host_key_offered"] = self.key_line
        return out


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse_pins(pins: Iterable[str]) -> tuple[set[bytes], set[str], set[str]]:
    """Pinned lines ("type base64 [comment]", optionally after host names) or SHA256 fingerprints,
    as (key blobs, fingerprints, key types)."""
    blobs: set[bytes] = set()
    prints: set[str] = set()
    types: set[str] = set()
    for pin in pins:
        tokens = pin.split()
        if len(tokens) == 1 and tokens[0].startswith("SHA256:"):
            prints.add(tokens[0].rstrip("="))
            continue
        for kind, data in itertools.pairwise(tokens):
            try:
                blob = base64.b64decode(data, validate=True)
                message = paramiko.Message(blob)
                if message.get_text() == kind:
                    blobs.add(blob)
                    types.add(kind)
                    break
            except (binascii.Error, ValueError, UnicodeDecodeError, paramiko.SSHException, IndexError):
                continue
    return blobs, prints, types


def verify_host_key(key: paramiko.PKey, pins: Iterable[str]) -> None:
    """Raise unless key is one of the pins: HostKeyUnknown with no pins, HostKeyMismatch otherwise."""
    pins = tuple(pins)
    blob = key.asbytes()
    offered = fingerprint(blob)
    key_line = f"{key.get_name()} {key.get_base64()}"
    if not pins:
        raise HostKeyUnknown(key_line, offered)
    blobs, prints, _types = parse_pins(pins)
    if not blobs and not prints:
        raise CollectError("no valid host key pin (expected 'type base64' or 'SHA256:...')")
    if blob in blobs or offered in prints:
        return
    raise HostKeyMismatch(sorted({fingerprint(b) for b in blobs} | prints), offered, key_line)
