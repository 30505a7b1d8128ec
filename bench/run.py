"""Run every benchmark and write BENCHMARKS.md: `python -m bench.run [--quick] [--out PATH]`."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import machine, netns
from bench import notify as notify_bench
from bench import oncall as oncall_bench
from bench import pages as pages_bench
from bench import terminal as terminal_bench
from bench.fleet import Fleet
from bench.neighbour import Neighbour
from bench.report import render

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "pnbench"
# Devices polled at once by the bare baseline: enough to overlap round trips, few enough that a
# CPU-bound client does not queue its own requests past their timeout.
BARE_CONCURRENCY = 16

QUICK: dict[str, Any] = {
    "name": "quick", "ac_devices": 60, "rounds": 2, "trials": 1, "cli_devices": 5, "profile": False,
    "scale": [(300, 15)], "ssh_workers": 4, "ssh_duration": 3.0, "ssh_servers": 40, "ssh_interval": 15,
}
FULL: dict[str, Any] = {
    "name": "full", "ac_devices": 100, "rounds": 3, "trials": 2, "cli_devices": 30, "profile": True,
    "scale": [(1000, 60), (2500, 60), (5000, 60)], "ssh_workers": 8, "ssh_duration": 10.0, "ssh_servers": 500,
    "ssh_interval": 60,
}


class Interrupted(Exception):
    """SIGTERM arrived: clean up as for Ctrl-C."""


def _on_term(_sig: int, _frame: Any) -> None:
    raise Interrupted


class Bench:
    """Owns the namespace, the snmpd fleet and sshd; runs each measurement in a worker process."""

    def __init__(self, plan: dict[str, Any], log_dir: Path, namespace: str = NAMESPACE) -> None:
        self.plan = plan
        self.log_dir = log_dir
        self.namespace = namespace  # another benchmark beside this one uses its own
        self.ns: netns.Namespace | None = None
        self.fleet: Fleet | None = None
        self.results: dict[str, Any] = {"plan": {k: v for k, v in plan.items()}, "notes": []}

    def say(self, text: str) -> None:
        """Progress on stderr."""
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def worker(self, mode: str, args: dict[str, Any], timeout: float, in_ns: bool = True) -> dict[str, Any]:
        """Run `python -m bench.worker MODE ARGS` (inside the namespace when there is one); its JSON result."""
        prefix = self.ns.prefix() if (in_ns and self.ns is not None) else []
        stamp = int(time.time() * 1000)
        # The arguments go in a file: 10,000 addresses in one argv string pass the kernel's 128 KB per-argument
        # limit (E2BIG, "Argument list too long" from `ip netns exec`).
        args_file = self.log_dir / f"{mode}-{stamp}.args.json"
        args_file.write_text(json.dumps(args))
        cmd = [*prefix, sys.executable, "-m", "bench.worker", mode, f"@{args_file}"]
        log = self.log_dir / f"{mode}-{stamp}.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err)
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                raise RuntimeError(f"worker {mode} gave no result within {timeout:.0f} s (log: {log})") from None
            except BaseException:
                proc.kill()
                proc.wait(timeout=10)
                raise
        for line in out.decode(errors="replace").splitlines():
            if line.startswith("RESULT "):
                result: dict[str, Any] = json.loads(line[len("RESULT "):])
                self.checkpoint()
                return result
        tail = log.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"worker {mode} exited {proc.returncode} without a result:\n{tail}")

    def checkpoint(self) -> None:
        """Save the figures so far, so a crash late in the run loses nothing measured before it."""
        (self.log_dir / "results.json").write_text(json.dumps(self.results, indent=1))

    def setup_agents(self, devices: int) -> None:
        """Namespace with 24 veth ports and the snmpd fleet (root-namespace fallback without netns)."""
        work = Path(tempfile.mkdtemp(prefix="pnbench-snmpd-"))
        if netns.available():
            self.ns = netns.Namespace(self.namespace)
            self.ns.create()
            self.results["agents"] = {"netns": True, "links": self.ns.interfaces(), "port": 161}
            self.fleet = Fleet(work, devices, 161, prefix=self.ns.prefix())
        else:
            from tests.peers.snmpd import free_udp_port

            port = free_udp_port()
            self.results["agents"] = {"netns": False, "links": None, "port": port}
            self.results["notes"].append("no network namespace available: snmpd ran in the root namespace and "
                                         "reports this host's own interfaces, not 24 ports")
            self.fleet = Fleet(work, devices, port, base=201)
        self.say(f"starting {devices} simulated devices")
        started = time.perf_counter()
        self.fleet.start()
        self.results["agents"].update(devices=devices, snmpd_processes=len(self.fleet.procs),
                                      start_s=time.perf_counter() - started)

    def snmp(self) -> None:
        """(a), (b), (c) alternated in trials, the profile, then (d) at each scale point."""
        assert self.fleet is not None
        p, port = self.plan, self.fleet.port
        addrs = self.fleet.addresses()
        ac = addrs[: p["ac_devices"]]
        rounds_timeout = 900.0
        trials: dict[str, list[dict[str, Any]]] = {"bare": [], "pipeline": []}
        for trial in range(p["trials"]):
            self.say(f"(a) bare pysnmp, trial {trial + 1}")
            trials["bare"].append(self.worker("bare", {"addresses": ac, "port": port, "rounds": p["rounds"],
                                                       "concurrency": BARE_CONCURRENCY, "workload": "collector"}, rounds_timeout))
            self.say(f"(c) whole pipeline, trial {trial + 1}")
            trials["pipeline"].append(self.worker("pipeline", {"addresses": ac, "port": port,
                                                               "rounds": p["rounds"]}, rounds_timeout))
        self.results["bare"] = trials["bare"]
        self.results["pipeline"] = trials["pipeline"]
        for workload in ("full", "reference"):
            self.say(f"(a) bare pysnmp, {workload} workload")
            self.results[f"bare_{workload}"] = self.worker(
                "bare", {"addresses": ac, "port": port, "rounds": 2, "concurrency": BARE_CONCURRENCY,
                         "workload": workload}, rounds_timeout)
        self.say("(b) snmpbulkwalk")
        self.results["cli"] = self.worker("cli", {"addresses": addrs[: p["cli_devices"]], "port": port}, 600)
        if p["profile"]:
            self.say("(c) whole pipeline under cProfile")
            self.results["profile"] = self.worker("pipeline", {"addresses": ac, "port": port, "rounds": 2,
                                                               "profile": True}, rounds_timeout)
        self.say("(c) memory by allocation site (tracemalloc)")
        self.results["memory"] = self.worker("pipeline", {"addresses": ac[:40], "port": port, "rounds": 2,
                                                          "memory": True}, rounds_timeout)
        self._scale(p["scale"])

    def _scale(self, points: list[tuple[int, int]], repeat: int = 1, neighbour: bool = False,
               warmup_intervals: int = 1, settle_intervals: int = 0) -> None:
        """(d): the real dispatcher keeping an interval for N devices, for each (N, interval), `repeat` times each,
        beside a busy neighbour process when asked."""
        assert self.fleet is not None
        port, addrs = self.fleet.port, self.fleet.addresses()
        self.results["scale"] = []
        for devices, interval in points:
            for run in range(repeat):
                warmup, windows, settle = warmup_intervals * interval + 5.0, 2, settle_intervals * interval
                self.say(f"(d) {devices} devices every {interval}s, run {run + 1}/{repeat}"
                         f"{' beside a busy neighbour' if neighbour else ''}: {warmup:.0f}s warm-up"
                         f"{f' (+ up to {settle}s until settled)' if settle else ''} + {windows} intervals")
                args = {"addresses": addrs[:devices], "port": port, "interval": interval, "warmup": warmup,
                        "settle_max": float(settle), "windows": windows,
                        "agent_pids": [proc.pid for proc in self.fleet.procs]}
                load = machine.loadavg()
                with Neighbour(neighbour) as busy:
                    try:
                        row = self.worker("scale", args, warmup + settle + windows * interval + 600)
                    except RuntimeError as exc:
                        row = {"devices": devices, "interval_s": interval, "error": str(exc)[-500:]}
                row.update(run=run + 1, load_before=load, neighbour=busy.kind, neighbour_cpu_util=busy.cpu_util)
                self.results["scale"].append(row)
                self.checkpoint()

    def scale_only(self, points: list[int], interval: int, repeat: int = 1, neighbour: bool = False,
                   warmup_intervals: int = 1, settle_intervals: int = 0) -> None:
        """Only (c) once (CPU per poll, memory per device) and (d) at the given device counts."""
        assert self.fleet is not None
        port, addrs = self.fleet.port, self.fleet.addresses()
        ac = addrs[: self.plan["ac_devices"]]
        self.say("(c) whole pipeline")
        self.results["pipeline"] = [self.worker("pipeline", {"addresses": ac, "port": port, "rounds": self.plan["rounds"]},
                                                900.0)]
        self.say("(c) memory by allocation site (tracemalloc)")
        self.results["memory"] = self.worker("pipeline", {"addresses": ac[:40], "port": port, "rounds": 2,
                                                          "memory": True}, 900.0)
        self._scale([(devices, interval) for devices in points], repeat, neighbour, warmup_intervals, settle_intervals)

    def teardown_agents(self) -> None:
        """Stop snmpd and delete the namespace (killing anything of ours still inside)."""
        if self.fleet is not None:
            self.fleet.stop()
            shutil.rmtree(self.fleet.workdir, ignore_errors=True)
            self.fleet = None
        if self.ns is not None:
            self.ns.delete()
            self.ns = None

    def ssh(self) -> None:
        """SSH rates and the many-servers interval run against one local sshd."""
        from tests.peers.sshd import start_sshd

        tmp = Path(tempfile.mkdtemp(prefix="pnbench-ssh-"))
        control = Path(tempfile.mkdtemp(prefix="pncm-", dir="/tmp"))
        peer = None
        try:
            peer = start_sshd(tmp)
            p = self.plan
            links = []
            for i in range(max(p["ssh_servers"], p["ssh_workers"])):
                link = tmp / "keys" / f"id_{i:04d}"
                link.parent.mkdir(exist_ok=True)
                link.symlink_to(peer.key_path)
                links.append(str(link))
            known = tmp / "known_hosts"
            known.write_text(f"[127.0.0.1]:{peer.port} {peer.host_key_line}\n")
            base = {"port": peer.port, "user": peer.user, "host_key": peer.host_key_line, "key_dir": str(tmp / "keys"),
                    "known_hosts": str(known), "control_dir": str(control)}
            sshd_pid = peer._proc.pid
            self.say("SSH: reused vs fresh vs OpenSSH ControlMaster")
            self.results["ssh_rates"] = self.worker(
                "ssh_rates", {**base, "workers": p["ssh_workers"], "duration": p["ssh_duration"],
                              "agent_pids": [sshd_pid]}, 600, in_ns=False)
            interval = p["ssh_interval"]
            warmup = interval + 5.0
            self.say(f"SSH: {p['ssh_servers']} servers every {interval}s")
            args = {**base, "servers": p["ssh_servers"], "interval": interval, "warmup": warmup, "windows": 1,
                    "agent_pids": [sshd_pid]}
            try:
                self.results["ssh_scale"] = self.worker("ssh_scale", args, warmup + interval + 600, in_ns=False)
            except RuntimeError as exc:
                self.results["ssh_scale"] = {"devices": p["ssh_servers"], "error": str(exc)[-500:]}
        finally:
            if peer is not None:
                peer.stop()
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(control, ignore_errors=True)


def _scaleout_section(results: dict[str, Any]) -> str:
    from bench import scaleout, scaleout_snmp

    return scaleout.section(results.get("scaleout")) + scaleout_snmp.section(results.get("scaleout_snmp"), heading=True)


def _report(results: dict[str, Any]) -> str:
    """BENCHMARKS.md from the figures: SNMP and SSH, then each other part's own section."""
    from bench import alerts as alerts_bench

    return (render(results) + _scaleout_section(results) + alerts_bench.section(results.get("alerts"))
            + notify_bench.section(results.get("notify")) + pages_bench.section(results.get("pages"))
            + oncall_bench.section(results.get("oncall"))
            + terminal_bench.section(results.get("terminal")))


