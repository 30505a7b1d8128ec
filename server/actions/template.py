"""Command and OID templates: `{param}` placeholders only, filled with validated values (shell-quoted for SSH)."""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Mapping

_PLACEHOLDER = re.compile(r"[a-z][a-z0-9_]{0,31}")
_OID = re.compile(r"[0-9]+(?:\.[0-9]+)+")
ParamValue = str | int


def placeholders(template: str) -> list[str]:
    """The parameter names a template uses; ValueError for anything but plain `{name}` (and `{{` `}}`)."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"bad placeholder in template: {exc}") from None
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if not _PLACEHOLDER.fullmatch(field) or spec or conversion:
            shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ValueError(f"placeholder {shown!r} is not allowed: write {{name}} with a parameter name")
        names.append(field)
    return names


def render(template: str, values: Mapping[str, ParamValue], quote: bool) -> str:
    """Fill a template; with `quote` every value goes through shlex.quote (one shell word, never code)."""
    out: list[str] = []
    for literal, field, _spec, _conversion in string.Formatter().parse(template):
        out.append(literal)
        if field is not None:
            value = str(values[field])
            out.append(shlex.quote(value) if quote else value)
    return "".join(out)


def render_oid(template: str, values: Mapping[str, ParamValue]) -> str:
    """Fill an OID template; the result must be a numeric OID (so parameters there are integers)."""
    oid = render(template, values, quote=False).strip(".")
    if not _OID.fullmatch(oid) or len(oid) > 512:
        raise ValueError(f"{oid[:80]!r} is not a numeric OID")
    return oid
