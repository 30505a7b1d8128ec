"""An example pocketnoc plug-in (see its pyproject.toml for the entry points)."""
