"""Where the deploy checks find their tools, and the repository facts they compare against."""

from __future__ import annotations

import shutil
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.fixtures.programs import required_program

ROOT = Path(__file__).resolve().parents[2]
# The Dockerfile's WORKDIR: where the repository is inside the image.
IMAGE_ROOT = "/app/"


def in_repository(path: str) -> Path:
    """The repository file an image path (absolute under /app, or relative to it) stands for."""
    return ROOT / path.removeprefix(IMAGE_ROOT)


def tool(name: str, *, installed_by: str) -> str:
    """A command-line tool of the dev requirements (the virtualenv's bin first, then PATH).

    Missing is a failure: ``make install`` puts every one of them there.
    """
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(f"{name} is missing: it comes with {installed_by} (make install)")


def promtool() -> str:
    return required_program("promtool", package="prometheus")


@cache
def management_commands() -> frozenset[str]:
    """Every ``manage.py`` command of the project (Django's and the apps')."""
    from django.core.management import get_commands

    return frozenset(get_commands())


def check_command(argv: list[str]) -> None:
    """Fail unless ``argv`` runs something this repository has: a ``manage.py`` command, the
    Celery app in ``config``, gunicorn with its config file, or a script of the repository."""
    if argv[:2] == ["sh", "-c"]:
        for part in argv[2].replace("\n", " ").split("&&"):
            words = part.split()
            if "manage.py" in words:
                check_command(words[words.index("python") :])
        return
    program = argv[0]
    if program == "python" and argv[1] == "manage.py":
        assert argv[2] in management_commands(), f"manage.py has no command {argv[2]!r}"
    elif program == "python" and argv[1] == "-c":
        assert "/health/" in argv[2], "inline Python is for the health probe only"
    elif program == "python":
        script = next(arg for arg in argv[1:] if not arg.startswith("-"))
        assert in_repository(script).is_file(), f"{script} is not in the repository"
    elif program == "celery":
        assert argv[1:3] == ["-A", "config"], argv
        subcommand = next(arg for arg in argv[3:] if not arg.startswith("-"))  # after --quiet
        assert subcommand in ("worker", "beat"), argv
    elif program == "gunicorn":
        config = next(arg.split("=", 1)[1] for arg in argv if arg.startswith("--config="))
        assert (ROOT / config).is_file(), f"{config} is not in the repository"
    else:
        raise AssertionError(f"unknown program {program!r} in {argv}")
