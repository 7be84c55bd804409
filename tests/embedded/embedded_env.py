"""How the embedded-mode tests start processes: no service URLs, SQLite in a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The stack mode is chosen by these; the embedded mode is what is left without them.
SERVICE_VARIABLES = ("DATABASE_URL", "BROKER_URL", "REDIS_URL")


def embedded_env(folder: Path) -> dict[str, str]:
    """The environment of an embedded process whose SQLite file lives in ``folder``."""
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.local",
        SQLITE_PATH=str(folder / "oms.sqlite3"),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        # Short retry delays keep the retry scenarios quick; the behaviour is the same.
        CONSUMER_RETRY_DELAYS="0.2,0.4,0.8",
        DEBUG="false",
    )
    return env


def run_manage_py_script(
    script: Path, *args: str, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a Python script of the repository with the project's interpreter."""
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def manage(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``manage.py <args>`` in a subprocess; the caller checks the outcome."""
    return run_manage_py_script(ROOT / "manage.py", *args, env=env, timeout=timeout)
