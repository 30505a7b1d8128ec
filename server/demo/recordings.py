"""Write the demo's snmpsim recordings: one `<name>.snmprec` per simulated device (community = name)."""

from __future__ import annotations

from pathlib import Path

from server.demo.fleet import DEFAULT_FLAP_PERIOD, fleet
from server.demo.snmprec import Recording

SUFFIX = ".snmprec"


def write_recordings(directory: Path, flap_period: float = DEFAULT_FLAP_PERIOD) -> list[str]:
    """(Re)write every device's recording into directory, remove stale ones, return the communities."""
    directory.mkdir(parents=True, exist_ok=True)
    communities: list[str] = []
    for device in fleet(flap_period):
        rec = Recording()
        device.build(rec, device.name)
        rec.write(directory / f"{device.name}{SUFFIX}")
        communities.append(device.name)
    keep = {f"{name}{SUFFIX}" for name in communities}
    for path in directory.glob(f"*{SUFFIX}"):
        if path.name not in keep:
            path.unlink()
    return communities
