"""What a validation run is doing, and how its failures become ACME problems.

A :class:`Trace` follows one run (``trace.at("connecting to ...")``) so that a
timeout or an unexpected error can say where it happened; :func:`guarded` runs a
check under the time limit and turns whatever escapes into an
:class:`ACMEProblem`, without the message of an error that may quote what the
target sent.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable

import attrs
import trio

from engine.acme.problems import ACMEProblem

log = logging.getLogger("devid.acme")


@attrs.define
class Trace:
    """What a run is doing now, so that a timeout or a surprise can say so."""

    label: str
    doing: str = "starting"
    kind: str = "connection"  # problem type of a timeout at this point

    def at(self, doing: str, kind: str = "connection") -> None:
        self.doing = doing
        self.kind = kind

    def problem(self, kind: str, detail: str) -> ACMEProblem:
        return ACMEProblem(kind, f"{self.label}: {detail}")


async def guarded(trace: Trace, timeout: float, run: Callable[[], Awaitable[None]]) -> None:
    """Run one check within ``timeout`` seconds; only :class:`ACMEProblem` escapes."""
    try:
        with trio.move_on_after(max(timeout, 0.0)) as scope:
            await run()
    except ACMEProblem:
        raise
    except ssl.SSLError as exc:
        raise trace.problem("tls", f"{trace.doing}: TLS error: {brief(exc)}") from exc
    except OSError as exc:
        raise trace.problem("connection", f"{trace.doing}: {brief(exc)}") from exc
    except Exception as exc:
        # Its message may quote what the target sent: the log has it, the client not.
        log.exception("%s validation failed unexpectedly %s", trace.label, trace.doing)
        raise trace.problem(
            "serverInternal", f"{trace.doing}: unexpected {type(exc).__name__}"
        ) from exc
    if scope.cancelled_caught:
        raise trace.problem(trace.kind, f"timed out after {timeout:g}s {trace.doing}")


def brief(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
