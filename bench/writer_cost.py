"""Writer CPU per outcome at N devices, first poll against later ones: `python -m bench.writer_cost [N] [BATCH]`.

One real outcome of one simulated bench device (snmpd in a throw-away network namespace, 208 samples) is cloned
onto N seeded devices and committed through the app's own writer and hooks, BATCH outcomes a transaction: round 0
is every device's first poll (new series, new alert keys), rounds 1-2 the steady state. CPU time of this process,
so other load on the machine changes the wall time, not the figures.
"""

from __future__ import annotations

import asyncio
import copy
import sys
import tempfile
import time
from pathlib import Path

from bench import netns
from bench.fleet import Fleet
from bench.snmp_pipeline import make_settings, seed, services, snmp_specs
from server.polling.pipeline import all_jobs, build_pipeline
from server.polling.poller import Poller
from server.store.status import CheckOutcome

NAMESPACE = "pnwriter"


async def measure(devices: int, batch: int, rounds: int = 3) -> list[float]:
    """ms of CPU per outcome for each round."""
    tmp = Path(tempfile.mkdtemp(prefix="pnbench-writer-"))
    fleet = Fleet(tmp / "fleet", 1, 161)
    fleet.start()
    try:
        (tmp / "data").mkdir()
        settings = make_settings(tmp / "data")
        seed(settings, snmp_specs([fleet.addresses()[0]] * devices, 161, 60))
        parts = build_pipeline("serve", services(settings))
        got: list[CheckOutcome] = []
        poller = Poller(settings, got.append)
        job = all_jobs(services(settings))[0]
        for _ in range(3):  # detection, then rates: the third outcome is a steady one
            await poller.run_check(job)
            await asyncio.sleep(1.0)
        template = got[-1]
        await poller.close()
        parts.writer.stop()
        costs = []
        for _ in range(rounds):
            cpu0 = time.process_time()
            for start in range(0, devices, batch):
                outcomes = []
                for device_id in range(start + 1, min(devices, start + batch) + 1):
                    o = copy.copy(template)
                    o.device_id, o.ts, o.samples = device_id, time.time(), list(template.samples)
                    outcomes.append(o)
                parts.writer._commit(outcomes)
            costs.append((time.process_time() - cpu0) / devices * 1000)
        return costs
    finally:
        fleet.stop()


def main() -> None:
    """Run inside a namespace of its own (the bench devices answer on 127.1.x.y:161 there)."""
    devices = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    if "--inside" not in sys.argv:
        import subprocess

        ns = netns.Namespace(NAMESPACE)
        ns.create()
        try:
            subprocess.run([*ns.prefix(), sys.executable, "-m", "bench.writer_cost", str(devices), str(batch),
                            "--inside"], check=True)
        finally:
            ns.delete()
        return
    costs = asyncio.run(measure(devices, batch))
    print(f"{devices} devices, {batch} outcomes a transaction: writer CPU per outcome, first poll {costs[0]:.2f} ms, "
          f"later polls {', '.join(f'{c:.2f}' for c in costs[1:])} ms")


if __name__ == "__main__":
    main()
