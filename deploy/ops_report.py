"""The operator's figures of issue 12, measured on a real run (``make ops-report``).

1. ``make stack`` runs as an operator runs it (the one-shot steps, then the supervisor and
   its processes) with every byte of its stdout and stderr kept; a few hundred orders are
   placed over HTTP (cards that capture, cards that are declined, orders cancelled at once).
   Then: the share of the output's lines that parse as one JSON object each, and one order's
   journey found by ``grep <order id>``.
2. A real Prometheus server (Debian's ``prometheus``) scrapes the stack with the project's own
   ``deploy/prometheus/prometheus.yml`` (its 15 s intervals; only the target is this run's) and
   ``alerts.yml``; the payment gateway is made to fail (``tok_gateway_down``) until the breaker
   opens for its 5 s. The timeline: when the breaker opened and closed (its log lines), when
   ``OmsPaymentCircuitBreakerOpen`` went pending, firing, and resolved (the alerts API).
3. Every validator on every deploy file, with its output.

The results are printed as Markdown (``--out FILE`` writes them there too). Run it on a
database, vhost and Redis of its own (DATABASE_URL, BROKER_URL, REDIS_URL; PORT for the web
process, the next port for Prometheus): it places real orders there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
ALERT = "OmsPaymentCircuitBreakerOpen"
PASSWORD = os.environ.get("DEMO_PASSWORD", "demo-pass-123")


# --- HTTP ---------------------------------------------------------------------------------------


def http(method: str, url: str, *, token: str | None = None, body: dict | None = None) -> tuple[int, Any]:
    """One request; the status and the parsed JSON answer (``None`` when there is none)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, method=method, data=data)  # noqa: S310 - our own server
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_for(predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"ops_report: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def now() -> str:
    stamp = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp % 1 * 1000):03d}Z"


# --- The stack ----------------------------------------------------------------------------------


