"""The collector's settings while pollers run: frozen start-up heap, rarer full collections, undone at the end."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from server.config.settings import Settings
from server.polling import heap
from server.polling.poller import Poller


def test_pollers_freeze_the_heap_and_the_last_one_gives_it_back(tmp_path: Path) -> None:
    before = gc.get_threshold()
    assert heap.holders() == 0 and gc.get_freeze_count() == 0

    async def scenario() -> None:
        settings = Settings(data_dir=tmp_path)
        first = Poller(settings, lambda outcome: None)
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the imports and tables made before the poller
        assert gc.get_threshold() == (heap.YOUNG, before[1], heap.FULL_AFTER)
        second = Poller(settings, lambda outcome: None)  # a second poller in the process changes nothing more
        # Not frozen again (that would add the first poller's objects); a frozen object may still die (a thread's
        # leftovers freed by another test's teardown), so the count may only have fallen, by a few.
        assert frozen - 1000 < gc.get_freeze_count() <= frozen and heap.holders() == 2
        await first.close()
        await first.close()  # closing twice releases once
        assert heap.holders() == 1 and frozen - 1000 < gc.get_freeze_count() <= frozen
        await second.close()

    asyncio.run(scenario())
    assert heap.holders() == 0
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before


def test_garbage_made_while_frozen_is_still_collected() -> None:
    heap.settle()
    try:
        class Node:
            def __init__(self) -> None:
                self.me = self  # a cycle: only the collector frees it

        import weakref

        ref = weakref.ref(Node())
        gc.collect()
        assert ref() is None
    finally:
        heap.release()
