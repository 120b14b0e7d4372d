"""Exit codes and one-line errors for the command-line programs.

A script or a service manager tells the kinds apart without parsing the message; an operator
reads one line that says what and where, never a traceback, for anything that is not a bug.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from enum import IntEnum

from numa_balloon_client.errors import (
    ApiError,
    ConnectionFailed,
    ServerError,
    ServiceUnavailable,
    TooManyRequests,
)
from numa_balloon_client.sysfs import SysfsError

log = logging.getLogger("numa_balloon_client.programs")


class Exit(IntEnum):
    """What a script can tell apart without parsing the message."""

    OK = 0
    REFUSED = 1  # the service said no (4xx), or no such host/domain name
    USAGE = 2  # bad flags or arguments (Click's own code), an unusable config or file
    UNAVAILABLE = 3  # no answer, 503 after retries, a server error (5xx); a missing hypervisor
    FAILED = 4  # the operation ran and ended badly (a migration failed or was aborted)


class ProgramError(Exception):
    """An ordinary failure: said in one line, ended with `exit_code`. Subclasses name the kind."""

    exit_code = Exit.FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)


class UsageError(ProgramError):
    """The options, the configuration or a file they name cannot be used."""

    exit_code = Exit.USAGE


class Unavailable(ProgramError):
    """Something the program needs is not there: the hypervisor, its tools, a binding."""

    exit_code = Exit.UNAVAILABLE


class Refused(ProgramError):
    """The service's records say no (a name taken by another machine's host, say)."""

    exit_code = Exit.REFUSED


#: The service's answers that time may cure: the loops back off and try again.
TRANSIENT: tuple[type[Exception], ...] = (
    ConnectionFailed,
    ServiceUnavailable,
    ServerError,
    TooManyRequests,
)

_KIND = {
    Exit.REFUSED: "refused",
    Exit.USAGE: "error",
    Exit.UNAVAILABLE: "unavailable",
    Exit.FAILED: "failed",
}


def one_line(exc: BaseException) -> str:
    """The exception's text on one line (a 422's located errors joined with `; `)."""
    return "; ".join(part.strip() for part in str(exc).splitlines() if part.strip())


def classify(exc: BaseException) -> Exit | None:
    """The exit code for an ordinary failure; None for a bug (which keeps its traceback)."""
    if isinstance(exc, ProgramError):
        return exc.exit_code
    if isinstance(exc, SysfsError):  # the tree given is not one the kernel would publish
        return Exit.USAGE
    if isinstance(exc, TRANSIENT):
        return Exit.UNAVAILABLE
    if isinstance(exc, ApiError):
        return Exit.REFUSED
    return None


def guarded(prog: str, body: Callable[[], int], *, logged: Callable[[], bool]) -> int:
    """Run a program's body; an ordinary failure becomes one line on stderr (a log record when
    `logged()` says logging is set up, so JSON logs stay JSON) and its exit code."""
    try:
        return body()
    except KeyboardInterrupt:
        return 130  # 128 + SIGINT, as a shell reports it
    except Exception as exc:
        code = classify(exc)
        if code is None:
            raise
        message = one_line(exc)
        if isinstance(exc, ConnectionFailed):
            message = f"no answer from the service: {message}"
        if logged():
            log.error(message, extra={"exit_code": int(code), "kind": _KIND[code]})
        else:
            print(f"{prog}: {_KIND[code]}: {message}", file=sys.stderr)
        return int(code)
