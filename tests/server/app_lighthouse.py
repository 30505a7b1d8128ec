"""Lighthouse 12 (npm) against pages behind a sign-in, with Debian's chromium: used by the budget test and bench/pages.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.server.app_fleet import CHROMIUM

VERSION = "12"
NPM_DIR = Path(sys.prefix) / "npm"  # inside the venv: out of the source tree and of git
CHROME_FLAGS = (
    "--headless=new --no-sandbox --disable-gpu --disable-background-networking --disable-component-update "
    "--disable-sync --no-first-run --disable-default-apps --disable-extensions"
)


class LighthouseFailed(RuntimeError):
    """Lighthouse itself failed (chromium did not start in time, the page never painted ...)."""


def lighthouse() -> Path:
    """The lighthouse command, installed from npm into the venv on first use."""
    binary = NPM_DIR / "node_modules" / ".bin" / "lighthouse"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is missing: `make test` installs Debian's nodejs and npm")
    NPM_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [npm, "install", "--prefix", str(NPM_DIR), f"lighthouse@{VERSION}", "--no-audit", "--no-fund", "--loglevel=error"],
        check=True,
        timeout=600,
    )
    return binary


def run(url: str, cookie: str, categories: tuple[str, ...] = ("performance", "accessibility")) -> dict[str, Any]:
    """Scores (0-100) per category, the audits that lost points, and the key timings of one mobile run."""
    out = Path(tempfile.mkdtemp(prefix="pn-lh-")) / "report.json"
    command = [
        str(lighthouse()),
        url,
        "--form-factor=mobile",
        f"--only-categories={','.join(categories)}",
        f"--chrome-flags={CHROME_FLAGS}",
        "--extra-headers=" + json.dumps({"Cookie": f"pn_session={cookie}"}),
        "--disable-full-page-screenshot",  # a picture for the HTML report only (no audit reads it): ~1.3 s a run
        "--output=json",
        f"--output-path={out}",
        "--quiet",
    ]
    try:
        done = subprocess.run(command, timeout=300, env={**os.environ, "CHROME_PATH": CHROMIUM}, capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            raise LighthouseFailed(f"lighthouse exited {done.returncode}: {(done.stderr or done.stdout)[-1500:]}")
        report = json.loads(out.read_text())
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    audits = report["audits"]
    lost = sorted(
        f"{key}: {a.get('displayValue') or a.get('title')}"
        for key, a in audits.items()
        if a.get("score") is not None and a["score"] < 1 and a.get("scoreDisplayMode") in ("binary", "numeric")
    )
    keys = ("first-contentful-paint", "largest-contentful-paint", "total-blocking-time", "cumulative-layout-shift")
    timings = {k: audits[k]["numericValue"] for k in keys if k in audits}
    return {
        "url": url,
        "scores": {k: round(float(c["score"]) * 100) for k, c in report["categories"].items() if c["score"] is not None},
        "lost": lost,
        "timings": timings,
        "final_url": report.get("finalDisplayedUrl") or report.get("finalUrl"),
    }
