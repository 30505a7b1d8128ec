"""Alert titles from rule templates: only named placeholders, no attribute access (not str.format)."""

from __future__ import annotations

import re
from collections.abc import Mapping

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,31})(?::([<>^]?\d{0,3}(?:\.\d{1,2})?[fdge%]?))?\}")
TITLE_CAP = 300


def render_title(template: str, values: Mapping[str, object]) -> str:
    """Fill {name} and {name:.1f}; unknown names stay as written, device text is inserted verbatim."""

    def one(m: re.Match[str]) -> str:
        name, spec = m.group(1), m.group(2)
        if name not in values or values[name] is None:
            return m.group(0)
        value = values[name]
        if spec and isinstance(value, int | float):
            try:
                return format(value, spec)
            except ValueError:
                return str(value)
        return str(value)

    return _FIELD.sub(one, template)[:TITLE_CAP]
