"""One measurement in its own process (inside the bench namespace): `python -m bench.worker MODE @ARGS.json`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any


def _args(text: str) -> Any:
    """JSON arguments inline, or `@path` to a file holding them (large device lists pass no argv limit)."""
    return json.loads(Path(text[1:]).read_text() if text.startswith("@") else text)


def main() -> None:
    """Run the named measurement with JSON arguments and print its result as one JSON line."""
    mode, args = sys.argv[1], _args(sys.argv[2])
    if args.get("switch_interval"):  # what-if experiments: how long a thread may hold the GIL
        sys.setswitchinterval(float(args["switch_interval"]))
    result: Any
    if mode == "bare":
        from bench.snmp_bare import measure as measure_bare

        result = asyncio.run(measure_bare(args["addresses"], args["port"], args["rounds"], args["concurrency"],
                                     args.get("workload", "collector")))
    elif mode == "pipeline":
        from bench.snmp_pipeline import measure_rounds

        result = asyncio.run(measure_rounds(args["addresses"], args["port"], args["rounds"],
                                            args.get("profile", False), args.get("memory", False)))
    elif mode == "scale":
        from bench.snmp_pipeline import measure_scale, snmp_specs

        specs = snmp_specs(args["addresses"], args["port"], args["interval"])
        result = asyncio.run(measure_scale(specs, args["interval"], args["warmup"], args["windows"],
                                           args["agent_pids"], float(args.get("settle_max", 0.0))))
    elif mode == "ssh_rates":
        from bench.ssh_bench import measure_rates

        result = asyncio.run(measure_rates(args))
    elif mode == "ssh_scale":
        from bench.snmp_pipeline import measure_scale
        from bench.ssh_bench import ssh_specs

        specs = ssh_specs(args)
        result = asyncio.run(measure_scale(specs, args["interval"], args["warmup"], args["windows"],
                                           args["agent_pids"]))
    elif mode == "scaleout_snmp":
        from bench.scaleout_snmp import measure as measure_scaleout

        result = measure_scaleout(args)
    elif mode == "cli":
        from bench.snmp_cli import measure as measure_cli

        result = measure_cli(args["addresses"], args["port"])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print("RESULT " + json.dumps(result), flush=True)
    # Everything was cleaned up inside the measurement; threads a collector left blocked must not keep us.
    os._exit(0)


if __name__ == "__main__":
    main()
