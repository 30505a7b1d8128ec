"""Sign-in throttling an attacker cannot turn against the user: growing delays, never a lock-out.

Three counts of failed sign-ins (wrong password or code) in the last `signin_window_minutes`:
- this account from this address: after `signin_free_failures`, each further failure doubles the wait
  (`signin_delay_seconds`, 2x, ... up to `signin_max_delay_seconds`) before that address may try that account again;
- this address across all accounts: the same growth after `signin_address_failures` (password spraying);
- this account from all addresses: after `signin_account_failures`, addresses the account never completed a sign-in
  from wait too (a botnet guessing one account) - the owner's usual addresses never do.
A throttled attempt is refused before the password is looked at, and is not itself counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.config.settings import Settings
from server.store import accounts
from server.store.accounts import Tally

if TYPE_CHECKING:  # the auth room speaks no SQL: the connection is only a type here
    from server.store.db import Connection


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether an attempt may go ahead; `wait` seconds until it may (0: now)."""

    wait: float
    reason: str = ""

    @property
    def refused(self) -> bool:
        return self.wait > 0

    @property
    def message(self) -> str:
        """What the person at the sign-in form reads."""
        return f"Too many failed sign-ins {self.reason}; try again in {math.ceil(self.wait)} seconds."


def delay(failures: int, free: int, settings: Settings) -> float:
    """Seconds to wait after the last of `failures` failures, when `free` of them cost nothing."""
    if failures < free:
        return 0.0
    return float(min(settings.signin_max_delay_seconds, settings.signin_delay_seconds * 2.0 ** min(failures - free, 40)))


def _remaining(tally: Tally, free: int, settings: Settings, now: float) -> float:
    return max(0.0, tally.last + delay(tally.count, free, settings) - now)


def check(conn: Connection, settings: Settings, name: str, ip: str, now: float) -> Verdict:
    """May this address try to sign in to this account now? (The same answer whether or not the account exists.)"""
    stats = accounts.failure_stats(conn, name, ip, now - settings.signin_window_minutes * 60)
    waits = [
        (_remaining(stats.pair, settings.signin_free_failures, settings, now), "for this account from here"),
        (_remaining(stats.address, settings.signin_address_failures, settings, now), "from this address"),
    ]
    if name and not stats.known_address:
        waits.append((_remaining(stats.account, settings.signin_account_failures, settings, now), "for this account"))
    wait, reason = max(waits)
    return Verdict(wait, reason) if wait > 0 else Verdict(0.0)


def check_address(conn: Connection, settings: Settings, ip: str, now: float) -> Verdict:
    """The address count alone, for sign-ins that name no account up front (passkeys)."""
    stats = accounts.failure_stats(conn, "", ip, now - settings.signin_window_minutes * 60)
    wait = _remaining(stats.address, settings.signin_address_failures, settings, now)
    return Verdict(wait, "from this address") if wait > 0 else Verdict(0.0)
