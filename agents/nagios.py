"""Check kind `nagios`: run a monitoring-plugins / Nagios plug-in here or over SSH and read its answer.

Inventory (options): command (absolute path inside an allowed plug-in directory), args (a list of strings,
never a shell line), via ("local", the default, or "ssh": the device's pinned SSH login). The exit status gives
the state (0/1/2/3 = ok/warning/critical/unknown), the first line the text, perfdata become samples; the
perfdata's own warn/crit ranges can only make the state worse. Output is read bounded (first 64 KiB kept, the
rest drained and counted), a plug-in that overruns its timeout is killed with its process group.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import shlex
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents.base import CollectError, Collector, Reading, Sample, Target, register
from agents.nagios_perf import STATES, PluginState, exit_problem, parse_output, state_of_exit, threshold_state
from agents.ssh_parsers import clean_text

if TYPE_CHECKING:  # paramiko (through agents.ssh) is imported when a plug-in first runs over SSH, not by
    # every command that validates a config (check-config, user, token)
    from agents.ssh import SshCollector

KEEP_BYTES = 64 * 1024
STDERR_KEEP = 8 * 1024
MAX_ARGS = 64
DEFAULT_DIRS = ("/usr/lib/nagios/plugins", "/usr/lib/monitoring-plugins")
_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "LANG": "C"}
# Plug-ins whose job is to run another command (negate, urlize) or that run one from their options (check_by_ssh's
# -o ProxyCommand=, -F config): allowing them would make "inside plugin_dirs" allow any command at all.
RUNS_OTHERS = frozenset({"negate", "urlize", "check_by_ssh"})
_SET_BY_SERVER = ("timeout", "port", "plugin_dirs")  # options the poller adds to what the inventory says
_DRAIN_AFTER_KILL = 1.0  # seconds to wait for the pipes once the process group is killed


@dataclass(frozen=True, slots=True)
class Run:
    """What one plug-in run did: exit status (negative: killed by that signal), kept output, bytes seen."""

    exit_code: int | None
    stdout: bytes
    stderr: bytes
    total_bytes: int
    timed_out: bool = False
    stopped: str | None = None  # why it was stopped before it exited, other than the timeout


def option_problem(options: Mapping[str, object]) -> str | None:
    """Why a nagios check's options cannot work (for the inventory's validation), or None."""
    command, args, via = options.get("command"), options.get("args", []), options.get("via", "local")
    if not isinstance(command, str) or not command:
        return "a nagios check needs options.command, the plug-in's absolute path"
    if not command.startswith("/") or posixpath.normpath(command) != command or "\x00" in command:
        return f"options.command must be a normalised absolute path (no '..'), not {command[:80]!r}"
    if posixpath.basename(command) in RUNS_OTHERS:
        name = posixpath.basename(command)
        return f"{name} runs other commands, so it cannot be a nagios check here; run the plug-in it wraps directly"
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        return "options.args must be a list of strings: quote numbers, e.g. ['-w', '5']"
    if len(args) > MAX_ARGS or any("\x00" in a or "\n" in a for a in args):
        return f"options.args: at most {MAX_ARGS} arguments, without NUL or newline"
    if via not in ("local", "ssh"):
        return "options.via is 'local' (run on the pocketnoc host) or 'ssh' (run on the device)"
    extra = set(options) - {"command", "args", "via"}
    if extra:
        return f"unknown nagios option(s): {', '.join(sorted(extra))} (command, args, via)"
    return None


def allowed(command: str, dirs: Sequence[str]) -> bool:
    """Whether command is a file directly or deeper inside one of the allowed directories."""
    normal = posixpath.normpath(command)
    return normal == command and any(normal.startswith(d.rstrip("/") + "/") for d in dirs if d.startswith("/"))


async def _drain(stream: asyncio.StreamReader | None, keep: int, sink: bytearray) -> int:
    """Read a pipe to its end, keeping the first `keep` bytes; returns how many bytes it carried."""
    total = 0
    if stream is None:
        return 0
    while chunk := await stream.read(65536):
        total += len(chunk)
        room = keep - len(sink)
        if room > 0:
            sink += chunk[:room]
    return total


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def run_local(argv: Sequence[str], limit: float) -> Run:
    """Run argv (no shell) in its own session; kill the whole group at `limit` seconds."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, env=_ENV, cwd="/",
        )
    except FileNotFoundError:
        return Run(127, b"", b"", 0)
    except PermissionError:
        return Run(126, b"", b"", 0)
    except OSError as exc:
        raise CollectError(f"cannot start the plug-in: {exc.strerror or exc}") from None
    out, err = bytearray(), bytearray()
    readers = asyncio.gather(_drain(proc.stdout, KEEP_BYTES, out), _drain(proc.stderr, STDERR_KEEP, err))
    timed_out = False
    try:
        async with asyncio.timeout(limit):
            await proc.wait()
            await asyncio.shield(readers)  # a child left holding the pipe counts against the same limit
    except TimeoutError:
        timed_out = True
        _kill_group(proc.pid)
    except BaseException:
        _kill_group(proc.pid)
        readers.cancel()
        raise
    if timed_out:
        try:
            async with asyncio.timeout(_DRAIN_AFTER_KILL):
                await proc.wait()
                await asyncio.shield(readers)
        except TimeoutError:
            readers.cancel()
    totals = readers.result() if readers.done() and not readers.cancelled() else (len(out), len(err))
    return Run(None if timed_out else proc.returncode, bytes(out), bytes(err), int(totals[0]), timed_out)


