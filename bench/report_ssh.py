"""The SSH section of BENCHMARKS.md and the closing findings (where the time goes, what would change it)."""

from __future__ import annotations

from typing import Any

from bench.report import (
    TARGET_DEVICES,
    TARGET_SSH_COMMANDS,
    TARGET_SSH_SERVERS,
    med,
    target_mark,
)


def ssh_section(r: dict[str, Any]) -> list[str]:
    """The SSH part of the report."""
    s = r["ssh_rates"]
    out = [
        "",
        "## SSH",
        "",
        "### Method",
        "",
        f"- One OpenSSH sshd from `tests/peers/sshd.py` on 127.0.0.1 (test user with `/bin/sh`, no rc files). "
        f"{s['workers']} servers are simulated as {s['workers']} separate logged-in connections (distinct key "
        "paths, so the collector's pool keeps one connection per server), one loop per server.",
        f"- A check is one command; a `collect()` runs {s['commands_per_collect']}: the fixed system script "
        "(hostname, uname, uptime, loadavg, meminfo, stat, systemctl, mounts, df, df -i in one `sh`) and five "
        "custom checks (`cat /proc/loadavg`, `uname -r`, `df -P /`, `cat /proc/uptime`, `test -d /tmp`). Every "
        "mode cycles through the same six command lines.",
        "- reused: `SshCollector.run_command` over pooled connections; fresh: `agents.ssh.run_command` (a new "
        "connection, key exchange and login per check); OpenSSH: `ssh` with `ControlMaster=auto` and one master "
        "per server, one `ssh` process per check; collect: `SshCollector.collect()`.",
        "- Client CPU is the measuring process (paramiko) or the `ssh` processes plus their masters (OpenSSH); "
        "server CPU is sshd and everything it ran (the commands themselves).",
        "",
        "| mode | checks / s | client CPU ms / check | server CPU ms / check | latency p50 | latency p99 | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, label in (("reused", "reused connection (paramiko)"), ("fresh", "fresh connection per check"),
                       ("openssh", "OpenSSH client, ControlMaster"), ("collect", "full collect() (6 checks)")):
        row = s.get(key, {})
        if not row or "error" in row:
            out.append(f"| {label} | {row.get('error', 'not run')} |")
            continue
        client = row.get("client_cpu_ms_per_command", row["cpu_ms_per_command"])
        out.append(f"| {label} | {row['per_s']:.0f} | {client:.1f} | {row['server_cpu_ms_per_command']:.1f} | "
                   f"{row['latency_p50_ms']:.0f} ms | {row['latency_p99_ms']:.0f} ms | {row['errors']} |")
    col = s.get("collect", {})
    if col:
        out += ["", f"collect(): {col['collects_per_s']:.1f} collects/s, {col['cpu_ms_per_collect']:.0f} ms client "
                f"CPU per collect; connections opened while reusing: {s['reused_connections_opened']}."]
        need = TARGET_SSH_SERVERS * TARGET_SSH_COMMANDS / 60
        out += [f"Reused vs fresh: {s['reused']['per_s'] / max(0.01, s['fresh']['per_s']):.1f}× the checks per "
                f"second; reused vs OpenSSH ControlMaster: "
                f"{s['reused']['per_s'] / max(0.01, s['openssh'].get('per_s', 0.01)):.1f}×. "
                f"The target needs {need:.0f} checks/s ({TARGET_SSH_SERVERS} servers × {TARGET_SSH_COMMANDS} / 60 s)."]
    sc = r.get("ssh_scale")
    if sc:
        out += ["", f"### {sc.get('devices', '?')} servers at a {sc.get('interval_s', '?')}-second interval (real "
                "dispatcher, one process)", ""]
        if "error" in sc:
            out.append(f"error: {sc['error']}")
        else:
            keeps = sc["polls_done"] >= 0.98 * sc["polls_due"] and sc["failed"] <= 0.01 * sc["polls_due"]
            out += [
                "| servers | polls done / due | failed | lag p50 | lag p99 | CPU (of one core) | CPU ms / collect | "
                "peak RSS | connections opened | sshd + commands CPU |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                f"| {sc['devices']:,} | {sc['polls_done']:,} / {sc['polls_due']:,} | {sc['failed']:,} | "
                f"{sc['lag_p50_s']:.2f} s | {sc['lag_p99_s']:.2f} s | {sc['cpu_util'] * 100:.0f} % | "
                f"{sc['cpu_ms_per_poll']:.1f} | {sc['rss_peak_mb']:.0f} MB | {sc.get('ssh_connections_opened', '–')} | "
                f"{sc['agents_cpu_util'] * 100:.0f} % |",
                "",
                f"*sshd + commands CPU* is sshd and everything it ran, as a share of one core; the machine was "
                f"{sc.get('machine_busy', 0) * 100:.0f} % busy during the run."
                + (" After the run the app's shutdown (`pipeline.stop`) had not returned within 90 s: SSH "
                   "checks were still blocked in paramiko threads." if sc.get("shutdown_s", 0.0) is None else ""),
                "",
                "| target | measured | |",
                "|---|---|---|",
                f"| {TARGET_SSH_SERVERS} servers (≈{TARGET_SSH_COMMANDS} commands each) every 60 s in one process | "
                f"{sc['devices']:,} servers every {sc['interval_s']} s: {sc['polls_done']:,} of {sc['polls_due']:,} "
                f"polls, {sc['failed']:,} failed, lag p99 {sc['lag_p99_s']:.2f} s | "
                f"{target_mark(keeps, sc['devices'] >= TARGET_SSH_SERVERS and sc['interval_s'] <= 60)} |",
            ]
    return out


