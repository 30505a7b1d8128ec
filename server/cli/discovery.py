"""`pocketnoc discover`: run discovery from the command line (or cron), list runs, show and approve proposals.

Credentials come from a YAML/JSON file (or stdin with `-`), never from the command line, where `ps` shows them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.config.settings import Settings

if TYPE_CHECKING:
    from server.services.discovery import DiscoveryRunView

ACTIONS = ("run", "list", "show", "approve", "rerun", "due")


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[[argparse.ArgumentParser], None]
) -> None:
    """The `discover` subcommand and its actions."""
    p = sub.add_parser("discover", help="find devices on ranges (SNMP, LLDP/CDP neighbours); approve what it proposes")
    p.add_argument("action", choices=ACTIONS, help="run: sweep now; list; show/approve/rerun RUN; due: scheduled re-runs")
    p.add_argument("run_id", nargs="?", type=int, help="the run (show, approve, rerun)")
    p.add_argument("--range", dest="ranges", action="append", default=[], help="CIDR range to sweep (repeat for more)")
    p.add_argument("--seed", default=None, help="an address or device name whose LLDP/CDP neighbours are followed")
    p.add_argument("--credentials", default=None, help="YAML/JSON file: `snmp:` (a list, v3 tried first), `ssh:`; - is stdin")
    p.add_argument("--confirm-large", action="store_true", help="allow ranges wider than a /16")
    p.add_argument("--fdb", action="store_true", help="also read forwarding tables (MAC addresses per port)")
    p.add_argument("--no-sweep", action="store_true", help="probe only the seed and the neighbours it leads to")
    p.add_argument("--rate", type=float, default=None, help="probes per second (default 300)")
    p.add_argument("--every", type=int, default=None, help="minutes between scheduled re-runs")
    p.add_argument("--all", action="store_true", help="approve: every proposal that answered SNMP")
    p.add_argument("--id", dest="ids", type=int, action="append", default=[], help="approve: this proposal (repeat)")
    p.add_argument("--json", action="store_true", help="print JSON")
    common(p)


def _fail(message: str) -> int:
    print(f"pocketnoc: {message}", file=sys.stderr)
    return 1


def _credentials(path: str | None) -> dict[str, Any]:
    import yaml

    if path is None:
        raise ValueError("give --credentials FILE (snmp: [...]); credentials are never taken from the command line")
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read credentials: {type(exc).__name__}") from None
    if not isinstance(data, dict) or set(data) - {"snmp", "ssh"}:
        raise ValueError(f"{path}: give a mapping with snmp: (a list) and optionally ssh:")
    return data


def _body(args: argparse.Namespace) -> Any:
    from server.services.discovery_bodies import DiscoveryRequest

    data: dict[str, Any] = {**_credentials(args.credentials), "ranges": args.ranges, "seed": args.seed,
                            "confirm_large": args.confirm_large, "fdb": args.fdb, "sweep": not args.no_sweep,
                            "every": args.every}
    if args.rate is not None:
        data["rate"] = args.rate
    return DiscoveryRequest.model_validate(data)


def _print_run(view: DiscoveryRunView, as_json: bool) -> None:
    if as_json:
        print(json.dumps(view, default=str))
        return
    took = (view["finished_at"] or time.time()) - view["created_at"]
    print(f"run {view['id']}: {view['status']} · {view['addresses']} addresses · {view['probes']} probes · {took:.1f} s")
    if view.get("error"):
        print(f"  error: {view['error']}")
    counts = view["counts"]
    print(f"  {counts['new']} new, {counts['changed']} changed, {counts['gone']} gone, {counts['same']} unchanged")
    print("ID\tSTATUS\tCHANGE\tNAME\tADDRESS\tKIND\tPARENT")
    for f in view["items"]:
        if f["facts"].get("credential") is None and f["change"] != "gone":
            continue  # ping-only answers: see --json
        kind = f["facts"].get("kind") or "-"
        print(f"{f['id']}\t{f['status']}\t{f['change']}\t{f['name']}\t{f['address']}\t{kind}\t{f['parent'] or '-'}")


def cmd_discover(args: argparse.Namespace, settings: Settings) -> int:
    """Run the chosen `discover` action against the configured database."""
    from pydantic import ValidationError

    from server.cli.security import key_problem
    from server.config.inventory import error_list
    from server.services import discovery, discovery_schedule
    from server.services.discovery_bodies import ApproveRequest
    from server.services.errors import ServiceError

    problem = key_problem(settings)
    if problem:
        return _fail(problem)
    svc = _services(settings)
    try:
        if args.action == "list":
            for r in discovery.list_runs(svc):
                print(f"{r['id']}\t{r['status']}\t{','.join(r['ranges'])}\t{r['probes']} probes")
            return 0
        if args.action == "due":
            now = time.time()
            for run_id in discovery.due(svc, now):
                new_id = discovery_schedule.rerun_due(svc, run_id, now)  # a serve process may have started it
                if new_id is not None:
                    _run(svc, new_id, args.json)
            return 0
        if args.action == "run":
            _run(svc, discovery.start(svc, None, None, _body(args)), args.json)
            return 0
        if args.run_id is None:
            return _fail(f"discover {args.action} needs a run id")
        if args.action == "show":
            _print_run(discovery.run_view(svc, args.run_id), args.json)
        elif args.action == "rerun":
            _run(svc, discovery.rerun(svc, None, None, args.run_id), args.json)
        else:
            added = discovery.approve(svc, None, None, args.run_id, ApproveRequest(ids=args.ids, all=args.all))
            for a in added:
                print(f"added {a['name']} ({a['address']})" + (f" behind {a['parent']}" if a["parent"] else ""))
        return 0
    except ValidationError as exc:
        return _fail("; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in error_list(exc.errors())))
    except (ServiceError, ValueError) as exc:
        return _fail(getattr(exc, "message", str(exc)))
    finally:
        svc.engine.dispose()


def _run(svc: Any, run_id: int, as_json: bool) -> None:
    from server.services import discovery

    asyncio.run(discovery.execute(svc, run_id))
    _print_run(discovery.run_view(svc, run_id), as_json)


def _services(settings: Settings) -> Any:
    from server.keys.secretbox import SecretBox
    from server.runtime import Services
    from server.store import filemodes
    from server.store.db import make_engine, migrate

    filemodes.prepare(settings.data_dir, settings.db_url)
    engine = make_engine(settings.db_url)
    migrate(engine)
    return Services(settings=settings, engine=engine, reader=engine, box=SecretBox.from_file(settings.key_file))
