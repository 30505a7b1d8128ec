"""Check kind `banner`: connect over TCP, read the first line the service sends, optionally expect a text in it.

Inventory:  checks: [{type: banner, port: 22, options: {expect: "SSH-2.0"}}]
"""

from __future__ import annotations

import asyncio
import time

from agents.base import CollectError, Reading, Sample, Target, Unreachable, register


class BannerCollector:
    """Reads a service's greeting line; raises when there is none or it lacks the expected text."""

    kind = "banner"

    async def collect(self, target: Target, profile: str | None = None) -> Reading:
        options = target.options or {}
        port = int(options.get("port") or target.port or 0)
        if not port:
            raise CollectError("a banner check needs a port")
        started = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(target.address, port), target.timeout)
        except (OSError, TimeoutError) as exc:
            raise Unreachable(f"no TCP connection to {target.address}:{port}: {exc}") from None
        try:
            line = await asyncio.wait_for(reader.readline(), target.timeout)
        except (OSError, TimeoutError):
            raise CollectError("connected, but the service sent no line in time") from None
        finally:
            writer.close()
        banner = line[:512].decode("utf-8", "replace").strip()
        expect = str(options.get("expect") or "")
        if expect and expect not in banner:
            raise CollectError(f"the banner does not contain {expect!r}")
        seconds = time.monotonic() - started
        return Reading(samples=[Sample("banner_seconds", seconds, {"port": str(port)})], facts={"banner": banner})

    async def close(self) -> None:
        return None


register("banner", BannerCollector)
