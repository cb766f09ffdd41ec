"""``make up``, Ctrl-C, ``make up`` again on the same work directory (issue #13, "A stack that
restarts"): the second start comes up, takes events end to end, and the first run's events are
still in the central table.

The stack runs as ``make up`` runs it (``python -m geostack.up``, here with ``--workdir`` and
``--free-ports`` so that the test collides with no other stack) and is stopped as Ctrl-C stops
it: one SIGINT to that process (its children run in their own process groups, so the terminal's
SIGINT reaches only it). Free ports also mean every Kafka, Consul and service port changes
between the two starts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import httpx
import orjson
import pytest

from geostack.audit import AuditResult, audit_once, wait_for_central
from geostack.clients import LoadReport, run_clients
from geostack.stack import STACK_TOKENS, LocalStack
from service_kit.wait import wait_until

REPO = Path(__file__).resolve().parent.parent


class MakeUp:
    """``python -m geostack.up`` in the background: the URLs it prints, SIGINT as Ctrl-C."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.stderr_path = workdir.parent / f"{name}.stderr"
        self.lines: list[str] = []
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "geostack.up", "--workdir", str(workdir), "--free-ports"],
                cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _urls(self) -> dict[str, str] | None:
        for line in self.lines:
            if line.startswith("{"):
                doc = orjson.loads(line)
                if isinstance(doc, dict) and "events_batch" in doc:
                    return doc
        return None

    def urls(self, timeout: float = 420.0) -> dict[str, str]:
        """The URL map ``make up`` prints once the stack is up (fails if it exited first)."""
        wait_until(lambda: self._urls() is not None or self.proc.poll() is not None, timeout,
                   interval=0.5, what="make up to print its URLs")
        urls = self._urls()
        assert urls is not None, f"make up exited with {self.proc.returncode}:\n{self.output()}"
        return urls

    def interrupt(self, timeout: float = 180.0) -> int:
        """Ctrl-C: SIGINT to the process; its exit code once it has stopped everything."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def output(self) -> str:
        tail = self.stderr_path.read_text(errors="replace").splitlines()[-40:]
        return "\n".join(self.lines[-20:] + ["-- stderr --"] + tail)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()   # its children die with it (parent-death signal)
            self.proc.wait(30)


@pytest.fixture
def make_up(tmp_path: Path) -> Iterator[list[MakeUp]]:
    started: list[MakeUp] = []
    yield started
    for run in started:
        run.kill()


def send(urls: dict[str, str], run_id: str, https: bool = True) -> LoadReport:
    """A few events from Germany and the US through the geo router, every one acknowledged:
    over HTTPS trusting only the CA ``make up`` printed, or over its plain-HTTP port."""
    router = urls["events_batch_https" if https else "events_batch"].removesuffix("/v1/events")
    assert router.startswith("https://" if https else "http://"), router
    tls = ssl.create_default_context(cafile=urls["ca_cert"]) if https else None
    report = asyncio.run(run_clients(router, ["DE", "US"], events_per_country=20, rate=200.0,
                                     batch=10, clients_per_country=1, run_id=run_id, ssl_context=tls))
    assert len(report.acked) == 40 and report.gave_up == 0 and report.rejected == 0, report.summary()
    return report


def central(urls: dict[str, str]) -> str:
    return urls["dashboard"].rstrip("/")


def stack_tokens(urls: dict[str, str]) -> list[str]:
    """Descriptions of the geoingest tokens the primary datacenter holds."""
    primary = urls["consul_ui"].removesuffix("/ui/")
    tokens = httpx.get(f"{primary}/v1/acl/tokens", headers={"X-Consul-Token": urls["consul_ui_token"]},
                       timeout=10).raise_for_status().json()
    return sorted(t["Description"] for t in tokens if t["Description"].startswith("geoingest "))


def assert_exact(audit: AuditResult) -> None:
    assert audit.missing == 0 and audit.duplicates == 0, audit.as_dict()


def test_acl_tokens_file_is_private_and_round_trips(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path / "stack")
    assert stack._read_acl_tokens() == {}
    stack.acl_tokens_path.parent.mkdir(parents=True)
    stack.acl_tokens_path.with_name("acl-tokens.json.tmp").write_text("{}")   # a leftover, mode 0644
    stack._write_acl_tokens("m-secret", {"edge": "e-secret"})
    assert stat.S_IMODE(os.stat(stack.acl_tokens_path).st_mode) == 0o600
    assert stack._read_acl_tokens() == {"management": "m-secret", "tokens": {"edge": "e-secret"}}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_make_up_twice_on_the_same_workdir_keeps_the_data(tmp_path: Path,
                                                           make_up: list[MakeUp]) -> None:
    workdir = tmp_path / "stack"

    first = MakeUp(workdir, "first")
    make_up.append(first)
    urls1 = first.urls()
    ca1 = Path(urls1["ca_cert"]).read_bytes()
    before = send(urls1, "restart-first")
    assert_exact(wait_for_central(central(urls1), before, timeout=180))
    tokens1 = stack_tokens(urls1)
    assert first.interrupt() == 0, first.output()
    assert first.lines[-1] == "stopped.", first.output()

    kept = workdir / "consul" / "acl-tokens.json"
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600

    second = MakeUp(workdir, "second")
    make_up.append(second)
    urls2 = second.urls()
    assert urls2["consul_ui_token"] == urls1["consul_ui_token"]   # the management token is kept
    assert Path(urls2["ca_cert"]).read_bytes() == ca1   # the CA is kept: clients keep trusting it
    after = send(urls2, "restart-second")
    assert_exact(wait_for_central(central(urls2), after, timeout=180))
    plain = send(urls2, "restart-second-plain", https=False)   # the original service's clients
    assert_exact(wait_for_central(central(urls2), plain, timeout=180))
    # the first run's events are still there, once each
    again = audit_once(central(urls2), before)
    assert again.found == len(before.acked), again.as_dict()
    assert_exact(again)
    # the stack's tokens were reused, not made anew on the second start: one of each still
    assert tokens1 == sorted(description for _, description in STACK_TOKENS.values())
    assert stack_tokens(urls2) == tokens1
    assert second.interrupt() == 0, second.output()
