"""The linters the project relies on are clean over the whole tree."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


def test_ruff_check_is_clean() -> None:
    result = run_tool("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = run_tool("ruff", "format", "--check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


# --- deploy/run_stack.py: the supervisor of `make stack` -------------------------------------

SUPERVISE = """
import signal, sys
sys.path.insert(0, "deploy")
from run_stack import ProcessSpec, Supervisor
py = sys.executable
logs = "import json, os; print(json.dumps({'event': 'hello', 'process': os.environ['OMS_PROCESS']}))"
specs = [
    ProcessSpec("sleeper", [py, "-c", "import time; print('up', flush=True); time.sleep(60)"]),
    ProcessSpec("quitter", [py, "-c", "import time; print('bye', flush=True); time.sleep(%s); exit(3)"]),
    ProcessSpec("logger", [py, "-u", "-c", logs + "; import time; time.sleep(60)"]),
]
supervisor = Supervisor(specs)
signal.signal(signal.SIGTERM, supervisor.request_stop)
sys.exit(supervisor.run())
"""


def start_supervisor(quitter_seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SUPERVISE % quitter_seconds],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_supervisor_stops_everything_when_one_process_exits() -> None:
    supervisor = start_supervisor(quitter_seconds=1)
    output, _ = supervisor.communicate(timeout=60)
    # the quitter's exit code is the supervisor's; the sleeper did not outlive it
    assert supervisor.returncode == 3, output
    # every line is a JSON object naming its process: the children's plain lines are wrapped,
    # their JSON lines (which name the process OMS_PROCESS gave them) pass through as written
    lines = [json.loads(line) for line in output.splitlines()]
    said = [(line["process"], line["event"]) for line in lines]
    assert ("quitter", "bye") in said and ("sleeper", "up") in said, said
    assert '{"event": "hello", "process": "logger"}' in output.splitlines()
    assert ("stack", "quitter exited with 3: stopping the others") in said
    assert ("stack", "all processes stopped") in said
    wrapped = [line for line in lines if line["event"] == "bye"]
    assert wrapped[0]["logger"] == "stdout" and wrapped[0]["timestamp"].endswith("Z")


def test_supervisor_stops_everything_on_sigterm() -> None:
    supervisor = start_supervisor(quitter_seconds=60)
    time.sleep(2)
    supervisor.send_signal(signal.SIGTERM)
    output, _ = supervisor.communicate(timeout=60)
    assert supervisor.returncode == 0, output
    assert "all processes stopped" in output


def test_stack_consumers_layout_gives_one_process_per_group() -> None:
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        from run_stack import DEFAULT_CONSUMERS, consumer_processes
    finally:
        sys.path.remove(str(ROOT / "deploy"))
    manage = ["python", "manage.py"]

    [one] = consumer_processes(manage, "all")
    assert (one.name, one.argv) == ("consumers", [*manage, "consume", "--all"])

    # the default: the saga in one process, every other context ("*") in the other
    assert [(spec.name, spec.argv[3:]) for spec in consumer_processes(manage, DEFAULT_CONSUMERS)] == [
        ("consumers-1", ["sagas"]),
        ("consumers-2", ["--all", "--exclude=sagas"]),
    ]

    groups = consumer_processes(manage, "inventory,payments; sagas,queries;all")
    assert [(spec.name, spec.argv[3:]) for spec in groups] == [
        ("consumers-1", ["inventory", "payments"]),
        ("consumers-2", ["sagas", "queries"]),
        ("consumers-3", ["--all"]),
    ]


def test_the_stack_worker_hosts_beat_and_the_relay_unless_they_run_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One container: beat and the relay are threads of the worker (two processes fewer); the
    chaos suite runs them apart, as the scaled-out deployments do, to kill the relay alone."""
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        from run_stack import stack_processes
    finally:
        sys.path.remove(str(ROOT / "deploy"))
    monkeypatch.delenv("STACK_CONSUMERS", raising=False)

    hosted = {spec.name: spec.argv for spec in stack_processes(python=sys.executable, host="h", port="1")}
    assert sorted(hosted) == ["consumers-1", "consumers-2", "web", "worker"]
    worker = hosted["worker"]
    assert {"--with-relay", "--with-beat-thread", "--pool=threads"} <= set(worker)
    assert f"--schedule-filename={ROOT / 'var' / 'celerybeat-schedule'}" in worker

    apart = {
        spec.name: spec.argv
        for spec in stack_processes(python=sys.executable, host="h", port="1", beat_and_relay_apart=True)
    }
    assert sorted(apart) == ["beat", "consumers-1", "consumers-2", "relay", "web", "worker"]
    assert not any(arg.startswith("--with-") for arg in apart["worker"])
    assert apart["relay"][-1] == "relay_outbox"
    assert f"--schedule={ROOT / 'var' / 'celerybeat-schedule'}" in apart["beat"]


