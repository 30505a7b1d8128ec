"""Directory search latency on the Samba AD peer: the answer time of GET /api/v1/directories/{name}/people?q=.

Run alone: `python -m bench.directory [--count N]` (prints the figures as JSON). The app runs in this process
(`create_app`, no polling) behind a real uvicorn on loopback, so each answer includes HTTP, the grant check, the
LDAPS connection and bind, the search and the audit write; the DC is provisioned for the run (tens of seconds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

QUERIES = ["jo", "Jo Blo", "ja", "Janet", "bjo", "alice", "eve", "*)(", "zz", "asm"]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def run(count: int = 200) -> dict[str, Any]:
    """Searches one after another (the throttle allows 4 a second per user, so each search is a new user)."""
    from server.config.settings import Settings
    from server.store import accounts, grants
    from tests.peers.samba_dc import populate, start_samba_dc
    from tests.server.app_fleet import serve
    from tests.server.directory_helpers import ad_entry, write_directories

    dc = start_samba_dc()
    try:
        dc.bind_password = populate(dc, "Bench-" + str(time.time_ns())[-8:] + "-x!")
        with tempfile.TemporaryDirectory() as tmp:
            path = write_directories(Path(tmp) / "directories.yaml", ad_entry(dc, search_limit=20))
            settings = Settings(data_dir=Path(tmp) / "data", directories_file=path)
            with serve(settings) as live:
                live.user("bench", "operator")
                with live.svc.engine.begin() as conn:
                    found = accounts.get_user_by_name(conn, "bench")
                    assert found is not None
                    grants.add(conn, found[0].id, ["directory"], "bench")
                    token = accounts.new_token(conn, found[0].id, "bench")
                samples = []
                with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
                    for i in range(count):
                        live.svc.clock = lambda i=i: 1000.0 + i  # one search a second on the throttle's clock
                        started = time.perf_counter()
                        answer = http.get("/api/v1/directories/corp/people", params={"q": QUERIES[i % len(QUERIES)]})
                        samples.append((time.perf_counter() - started) * 1000)
                        assert answer.status_code == 200, answer.text
    finally:
        dc.stop()
    return {"searches": count, "p50_ms": round(statistics.median(samples), 1), "p95_ms": round(_pct(samples, 0.95), 1),
            "max_ms": round(max(samples), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    print(json.dumps(run(parser.parse_args().count)))


if __name__ == "__main__":
    main()
