"""Acceptance: the examples under real pre-fork and multi-process servers count every visitor exactly once.

Each case starts a real server as a subprocess on a free loopback port, with
the LocalPlatform in this process as its endpoint and a temporary spool
directory shared by its workers, drives 1,000 visitors through the journey
(each with its own cookie jar: 600 complete, 100 of those refresh the
confirmation page), stops the server gracefully with SIGTERM, and checks the
platform: exactly 1,000 starts and 600 completions, as sums of ``count``.

Every worker's tracker must deliver on its way out (atexit, or the ASGI
lifespan's shutdown); nothing recorded in a pre-fork master may be sent twice;
a graceful reload (SIGHUP to gunicorn) mid-load replaces every worker and must
lose nothing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from perf_sdk.platform import LocalPlatform
from tests.conftest import SECRET
from tests.servers import free_port, wait_ready

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent
SERVICE = "apply-for-a-licence"
TOKEN = "t"
VISITORS, COMPLETING, REFRESHING = 1000, 600, 100
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"
CSRF_RE = re.compile(r"name='csrfmiddlewaretoken' value='([^']+)'")


def command(server: str, port: int) -> list[str]:
    bind = ["--bind", f"127.0.0.1:{port}"]
    if server.startswith("gunicorn"):
        preload = ["--preload"] if "preload" in server else []
        return [
            str(BIN / "gunicorn"),
            "--chdir",
            str(EXAMPLES / "flask_app"),
            "--workers",
            "4",
            *bind,
            *preload,
            "--graceful-timeout",
            "20",
            "app:create_app()",
        ]
    app_dir, app, factory = {
        "uvicorn": ("fastapi_app", "app:create_app", ["--factory"]),
        "uvicorn-django": ("django_project", "asgi:application", []),
    }[server]
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(EXAMPLES / app_dir),
        *factory,
        app,
        "--workers",
        "2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]


def visitor(base_url: str, transport: httpx.HTTPTransport, index: int) -> None:
    """One visitor, one cookie jar: start; 600 submit and see the confirmation; 100 of those refresh it.

    Visitors share the connection pool (``transport``; a client of its own
    would build a TLS context per visitor, the test's main cost) but each has
    its own client, so its own cookies. The client is not closed: that would
    close the shared pool.
    """
    client = httpx.Client(base_url=base_url, transport=transport, headers={"User-Agent": BROWSER}, timeout=30)
    form = client.get("/apply")
    assert form.status_code == 200, form.status_code
    if index >= COMPLETING:
        return
    data = {"name": f"Visitor {index}"}
    token = CSRF_RE.search(form.text)
    if token:
        data["csrfmiddlewaretoken"] = token.group(1)
    done = client.post("/apply", data=data, follow_redirects=True)
    assert done.status_code == 200 and done.url.path == "/apply/confirmation", (done.status_code, done.url)
    if index < REFRESHING:
        assert client.get("/apply/confirmation").status_code == 200


@pytest.mark.parametrize("server", ["gunicorn", "gunicorn-preload-sighup", "uvicorn", "uvicorn-django"])
def test_every_visitor_counted_exactly_once(server: str, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    with LocalPlatform(token=TOKEN) as platform:
        port = free_port()
        env = {
            **os.environ,
            "PERF_SDK_ENDPOINT": platform.url,
            "PERF_SDK_TOKEN": TOKEN,
            "PERF_SDK_SECRET": SECRET,
            "PERF_SDK_SPOOL_DIR": str(spool_dir),
            "DJANGO_DEBUG": "0",
            "PYTHONPATH": str(ROOT / "src"),
        }
        log = (tmp_path / "server.log").open("wb")
        proc = subprocess.Popen(command(server, port), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_ready(base_url + "/", proc)
            # retries=3: connection attempts only (a request never sent), as during a reload
            with httpx.HTTPTransport(retries=3) as transport, ThreadPoolExecutor(max_workers=16) as pool:
                first = list(pool.map(lambda i: visitor(base_url, transport, i), range(0, VISITORS, 2)))
                if "sighup" in server:
                    proc.send_signal(signal.SIGHUP)  # graceful reload while visitors keep coming
                second = list(pool.map(lambda i: visitor(base_url, transport, i), range(1, VISITORS, 2)))
            assert len(first) + len(second) == VISITORS
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        output = (tmp_path / "server.log").read_text(errors="replace")
        assert "Traceback" not in output, output[-4000:]
        if "sighup" in server:  # the reload happened: four workers booted, then four more
            assert "Handling signal: hup" in output and output.count("Booting worker") == 8, output[-4000:]
        records = platform.records(SERVICE, "transactions")

    totals: Counter[str] = Counter()
    for record in records:
        totals[record["stage"]] += record["count"]
    assert totals == {"started": VISITORS, "completed": COMPLETING}, output[-4000:]
    assert len(records) == VISITORS + COMPLETING  # one record each: no duplicate ids, no aggregate
    leftover = [p.name for p in spool_dir.glob("*") if p.stat().st_size and not p.name.endswith(("-wal", "-shm"))]
    assert not leftover or all(p.endswith(".lock") for p in leftover), leftover