def _scale_only(points: list[int], interval: int, repeat: int = 1, neighbour: bool = False,
                warmup_intervals: int = 1, settle_intervals: int = 0) -> None:
    from bench.report import _memory, _scale

    signal.signal(signal.SIGTERM, _on_term)
    log_dir = Path(tempfile.mkdtemp(prefix="pnbench-logs-"))
    bench = Bench(FULL, log_dir)
    bench.results["machine"] = machine.facts()
    try:
        bench.setup_agents(max(points))
        bench.scale_only(points, interval, repeat, neighbour, warmup_intervals, settle_intervals)
    except (KeyboardInterrupt, Interrupted):
        bench.say("interrupted: cleaned up")
        sys.exit(130)
    finally:
        bench.teardown_agents()
    bench.results["machine"]["load_end"] = machine.loadavg()
    (log_dir / "results.json").write_text(json.dumps(bench.results, indent=1))
    c = bench.results["pipeline"][0]
    lines = [f"load average (1 min) at start / end: {bench.results['machine']['load_start']:.2f} / "
             f"{bench.results['machine']['load_end']:.2f}",
             f"(c) whole pipeline: {c['cpu_ms_per_poll']:.1f} ms CPU per poll (event loop {c['loop_thread_ms_per_poll']:.1f} ms,"
             f" writer {c['writer_thread_ms_per_poll']:.1f} ms), {c['samples_per_poll']:.0f} samples per poll",
             *_scale(bench.results), *_memory(bench.results)]
    print("\n".join(lines))
    bench.say(f"raw figures: {log_dir}/results.json")


