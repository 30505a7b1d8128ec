"""The running server's parts, built once by create_app and reached from routes through one dependency."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request
from sqlalchemy import Engine

from server.secretbox import SecretBox
from server.settings import Settings

if TYPE_CHECKING:
    from server.alerting import Alerting
    from server.dispatch import Dispatcher
    from server.poller import Poller
    from server.writer import Writer


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
    extra: dict[str, Any] = field(default_factory=dict)
    clock: Callable[[], float] = time.time  # sign-in throttling reads the time here; tests move it


def get_services(request: Request) -> Services:
    """The Services of the app handling this request."""
    svc: Services = request.app.state.services
    return svc