def _result(run: Run, limit: float, started: float) -> Reading:
    notes: list[str] = []
    text = clean_text(run.stdout, KEEP_BYTES)
    parsed = parse_output(text)
    notes.extend(parsed.notes)
    if run.total_bytes > KEEP_BYTES:
        notes.append(f"output was {run.total_bytes} bytes; the first {KEEP_BYTES} were read")
    state: PluginState = state_of_exit(run.exit_code)
    status_text = parsed.text
    if run.timed_out:
        status_text = f"timed out after {limit:g} s"
    elif run.stopped is not None:
        status_text = run.stopped
    elif (why := exit_problem(run.exit_code)) is not None:
        stderr = clean_text(run.stderr, 300).strip().split("\n")[0]
        status_text = why + (f": {stderr}" if stderr else (f": {parsed.text}" if parsed.text else ""))
    elif state != "unknown":
        by_perf = threshold_state(parsed.perf, notes)
        if STATES.index(by_perf) > STATES.index(state):
            notes.append(f"the perfdata thresholds say {by_perf}, the exit status {state}")
            state = by_perf
    if not status_text:
        status_text = clean_text(run.stderr, 300).strip().split("\n")[0] or "(no output)"
    reading = Reading(duration=time.monotonic() - started)
    if not run.timed_out:
        for item in parsed.perf:
            sample = Sample(item.metric, item.value, {"perf": item.label}, "counter64" if item.counter else "gauge")
            reading.samples.append(sample)
    reading.facts = {
        "plugin_state": state,
        "plugin_output": status_text[:1024],
        "plugin_long": "\n".join(parsed.long)[:4096] or None,
        "plugin_exit": run.exit_code,
        "plugin_notes": notes[:12] or None,
    }
    if state != "ok":
        said = state.upper() in status_text[:40].upper()  # "DISK WARNING - ..." says it already
        reading.problem = (status_text if said else f"{state.upper()}: {status_text}")[:500]
    return reading


class NagiosCollector:
    """Runs one plug-in per collect(); over SSH through the SSH collector the poller lends it (its pool of logged-in
    connections, the same pinned host keys), so a device checked by both is logged into once per interval."""

    kind = "nagios"
    borrows = ("ssh",)

    def __init__(self) -> None:
        self._ssh: SshCollector | None = None  # lent by the poller, else made on first use
        self._owns_ssh = False

    def lend(self, kind: str, collector: Collector) -> None:
        """Run remote plug-ins through this SSH collector (the poller's own; closed by the poller, not here)."""
        from agents.ssh import SshCollector

        if kind == "ssh" and isinstance(collector, SshCollector):
            self._ssh, self._owns_ssh = collector, False

    async def collect(self, target: Target, profile: str | None = None) -> Reading:
        """Check the options, run the plug-in (bounded), and read its state, text and perfdata."""
        options = target.options or {}
        problem = option_problem({k: v for k, v in options.items() if k not in _SET_BY_SERVER})
        if problem is not None:
            raise CollectError(problem)
        command, args = str(options["command"]), [str(a) for a in options.get("args", [])]
        dirs = options.get("plugin_dirs") or DEFAULT_DIRS
        dirs = [str(d) for d in dirs] if isinstance(dirs, list | tuple) else list(DEFAULT_DIRS)
        if not allowed(command, dirs):
            raise CollectError(f"{command} is not inside an allowed plug-in directory ({', '.join(dirs)})")
        limit = max(0.1, float(target.timeout))
        started = time.monotonic()
        if options.get("via", "local") == "ssh":
            run = await self._remote(target, command, args, limit)
        else:
            run = await run_local([command, *args], limit)
        return _result(run, limit, started)

    async def _remote(self, target: Target, command: str, args: list[str], limit: float) -> Run:
        if target.ssh is None:
            raise CollectError("a nagios check via ssh needs the device's ssh block")
        if self._ssh is None:
            from agents.ssh import SshCollector

            self._ssh, self._owns_ssh = SshCollector(), True
        # SSH runs every command through the remote user's shell: quote each word so it stays one argument.
        # At the timeout the SSH layer asks sshd to KILL the command's process group (children included).
        line = " ".join(shlex.quote(word) for word in (command, *args))
        result = await self._ssh.run_command(target, line, timeout=limit, max_bytes=KEEP_BYTES)
        size = len(result.stdout) + (1 if result.truncated else 0)
        exit_code = None if result.timed_out else result.exit_code
        if result.truncated and result.exit_code is None and not result.timed_out:
            return Run(None, result.stdout, result.stderr, size, stopped="output over 64 KiB; the remote plug-in was stopped")
        return Run(exit_code, result.stdout, result.stderr, size, result.timed_out)

    async def close(self) -> None:
        """Close the SSH connections of a collector it made (a lent one is its owner's to close)."""
        if self._ssh is not None and self._owns_ssh:
            await self._ssh.close()


register("nagios", NagiosCollector)
