"""Bad input is normal input: numbers too big for the database answer 422 (API) or 400 (pages), never 500."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from server.store.db import DataError

MESSAGE = "a number in the request is out of range"


def install(app: FastAPI) -> None:
    """Register the handlers on the app."""

    async def out_of_range(request: Request, _exc: Exception) -> Response:
        if request.url.path.startswith("/api/") or request.url.path == "/metrics":
            return JSONResponse({"detail": MESSAGE}, status_code=422)
        from server.web.pages.common import render_error

        return render_error(request, 400, MESSAGE[0].upper() + MESSAGE[1:] + ".")

    # An id like 10562777470212544512 overflows SQLite's integer (OverflowError) or PostgreSQL's (DataError).
    app.add_exception_handler(OverflowError, out_of_range)
    app.add_exception_handler(DataError, out_of_range)