def main() -> None:
    """Parse flags, run everything with cleanup on any exit, write the report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small N and short runs (about 2 minutes)")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"), help="where to write the report")
    parser.add_argument("--skip-ssh", action="store_true")
    parser.add_argument("--skip-snmp", action="store_true")
    parser.add_argument("--skip-scaleout", action="store_true", help="skip queue workers on PostgreSQL")
    parser.add_argument("--skip-scaleout-snmp", action="store_true",
                        help="skip SNMP devices on serve + queue workers against in-process (about 30 minutes)")
    parser.add_argument("--skip-alerts", action="store_true", help="skip trap-to-alert latency and rule cost")
    parser.add_argument("--skip-notify", action="store_true", help="skip the notification benchmark")
    parser.add_argument("--skip-pages", action="store_true", help="skip the phone page budgets")
    parser.add_argument("--skip-oncall", action="store_true", help="skip the on-call path, push to verified")
    parser.add_argument("--skip-terminal", action="store_true", help="skip the browser terminal's echo and load figures")
    parser.add_argument("--render", metavar="RESULTS_JSON", help="only re-render a report from saved figures")
    parser.add_argument("--merge", metavar="RESULTS_JSON",
                        help="start from saved figures and replace only the parts run now (use with --skip-*)")
    parser.add_argument("--scale-only", metavar="DEVICES",
                        help="only the SNMP scale runs at these device counts (e.g. 1000,5000) plus (c) once; "
                             "prints their tables and leaves the report alone")
    parser.add_argument("--scale-interval", type=int, default=60, help="poll interval of --scale-only (seconds)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each --scale-only point (spread over runs)")
    parser.add_argument("--neighbour", action="store_true",
                        help="keep one core busy (a Python busy loop) during each --scale-only run")
    parser.add_argument("--warmup-intervals", type=int, default=1,
                        help="intervals (+5 s) before --scale-only measures: the first poll of a device costs more")
    parser.add_argument("--settle-intervals", type=int, default=0,
                        help="after the warm-up, wait up to this many intervals more until the start-up is over "
                             "(three polls a device, recent lag p99 < 5 s), so the windows measure the steady state")
    opts = parser.parse_args()
    if opts.scale_only:
        _scale_only([int(n) for n in opts.scale_only.split(",") if n.strip()], opts.scale_interval, opts.repeat,
                    opts.neighbour, opts.warmup_intervals, opts.settle_intervals)
        return
    if opts.render:
        saved = json.loads(Path(opts.render).read_text())
        Path(opts.out).write_text(_report(saved))
        return
    if os.geteuid() != 0:
        print("note: not root; snmpd runs in the root namespace with this host's interfaces", file=sys.stderr)
    signal.signal(signal.SIGTERM, _on_term)
    plan = QUICK if opts.quick else FULL
    log_dir = Path(tempfile.mkdtemp(prefix="pnbench-logs-"))
    bench = Bench(plan, log_dir)
    started = time.perf_counter()
    bench.results["machine"] = machine.facts()
    if opts.merge:
        saved = json.loads(Path(opts.merge).read_text())
        parts = [name for name, skip in (("SNMP", opts.skip_snmp), ("SSH", opts.skip_ssh)) if not skip]
        saved.setdefault("notes", []).append(
            f"{' and '.join(parts)} figures come from a second run at {bench.results['machine']['date']} "
            f"(load average {bench.results['machine']['load_start']:.1f}); the rest from the run above.")
        bench.results = {**saved, "plan": saved.get("plan", plan), "notes": saved["notes"]}
        started -= float(saved.get("elapsed_s", 0.0))
    try:
        if not opts.skip_snmp:
            try:
                bench.setup_agents(max(n for n, _ in plan["scale"]))
                bench.snmp()
            finally:
                bench.teardown_agents()
        if not opts.skip_ssh:
            bench.ssh()
        if not opts.skip_scaleout:
            from bench import scaleout

            bench.say("scale-out: queue workers on PostgreSQL")
            try:
                bench.results["scaleout"] = scaleout.run(quick=opts.quick)
            except Exception as exc:  # one failed part must not lose the figures of the others
                bench.say(f"scale-out failed: {exc}")
                bench.results["notes"].append(f"the scale-out benchmark failed: {str(exc)[:300]}")
        if not opts.skip_scaleout_snmp:
            from bench import scaleout_snmp

            bench.say("scale-out: SNMP devices on serve + queue workers, against in-process")
            try:
                bench.results["scaleout_snmp"] = scaleout_snmp.run(**scaleout_snmp.plan(opts.quick))
            except Exception as exc:  # one failed part must not lose the figures of the others
                bench.say(f"scale-out with SNMP failed: {exc}")
                bench.results["notes"].append(f"the SNMP scale-out benchmark failed: {str(exc)[:300]}")
        if not opts.skip_alerts:
            from bench import alerts as alerts_bench

            bench.say("alerts: trap-to-alert latency, rule evaluation cost")
            bench.results["alerts"] = alerts_bench.run(quick=opts.quick)
        if not opts.skip_notify:
            bench.say("notifications: alert-to-push latency, draining 1,000 messages")
            bench.results["notify"] = notify_bench.run(quick=opts.quick)
        if not opts.skip_pages:
            bench.say("phone pages: first-load bytes, render time, Lighthouse, installability")
            bench.results["pages"] = pages_bench.run(quick=opts.quick)
        if not opts.skip_oncall:
            bench.say("on-call path: push to verified on a throttled phone")
            bench.results["oncall"] = oncall_bench.run(runs=1 if opts.quick else 3)
        if not opts.skip_terminal:
            bench.say("terminal: keystroke echo, 20 sessions beside polling")
            bench.results["terminal"] = terminal_bench.run(quick=opts.quick)
    except (KeyboardInterrupt, Interrupted):
        bench.say("interrupted: cleaned up, no report written")
        sys.exit(130)
    bench.results["machine"]["load_end"] = machine.loadavg()
    bench.results["elapsed_s"] = time.perf_counter() - started
    (log_dir / "results.json").write_text(json.dumps(bench.results, indent=1))
    Path(opts.out).write_text(_report(bench.results))
    bench.say(f"wrote {opts.out} in {bench.results['elapsed_s'] / 60:.1f} min (raw figures: {log_dir}/results.json)")


if __name__ == "__main__":
    main()