class StackRun:
    """``make stack`` in the background, its whole output (stdout and stderr) in one file."""

    def __init__(self, log_path: Path, port: int) -> None:
        self.log_path = log_path
        self.base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PORT": str(port), "WEB_ACCESS_LOG": "1", "PYTHONUNBUFFERED": "1"}
        with log_path.open("wb") as out:
            # --assume-old: `make ops-report` has installed the requirements already.
            self.make = subprocess.Popen(
                ["make", "--no-print-directory", "--assume-old=.venv/.installed", "stack"],  # noqa: S607
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def grep(self, needle: str) -> list[dict[str, Any]]:
        """The JSON lines containing ``needle``, in the order of their timestamps."""
        found = []
        for line in self.lines():
            if needle in line:
                try:
                    found.append(json.loads(line))
                except ValueError:
                    found.append({"timestamp": "", "event": line, "not_json": True})
        return sorted(found, key=lambda line: str(line.get("timestamp", "")))

    def ready(self) -> bool:
        if self.make.poll() is not None:
            tail = "\n".join(self.lines()[-40:])
            raise SystemExit(f"ops_report: make stack exited with {self.make.returncode}:\n{tail}")
        return http("GET", f"{self.base}/health/ready")[0] == 200

    def stop(self) -> int:
        """SIGTERM to the supervisor (make's child, as a container runtime stops it); make's code."""
        children = Path(f"/proc/{self.make.pid}/task/{self.make.pid}/children")
        pids = children.read_text().split() if children.exists() else []
        for pid in pids:
            os.kill(int(pid), signal.SIGTERM)
        try:
            return self.make.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.make.kill()
            return self.make.wait()


def json_share(lines: list[str]) -> tuple[int, int, Counter[str], list[str]]:
    """(JSON object lines, all non-empty lines, lines per process, the lines that are not JSON)."""
    total, parsed, per_process, plain = 0, 0, Counter[str](), []
    for line in lines:
        if not line.strip():
            continue
        total += 1
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        if isinstance(value, dict):
            parsed += 1
            per_process[str(value.get("process"))] += 1
        else:
            plain.append(line)
    return parsed, total, per_process, plain


# --- Orders ---------------------------------------------------------------------------------------


@dataclass
class Placed:
    """The orders of a run: by kind, their owners, and the owners' access tokens."""

    tokens: dict[str, str]
    owners: dict[str, str] = field(default_factory=dict)
    by_kind: dict[str, list[str]] = field(
        default_factory=lambda: {"tok_ok": [], "tok_declined": [], "cancelled": []}
    )


def place_orders(base: str, count: int) -> Placed:
    """``count`` orders of alice and bob: 80 % tok_ok, 15 % tok_declined, 5 % cancelled at once."""
    tokens = {}
    for user in ("alice", "bob"):
        status, answer = http("POST", f"{base}/api/auth/token", body={"username": user, "password": PASSWORD})
        if status != 200:
            raise SystemExit(f"ops_report: login of {user} answered {status}: {answer}")
        tokens[user] = answer["access"]
    placed = Placed(tokens)
    for number in range(count):
        user = ("alice", "bob")[number % 2]
        kind = "tok_declined" if number % 20 in (3, 9, 15) else "cancelled" if number % 20 == 7 else "tok_ok"
        body = {
            "items": [{"product_id": f"SKU-{number % 20 + 1:04d}", "quantity": 1}],
            "payment": {"method": "card", "token": "tok_declined" if kind == "tok_declined" else "tok_ok"},
        }
        status, answer = http("POST", f"{base}/api/orders", token=tokens[user], body=body)
        if status != 202:
            raise SystemExit(f"ops_report: placing an order answered {status}: {answer}")
        order_id = str(answer["order_id"])
        placed.owners[order_id] = user
        placed.by_kind[kind].append(order_id)
        if kind == "cancelled":
            http("DELETE", f"{base}/api/orders/{order_id}", token=tokens[user])
    return placed


def final_statuses(base: str, placed: Placed, timeout: float = 300) -> dict[str, str]:
    """Each order's status once every one is terminal (polled through the API as its owner)."""
    statuses: dict[str, str] = {}

    def all_terminal() -> bool:
        for order_id, user in placed.owners.items():
            if statuses.get(order_id) in TERMINAL:
                continue
            status, answer = http("GET", f"{base}/api/orders/{order_id}", token=placed.tokens[user])
            if status == 200:
                statuses[order_id] = answer["status"]
        return all(statuses.get(order_id) in TERMINAL for order_id in placed.owners)

    wait_for(all_terminal, timeout=timeout, interval=2, what="every order terminal")
    return statuses


# --- Prometheus ---------------------------------------------------------------------------------


class PrometheusRun:
    """The Prometheus server on the project's configuration, scraping this run's web process."""

    def __init__(self, workdir: Path, *, target: str, port: int) -> None:
        binary = shutil.which("prometheus")
        if not binary:
            raise SystemExit("ops_report: the prometheus server is missing (apt-get install prometheus)")
        config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
        config["rule_files"] = [str(ROOT / "deploy" / "prometheus" / "alerts.yml")]
        config["scrape_configs"][0]["static_configs"] = [{"targets": [target]}]
        self.config = config
        path = workdir / "prometheus.yml"
        path.write_text(json.dumps(config))  # JSON is YAML
        self.base = f"http://127.0.0.1:{port}"
        self.log = (workdir / "prometheus.log").open("wb")
        self.server = subprocess.Popen(  # noqa: S603 - the prometheus binary on PATH
            [
                binary,
                f"--config.file={path}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(lambda: http("GET", f"{self.base}/-/ready")[0] == 200, timeout=60, what="Prometheus ready")

    def query(self, expression: str) -> list[dict]:
        status, answer = http("GET", f"{self.base}/api/v1/query?query={urllib.parse.quote(expression)}")
        return answer["data"]["result"] if status == 200 else []

    def alerts(self, name: str) -> list[dict]:
        status, answer = http("GET", f"{self.base}/api/v1/alerts")
        return (
            [a for a in answer["data"]["alerts"] if a["labels"]["alertname"] == name] if status == 200 else []
        )

    def stop(self) -> None:
        self.server.terminate()
        self.server.wait(timeout=30)
        self.log.close()


def opened_or_failed(stack: StackRun, order_id: str) -> bool:
    """Whether the breaker has opened, or the order has failed (without opening it)."""
    if stack.grep("payment breaker opened"):
        return True
    return any(line.get("event") == "order failed" for line in stack.grep(order_id))


def breaker_trip(stack: StackRun, prometheus: PrometheusRun, token: str) -> list[tuple[str, str]]:
    """Fail the gateway until the breaker opens, then follow the alert until it resolves."""
    timeline: list[tuple[str, str]] = []

    def place(card: str) -> str:
        body = {
            "items": [{"product_id": "SKU-0020", "quantity": 1}],
            "payment": {"method": "card", "token": card},
        }
        status, answer = http("POST", f"{stack.base}/api/orders", token=token, body=body)
        if status != 202:
            raise SystemExit(f"ops_report: placing an order answered {status}: {answer}")
        return str(answer["order_id"])

    wait_for(
        lambda: any(
            s["value"][1] == "0" for s in prometheus.query("oms_payment_circuit_breaker_openings_total")
        ),
        timeout=60,
        what="the breaker's openings scraped at 0",
    )
    timeline.append(
        (now(), "Prometheus has scraped oms_payment_circuit_breaker_openings_total = 0; no alert")
    )
    timeline.append((now(), "payments start failing: orders paid with tok_gateway_down"))
    # One failing payment after another, each placed once the last one failed, until it opens.
    for _ in range(10):
        order_id = place("tok_gateway_down")
        wait_for(
            partial(opened_or_failed, stack, order_id),
            timeout=60,
            interval=0.2,
            what="the failing order's end",
        )
        if stack.grep("payment breaker opened"):
            break
    else:
        raise SystemExit("ops_report: ten failing payments did not open the breaker")
    opened_line = stack.grep("payment breaker opened")[0]
    timeline.append((opened_line["timestamp"], f"log: payment breaker opened ({opened_line.get('cause')})"))

    # One good payment after the open period: the trial call closes the breaker.
    time.sleep(6)
    place("tok_ok")
    closed = wait_for(lambda: stack.grep("payment breaker closed"), timeout=30, what="the breaker closed")
    timeline.append((closed[0]["timestamp"], f"log: payment breaker closed ({closed[0].get('cause')})"))

    seen: dict[str, str] = {}
    fired = False
    deadline = time.monotonic() + 9 * 60
    while time.monotonic() < deadline:
        alerts = prometheus.alerts(ALERT)
        for alert in alerts:
            state = alert["state"]
            if state not in seen:
                seen[state] = alert.get("activeAt", "")
                timeline.append((now(), f"alerts API: {ALERT} {state} (activeAt {alert.get('activeAt')})"))
                fired = fired or state == "firing"
        if fired and not alerts:
            timeline.append((now(), f"alerts API: {ALERT} resolved (no longer active)"))
            break
        time.sleep(1)
    else:
        timeline.append((now(), f"alerts API: {ALERT} still {'active' if fired else 'not seen'} after 9 min"))
    # The state gauge, as Prometheus saw it at its scrapes: a 5 s opening may fall between two.
    seen_open = prometheus.query("max_over_time(oms_payment_circuit_breaker_state[15m])")
    openings = prometheus.query("oms_payment_circuit_breaker_openings_total")
    timeline.append(
        (
            now(),
            "queries: max_over_time(oms_payment_circuit_breaker_state[15m]) = "
            + ", ".join(s["value"][1] for s in seen_open)
            + " (1 = open, 2 = half-open); oms_payment_circuit_breaker_openings_total = "
            + ", ".join(s["value"][1] for s in openings),
        )
    )
    if "pending" not in seen:
        timeline.append(("", "no pending phase: the rule has no `for:` (it fires at its first evaluation)"))
    return sorted(timeline, key=lambda item: item[0] or "~")


# --- Validators ---------------------------------------------------------------------------------


def validators(workdir: Path) -> list[tuple[str, int, str]]:
    """(command, exit code, output) of every validator on every deploy file."""
    results = []

    def run(command: str) -> None:
        done = subprocess.run(  # noqa: S602 - our own fixed command lines (pipes)
            command,
            shell=True,
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
        )
        results.append((command, done.returncode, (done.stdout + done.stderr).strip()))

    for overlay in sorted(p.name for p in (ROOT / "deploy" / "k8s" / "overlays").iterdir() if p.is_dir()):
        render = f"kubectl kustomize deploy/k8s/overlays/{overlay}"
        run(f"{render} | grep -c '^kind:'")
        rendered = workdir / f"{overlay}.yaml"
        run(f"{render} > {rendered} && kubernetes-validate --strict {rendered}")
    run("hadolint Dockerfile")
    run("check-jsonschema --schemafile deploy/compose/compose-spec.json docker-compose.yml")
    run("check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/ci.yml")
    for config in ("prometheus.yml", "prometheus-compose.yml"):
        run(f"promtool check config deploy/prometheus/{config}")
    run("promtool check rules deploy/prometheus/alerts.yml")
    run("promtool test rules deploy/prometheus/alerts_test.yml")
    return results


# --- The report ---------------------------------------------------------------------------------


def journey_table(lines: list[dict[str, Any]]) -> list[str]:
    rows = [
        "| timestamp | process | level | logger | event | status / state | reason |",
        "|---|---|---|---|---|---|---|",
    ]
    for line in lines:
        state = line.get("status") or line.get("to_state") or ""
        reason = line.get("reason") or line.get("cause") or ""
        event = str(line.get("event", "")).replace("|", "\\|")[:120]
        rows.append(
            f"| {line.get('timestamp', '')} | {line.get('process', '')} | {line.get('level', '')} | "
            f"{line.get('logger', '')} | {event} | {state} | {reason} |"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument("--skip-alert", action="store_true", help="no Prometheus and breaker trip")
    args = parser.parse_args()
    port = int(os.environ.get("PORT", "8000"))
    workdir = Path(tempfile.mkdtemp(prefix="ops-report-"))
    report = [f"# Operations figures (issue 12), {now()}", ""]
    report += [
        "Environment: "
        + ", ".join(
            f"{name}={os.environ.get(name, '(make stack default)')}"
            for name in ("DATABASE_URL", "BROKER_URL", "REDIS_URL")
        )
        + f", PORT={port}",
        "",
    ]

    stack = StackRun(workdir / "stack.log", port)
    prometheus: PrometheusRun | None = None
    try:
        wait_for(stack.ready, timeout=300, interval=1, what="make stack ready")
        if not args.skip_alert:
            prometheus = PrometheusRun(workdir, target=f"127.0.0.1:{port}", port=port + 1)
        started = time.monotonic()
        placed = place_orders(stack.base, args.orders)
        statuses = final_statuses(stack.base, placed)
        elapsed = time.monotonic() - started
        timeline = breaker_trip(stack, prometheus, placed.tokens["alice"]) if prometheus else []
    finally:
        code = stack.stop()
        if prometheus:
            prometheus.stop()

    lines = stack.lines()
    parsed, total, per_process, plain = json_share(lines)
    outcome = Counter(statuses.values())
    report += [
        "## 1. The output of `make stack`",
        "",
        f"Command: `make --no-print-directory stack` (WEB_ACCESS_LOG=1), stdout and stderr into one file; "
        f"stopped with SIGTERM to the supervisor; make exited with {code}.",
        f"Orders: {args.orders} placed over HTTP by alice and bob "
        f"({len(placed.by_kind['tok_ok'])} tok_ok, {len(placed.by_kind['tok_declined'])} tok_declined, "
        f"{len(placed.by_kind['cancelled'])} cancelled at once), all terminal after {elapsed:.0f} s: "
        + ", ".join(f"{count} {status}" for status, count in sorted(outcome.items())),
        "",
        f"**{parsed} of {total} lines parse as a JSON object: {100 * parsed / total:.2f} %.**",
        "",
        "Lines per process: " + ", ".join(f"{name} {count}" for name, count in sorted(per_process.items())),
        "",
    ]
    if plain:
        report += ["Lines that are not JSON:", "", "```", *plain[:30], "```", ""]
    for kind in ("tok_ok", "tok_declined", "cancelled"):
        order_id = placed.by_kind[kind][len(placed.by_kind[kind]) // 2]
        found = stack.grep(order_id)
        report += [
            f"### One order's journey: `grep {order_id}`",
            "",
            f"({kind}, {statuses.get(order_id)}): {len(found)} lines",
            "",
            *journey_table(found),
            "",
        ]
    if prometheus:
        interval = prometheus.config["global"]
        report += [
            "## 2. A 5-second breaker trip under Prometheus",
            "",
            f"`prometheus` (Debian) with deploy/prometheus/prometheus.yml (scrape_interval "
            f"{interval['scrape_interval']}, evaluation_interval {interval['evaluation_interval']}) "
            "and deploy/prometheus/alerts.yml; target: this run's web process.",
            "",
            "| time (UTC) | what |",
            "|---|---|",
            *[f"| {stamp} | {what} |" for stamp, what in timeline],
            "",
        ]
    report += ["## 3. Validators on every deploy file", ""]
    for command, returncode, output in validators(workdir):
        report += [f"`{command}` → exit {returncode}", "", "```", output or "(no output)", "```", ""]
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    print(f"ops_report: the whole output of make stack is in {stack.log_path}", file=sys.stderr)
    return 0 if total and not plain and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
