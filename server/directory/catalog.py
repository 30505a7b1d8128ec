"""The directory action catalog: what an operator may do to an account, when it applies, and how to tell it took.

Each action is typed (its parameters are checked here, never passed through as text), confirmed, stepped up and
audited by the service; after it runs the account is read again and `verdict` says in words whether it took.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from server.directory.account import Person

_WORD_LIST = """
acorn amber anchor apple arrow aspen autumn badge basil beacon berry birch bison blaze bloom bolt breeze brick brook
cabin cactus canal candle canyon cargo cedar chalk cherry cider cliff clover cobalt comet copper coral cotton crane
creek crystal daisy delta desert dingo dolphin dune eagle echo ember falcon fern fiddle flint forest fossil galaxy
garnet geyser ginger glacier granite grove harbor hazel heron hollow honey island ivory jasper juniper kayak kettle
kiwi lagoon lantern lemon lilac linen lotus lunar maple marble meadow mesa meteor mint mosaic nectar nutmeg oak
oasis olive onyx orbit orchid otter palm panda pebble pepper pine planet plum polar pony prairie quartz quill radar
raven reef ridge river robin saffron sage salmon satin sierra silver sparrow spruce stone summit sunny tango thistle
thunder tiger timber topaz tulip tundra turtle valley velvet violet walnut willow winter zephyr
"""
WORDS = tuple(_WORD_LIST.split())  # short words anyone can spell on the phone


@dataclass(frozen=True, slots=True)
class DirAction:
    """One catalog entry."""

    id: str
    label: str
    kinds: tuple[str, ...]  # the directory kinds it works on
    needs_group: bool = False


CATALOG: dict[str, DirAction] = {
    a.id: a
    for a in (
        DirAction("unlock", "Unlock", ("active-directory", "ldap")),
        DirAction("reset-password", "Reset password", ("active-directory", "ldap")),
        DirAction("enable", "Enable", ("active-directory",)),
        DirAction("disable", "Disable", ("active-directory",)),
        DirAction("group-add", "Add to group", ("active-directory", "ldap"), needs_group=True),
        DirAction("group-remove", "Remove from group", ("active-directory", "ldap"), needs_group=True),
    )
}


def passphrase() -> str:
    """A temporary password to read out on the phone: five words and a number (~45 bits; AD complexity holds)."""
    words = [secrets.choice(WORDS) for _ in range(5)]
    return "-".join([words[0].capitalize(), *words[1:], str(secrets.randbelow(900) + 100)])


def why_not(action: DirAction, person: Person, allowed_groups: list[str], group: str | None = None) -> str | None:
    """None when the action applies to this account now, else why not (in words)."""
    if person.kind not in action.kinds:
        return "not available on this kind of directory"
    member = {g.lower() for g in person.groups}
    if action.id == "unlock" and person.locked is not True:
        return "the account is not locked" if person.locked is False else "this directory does not say it is locked"
    if action.id == "enable" and person.enabled is not False:
        return "the account is enabled"
    if action.id == "disable" and person.enabled is not True:
        return "the account is disabled"
    if action.needs_group:
        choices = group_choices(action, person, allowed_groups)
        if not allowed_groups:
            return "no groups are allowed for this directory (setting groups)"
        if group is None:
            none_left = "already in every allowed group" if action.id == "group-add" else "in none of the allowed groups"
            return None if choices else none_left
        if group.lower() not in {g.lower() for g in allowed_groups}:
            return "that group is not on this directory's allow-list"
        if (group.lower() in member) == (action.id == "group-add"):
            return "already a member" if action.id == "group-add" else "not a member"
    return None


def group_choices(action: DirAction, person: Person, allowed_groups: list[str]) -> list[str]:
    """The allow-listed groups this action can use for this person (not yet in, or in)."""
    member = {g.lower() for g in person.groups}
    return [g for g in allowed_groups if (g.lower() in member) != (action.id == "group-add")]


def verdict(action: str, after: Person, group: str | None, must_change: bool, started: float) -> tuple[bool, str]:
    """Did it take? (True/False, a sentence) from the account as read back after the change."""
    bad = "" if after.bad_passwords is None else f" — badPwdCount {after.bad_passwords}"
    if action == "unlock":
        if after.locked is None:
            return True, "unlocked (this directory keeps no lock-out state to check)"
        return (not after.locked, f"unlocked{bad}" if not after.locked else f"still locked{bad}")
    if action in ("enable", "disable"):
        want = action == "enable"
        return (after.enabled is want, f"{action}d" if after.enabled is want else f"still {'disabled' if want else 'enabled'}")
    if action in ("group-add", "group-remove"):
        inside = group is not None and group.lower() in {g.lower() for g in after.groups}
        ok = inside == (action == "group-add")
        name = group or ""
        return ok, (f"now a member of {name}" if inside else f"no longer a member of {name}") if ok else (
            f"still {'not ' if action == 'group-add' else ''}a member of {name}")
    if must_change:
        if after.must_change is None:
            return True, "password set; this directory keeps no 'must change' flag to check"
        flagged = "password set — must change at next logon"
        return after.must_change, flagged if after.must_change else "password set, but not marked 'must change'"
    if after.password_set is None:
        return True, "password set (this directory keeps no change time to check)"
    took = after.password_set >= started - 120  # directory clocks may be a little behind
    return took, "password set" if took else "the password change time did not move"
