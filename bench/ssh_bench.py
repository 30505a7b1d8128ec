"""SSH checks per second: pooled paramiko connections, a fresh connection per check, and OpenSSH ControlMaster."""

from __future__ import annotations

import asyncio
import gc
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agents import ssh as ssh_agent
from agents.base import SshCredentials, Target
from agents.ssh_parsers import build_script
from bench.common import Stopwatch, children_cpu, quantile
from bench.profiling import pid_cpu, tree_cpu

SSH = "/usr/bin/ssh"
# Five custom checks besides the fixed system script: six commands per collect().
COMMANDS: tuple[dict[str, Any], ...] = (
    {"name": "loadavg", "command": "cat /proc/loadavg", "value_regex": r"^([0-9.]+)"},
    {"name": "kernel", "command": "uname -r"},
    {"name": "root-fs", "command": "df -P /", "regex": "/"},
    {"name": "uptime", "command": "cat /proc/uptime", "value_regex": r"^([0-9.]+)"},
    {"name": "tmp-dir", "command": "test -d /tmp"},
)


def command_lines() -> list[str]:
    """The six command lines one collect() runs: the system script and the custom checks."""
    return [build_script(secrets.token_hex(8)), *(c["command"] for c in COMMANDS)]


def key_links(args: dict[str, Any]) -> list[str]:
    """One key path per simulated server (symlinks to the same key, made by bench.run)."""
    return sorted(str(p) for p in Path(args["key_dir"]).iterdir())


def target(args: dict[str, Any], key_file: str, name: str = "srv") -> Target:
    """A Target for the bench sshd; distinct key_file paths make distinct pooled connections."""
    creds = SshCredentials(user=args["user"], key_file=key_file, host_keys=(args["host_key"],))
    return Target("127.0.0.1", args["port"], name, ssh=creds, timeout=10.0, options={"commands": list(COMMANDS)})


def ssh_specs(args: dict[str, Any]) -> list[dict[str, Any]]:
    """Inventory entries for `servers` SSH servers, all on the bench sshd, each its own connection."""
    return [
        {"name": f"srv{i:04d}", "address": "127.0.0.1", "interval": args["interval"],
         "ssh": {"port": args["port"], "user": args["user"], "key_file": key, "host_key": [args["host_key"]],
                 "commands": list(COMMANDS), "timeout": 10}}
        for i, key in enumerate(key_links(args)[: args["servers"]])
    ]


