"""The running server's parts, built once by create_app and reached from routes through one dependency."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from server.config.settings import Settings
from server.keys.secretbox import SecretBox
from server.store.db import Engine
from server.store.space import Storage

if TYPE_CHECKING:
    from agents.traps import TrapReceiver
    from server.actions.runner import RunManager
    from server.alerts.rules import Rule
    from server.alerts.writer_hook import Alerting
    from server.notify.runtime import Notify
    from server.polling.dispatch import Dispatcher
    from server.polling.poller import Poller
    from server.polling.writer import Writer
    from server.services.directories import Directories
    from server.services.terminal.manager import TerminalManager
    from server.web.live import Broker


@dataclass
class Services:
    """Engine (writes), reader (reads), secrets, and the polling pipeline when it runs."""

    settings: Settings
    engine: Engine
    reader: Engine
    box: SecretBox
    writer: Writer | None = None
    poller: Poller | None = None
    dispatcher: Dispatcher | None = None
    alerting: Alerting | None = None
    storage: Storage | None = None  # free space, the reserve, and whether writes fail for lack of it
    notify: Notify | None = None  # made on first use by notify.runtime.runtime()
    runs: RunManager | None = None  # the action runs of this app (actions.runner.manager())
    terminals: TerminalManager | None = None  # the browser terminals of this app (services.terminal.manager.manager())
    live: Broker | None = None  # the SSE broker (web.live.broker())
    traps: TrapReceiver | None = None  # the trap receiver while the pipeline runs
    directories: Directories | None = None  # directory accounts' state (services.directories.runtime())
    file_rules: list[Rule] = field(default_factory=list)  # the rules file as last read
    file_rules_loaded: bool = False
    clock: Callable[[], float] = time.time  # sign-in throttling reads the time here; tests move it


def get_services(request: Request) -> Services:
    """The Services of the app handling this request."""
    svc: Services = request.app.state.services
    return svc