def test_the_stack_runs_32_charge_runners_unless_told_and_the_settings_keep_8(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stack mode's one payments process runs 32 charge runners; deployments that scale
    consumers out (compose, Kubernetes) keep the settings' 8, each runner holding a connection."""
    from django.conf import settings

    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        from run_stack import stack_processes
    finally:
        sys.path.remove(str(ROOT / "deploy"))

    def runners() -> dict[str, str | None]:
        specs = stack_processes(python=sys.executable, host="h", port="1")
        return {spec.name: spec.env.get("PAYMENT_CHARGE_WORKERS") for spec in specs}

    monkeypatch.delenv("PAYMENT_CHARGE_WORKERS", raising=False)
    monkeypatch.delenv("STACK_CONSUMERS", raising=False)
    found = runners()
    # only the process that consumes payments (the default layout: sagas alone, then the rest)
    assert found["consumers-2"] == "32"
    assert found["consumers-1"] is None and found["web"] is None and found["worker"] is None
    layouts = {
        "all": {"consumers"},
        "payments;sagas,queries;inventory": {"consumers-1"},
        "payments;*": {"consumers-1"},  # "*" is every context no other group names
    }
    for layout, paying in layouts.items():
        monkeypatch.setenv("STACK_CONSUMERS", layout)
        assert {name for name, value in runners().items() if value == "32"} == paying, layout
    monkeypatch.delenv("STACK_CONSUMERS")
    monkeypatch.setenv("PAYMENT_CHARGE_WORKERS", "4")  # the environment wins, inherited as it is
    assert all(value is None for value in runners().values())
    assert settings.PAYMENT_CHARGE_WORKERS == 8


def test_the_web_access_log_is_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """A line per request is written only with WEB_ACCESS_LOG=1 (issue 11: off the hot path)."""
    import runpy

    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        from run_stack import stack_processes
    finally:
        sys.path.remove(str(ROOT / "deploy"))

    def web_argv() -> list[str]:
        [web] = [
            spec for spec in stack_processes(python=sys.executable, host="h", port="1") if spec.name == "web"
        ]
        return web.argv

    def conf_accesslog() -> object:
        return runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))["accesslog"]

    monkeypatch.delenv("WEB_ACCESS_LOG", raising=False)
    assert not any("access-log" in arg for arg in web_argv())
    assert conf_accesslog() is None
    monkeypatch.setenv("WEB_ACCESS_LOG", "1")
    assert "--access-logfile=-" in web_argv()
    assert conf_accesslog() == "-"


@pytest.mark.django_db
def test_consume_all_but_the_excluded_contexts_and_only_with_all() -> None:
    from django.core.management import CommandError, call_command

    from eventstore.registry import contexts

    with pytest.raises(CommandError, match="--exclude goes with --all"):
        call_command("consume", "sagas", exclude=["queries"])
    with pytest.raises(CommandError, match="no subscriptions for nowhere"):
        call_command("consume", all=True, exclude=["nowhere"])
    with pytest.raises(CommandError, match="name at least one context"):
        call_command("consume", all=True, exclude=contexts())