async def _drive(workers: int, duration: float, step: Callable[[int, int], Awaitable[int]],
                 server_pids: list[int] | None = None) -> dict[str, Any]:
    """Run `step(worker, i)` in `workers` loops for `duration` s; each step returns commands done."""
    stop_at = time.perf_counter() + duration
    done = [0] * workers
    latencies: list[float] = []
    errors: list[str] = []

    async def loop(w: int) -> None:
        i = 0
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            try:
                done[w] += await step(w, i)
            except Exception as exc:  # a failed check is counted, never fatal to the benchmark
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
            latencies.append(time.perf_counter() - start)
            i += 1

    gc.collect()
    cpu0, server0 = children_cpu(), tree_cpu(server_pids or [])
    watch = Stopwatch()
    await asyncio.gather(*(loop(w) for w in range(workers)))
    cpu, wall = watch.stop()
    server = tree_cpu(server_pids or []) - server0
    commands = sum(done)
    return {
        "commands": commands,
        "steps": len(latencies),
        "wall_s": wall,
        "per_s": commands / wall,
        "cpu_s": cpu,
        "children_cpu_s": children_cpu() - cpu0,
        "cpu_ms_per_command": cpu / max(1, commands) * 1000,
        "server_cpu_ms_per_command": server / max(1, commands) * 1000,
        "latency_p50_ms": quantile(latencies, 0.5) * 1000,
        "latency_p99_ms": quantile(latencies, 0.99) * 1000,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


async def measure_rates(args: dict[str, Any]) -> dict[str, Any]:
    """Reused vs fresh vs OpenSSH ControlMaster, and full collect() calls, on `workers` servers."""
    workers, duration, server = args["workers"], args["duration"], args.get("agent_pids", [])
    keys = key_links(args)[:workers]
    lines = command_lines()
    collector = ssh_agent.SshCollector()
    targets = [target(args, k, f"srv{w}") for w, k in enumerate(keys)]
    results: dict[str, Any] = {"workers": workers, "commands_per_collect": len(lines),
                               "pool_max": getattr(ssh_agent, "MAX_CONNECTIONS", None)}
    for t in targets:  # log in once per server before timing the reused path
        await collector.run_command(t, "true")

    async def reused(w: int, i: int) -> int:
        await collector.run_command(targets[w], lines[i % len(lines)])
        return 1

    async def collect(w: int, _i: int) -> int:
        await collector.collect(targets[w])
        return len(lines)

    async def fresh(w: int, i: int) -> int:
        await ssh_agent.run_command(targets[w], lines[i % len(lines)])
        return 1

    opened0 = collector.connections_opened
    results["reused"] = await _drive(workers, duration, reused, server)
    results["collect"] = await _drive(workers, duration, collect, server)
    results["collect"]["collects_per_s"] = results["collect"]["steps"] / results["collect"]["wall_s"]
    results["collect"]["cpu_ms_per_collect"] = results["collect"]["cpu_s"] / max(1, results["collect"]["steps"]) * 1000
    results["reused_connections_opened"] = collector.connections_opened - opened0
    await collector.close()
    results["fresh"] = await _drive(workers, duration, fresh, server)
    results["openssh"] = await _openssh(args, workers, duration, lines, server)
    return results


def _ssh_argv(args: dict[str, Any], key: str, control: Path) -> list[str]:
    return [
        SSH, "-p", str(args["port"]), "-i", key, "-l", args["user"],
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={args['known_hosts']}",
        "-o", "StrictHostKeyChecking=yes", "-o", "ControlMaster=auto", "-o", f"ControlPath={control}",
        "-o", "ControlPersist=120", "-o", "LogLevel=ERROR", "127.0.0.1",
    ]


async def _run(argv: list[str]) -> int:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    await proc.communicate()
    return proc.returncode or 0


async def _master_pid(base: list[str]) -> int | None:
    proc = await asyncio.create_subprocess_exec(*base[:-1], "-O", "check", base[-1], stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    found = re.search(rb"pid=(\d+)", out + err)
    return int(found.group(1)) if found else None


async def _openssh(args: dict[str, Any], workers: int, duration: float, lines: list[str],
                   server: list[int]) -> dict[str, Any]:
    """OpenSSH's client per command, multiplexed over one ControlMaster per server."""
    control_dir = Path(args["control_dir"])
    bases = [_ssh_argv(args, k, control_dir / f"cm{w}") for w, k in enumerate(key_links(args)[:workers])]
    for base in bases:
        if await _run([*base, "true"]):
            return {"error": "ssh with ControlMaster failed to log in"}
    masters = [p for p in [await _master_pid(b) for b in bases] if p]
    master_cpu0 = sum(pid_cpu(p) for p in masters)

    async def step(w: int, i: int) -> int:
        code = await _run([*bases[w], lines[i % len(lines)]])
        if code not in (0, 1):
            raise RuntimeError(f"ssh exited {code}")
        return 1

    result = await _drive(workers, duration, step, server)
    master_cpu = sum(pid_cpu(p) for p in masters) - master_cpu0
    result["masters"] = len(masters)
    result["client_cpu_ms_per_command"] = (result["children_cpu_s"] + master_cpu) / max(1, result["commands"]) * 1000
    for base in bases:
        await _run([*base[:-1], "-O", "exit", base[-1]])
    return result