def _busy(samp: dict[str, Any], thread: str) -> float:
    """Share of a thread's samples that were not idle."""
    idle = sum(float(v) for k, v in samp["activity"].items() if k.startswith(f"{thread}: idle"))
    return max(0.0, float(samp["threads"].get(thread, 0.0)) - idle)


def findings(r: dict[str, Any]) -> list[str]:
    """Where the time goes, in sentences built from this run's figures, and what would change it."""
    if "pipeline" not in r:
        return []
    c = r["pipeline"]
    loop_ms, writer_ms, c_ms = (med(c, k) for k in ("loop_thread_ms_per_poll", "writer_thread_ms_per_poll",
                                                     "cpu_ms_per_poll"))
    a_ms = med(r["bare"], "cpu_ms_per_poll")
    out = ["", "## SNMP and SSH findings: where the time goes", ""]
    layers = r.get("profile", {}).get("profile", {}).get("layers", {})
    snmp_lib = sum(v for k, v in layers.items() if k.startswith(("pysnmp", "pyasn1")))
    lib = f" (pysnmp and pyasn1: {snmp_lib * 100:.0f} % of the profiled loop thread)" if layers else ""
    out.append(f"- Per poll the pipeline is cheap: {c_ms:.1f} ms CPU against {a_ms:.1f} ms for bare pysnmp making "
               "the same requests, because the collector encodes and decodes BER itself and serves the "
               f"rarely-changing interface columns from a cache{lib}.")
    out.append(f"- The writer thread costs as much as polling: {writer_ms:.1f} ms of the {c_ms:.1f} ms per poll "
               f"(event loop {loop_ms:.1f} ms). Both threads share one GIL, so their sum bounds throughput: "
               f"{1000 / c_ms:.0f} polls/s at 100 % of one core, against the {TARGET_DEVICES / 60:.0f} polls/s that "
               f"{TARGET_DEVICES:,} devices at 60 s need.")
    scale = [s for s in r.get("scale", []) if "error" not in s]
    big = next((s for s in scale if s["devices"] == TARGET_DEVICES), None)
    if big is not None and "sampler" in big:
        samp = big["sampler"]
        send = samp["activity"].get("event loop: SNMP: encode + send", 0.0)
        out.append(
            f"- At {TARGET_DEVICES:,} devices the writer fell behind: busy {_busy(samp, 'writer') * 100:.0f} % of its "
            f"samples, {big['writer_backlog_end']:,} outcomes still queued at the end, {big['polls_done']:,} of "
            f"{big['polls_due']:,} polls done. Its queue is unbounded, so the backlog (each outcome holds its "
            f"samples and tables) took peak RSS from {big['rss_after_warmup_mb']:.0f} MB after warm-up to "
            f"{big['rss_peak_mb']:.0f} MB. The event loop was busy {_busy(samp, 'event loop') * 100:.0f} % of its "
            f"samples, {send * 100:.0f} % of them inside `sendto`: socket calls release the GIL and the loop then "
            "waits for the writer to hand it back (up to the 5 ms switch interval).")
        out.append(f"- The machine was shared: {big.get('machine_busy', 0) * 100:.0f} % busy during that run, and "
                   f"this process waited for a CPU {big.get('waited_for_cpu_util', 0) * 100:.0f} % of the time, "
                   f"so it got {big['cpu_util'] * 100:.0f} % of a core although it had more work queued.")
    mem = r.get("memory", {}).get("memory")
    if mem:
        top = ", ".join(f"`{t['where']}` {t['kb_per_device']:.0f} KB" for t in mem["top"][:4])
        out.append(f"- Memory is about {mem['kb_per_device']:.0f} KB of Python objects per device, mostly per-series "
                   f"keys: {top}. The series cache and the rate tracker each keep (metric, label-JSON) strings "
                   "for every interface counter; at 5,000 devices that alone is several hundred MB.")
    pool_max = r.get("ssh_rates", {}).get("pool_max")
    sc = r.get("ssh_scale", {})
    if "ssh_connections_opened" in sc and pool_max and sc["devices"] > pool_max:
        out.append(f"- SSH: {sc['devices']} servers opened {sc['ssh_connections_opened']:,} connections over "
                   f"{1 + sc.get('window_s', 0) / max(1, sc.get('interval_s', 60)):.0f} intervals: the collector's "
                   f"pool holds {pool_max} connections, so above {pool_max} servers polls keep logging in again "
                   f"({sc['cpu_ms_per_poll']:.0f} ms client CPU per collect instead of "
                   f"{r['ssh_rates']['collect']['cpu_ms_per_collect']:.0f} ms when reused).")
    out += [
        "",
        "What would change the figures (not done here; these files are outside bench/):",
        "",
        "1. Writer: insert samples with the DB-API `executemany` of tuples keyed by integer series ids "
        "(no per-batch SQLAlchemy compile, no dict per row); rewrite a device's `facts`/`tables` JSON only when "
        "they changed; drop or shrink the `metrics` JSON copy of the latest samples.",
        "2. Bound the writer queue and make overload visible (skip or coalesce polls, count them) instead of "
        "letting memory grow; or run the writer in its own process so it stops taking the GIL from the event "
        "loop.",
        "3. One series registry per process: intern metric names and label sets once per device and key both "
        "the rate tracker and the series cache by a small integer.",
        "4. Size the SSH pool from the number of SSH targets (or a setting) instead of a fixed constant.",
    ]
    return out
