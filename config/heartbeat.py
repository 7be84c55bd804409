"""Heartbeat files: how a probe tells a consumer, relay, Celery worker or beat that serves no HTTP
is still making progress.

The process's loop calls :func:`beat` each time round; it touches ``HEARTBEAT_FILE`` (unset:
nothing happens, as in ``make stack``) at most once every ``HEARTBEAT_INTERVAL_SECONDS``, so
the hot loop pays one clock read per pass. A loop that hangs stops touching the file, and the
liveness probe fails once it is older than its limit. A loop that never got going (no broker,
no database) never creates it, so the readiness probe fails too.

The probe runs this file as a script, with the standard library only (no Django start-up on
every probe)::

    python config/heartbeat.py --max-age 60     # exit 0 when fresh, 1 when stale or missing
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ENV_FILE = "HEARTBEAT_FILE"
ENV_INTERVAL = "HEARTBEAT_INTERVAL_SECONDS"
DEFAULT_INTERVAL = 5.0

_last_touch = 0.0


def heartbeat_path() -> Path | None:
    """The file this process touches, or ``None`` when heartbeats are off."""
    name = os.environ.get(ENV_FILE, "")
    return Path(name) if name else None


def beat(*, now: float | None = None) -> bool:
    """Touch the heartbeat file unless it was touched less than an interval ago; True if touched."""
    global _last_touch
    path = heartbeat_path()
    if path is None:
        return False
    moment = time.monotonic() if now is None else now
    if _last_touch and moment - _last_touch < float(os.environ.get(ENV_INTERVAL) or DEFAULT_INTERVAL):
        return False
    try:
        path.touch()
    except OSError:
        # A full or read-only disk must not stop the loop; the probe will notice the staleness.
        return False
    _last_touch = moment
    return True


def age_seconds(path: Path, *, now: float | None = None) -> float | None:
    """Seconds since ``path`` was last touched, or ``None`` when it does not exist."""
    try:
        modified = path.stat().st_mtime
    except FileNotFoundError:
        return None
    return max((time.time() if now is None else now) - modified, 0.0)


def main(argv: list[str] | None = None) -> int:
    """The probe: exit 0 when the heartbeat file is younger than ``--max-age`` seconds."""
    parser = argparse.ArgumentParser(description="Check a heartbeat file's age (liveness/readiness probe).")
    parser.add_argument("--max-age", type=float, required=True, help="seconds a heartbeat stays fresh")
    parser.add_argument("--file", default=os.environ.get(ENV_FILE, ""), help=f"default: ${ENV_FILE}")
    options = parser.parse_args(argv)
    if not options.file:
        print(f"no heartbeat file: set {ENV_FILE} or pass --file", file=sys.stderr)
        return 2
    age = age_seconds(Path(options.file))
    if age is None:
        print(f"{options.file}: no heartbeat yet", file=sys.stderr)
        return 1
    if age > options.max_age:
        print(f"{options.file}: last heartbeat {age:.0f}s ago (limit {options.max_age:g}s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
