"""Each example runs by the one command at its top, against a real local platform, and counts a journey.

The command is read from the example's docstring (the line that sets
``PERF_SDK_ENDPOINT``), so the documentation cannot drift from what works; the
test only points it at this test's platform, a free port and a temporary
spool. Then one visitor goes through the journey and the feedback form, the
server is stopped as a developer would (Ctrl-C), and the platform must hold one
start, one completion and one rating tied to that transaction.

The Flask example's own test suite (``examples/flask_app/test_app.py``, a
service team's tests with ``perf_sdk.testing``) runs here too, in a subprocess,
because ``testpaths`` covers ``tests/`` only.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import perf_sdk
from perf_sdk.platform import LocalPlatform
from tests.servers import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVICE = "apply-for-a-licence"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"
CSRF_RE = re.compile(r"name='csrfmiddlewaretoken' value='([^']+)'")

EXAMPLES = {
    "flask": ("examples/flask_app/app.py", ["--port", "{port}"]),
    "django": ("examples/django_project/manage.py", ["127.0.0.1:{port}", "--noreload"]),
    "fastapi": ("examples/fastapi_app/app.py", ["--port", "{port}"]),
}


#: Runs a command with Ctrl-C's default meaning, as a developer's terminal gives it. A test run started in
#: the background of a non-interactive shell (a CI script's ``&``, ``nohup``) inherits SIGINT *ignored*, and
#: Python keeps an inherited SIG_IGN: the server would never hear Ctrl-C. (This was the "busy-core flake":
#: the runs that failed were the ones started in the background, not the busy ones.)
AS_FROM_A_TERMINAL = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])",
]


def documented_command(example: str) -> tuple[dict[str, str], list[str]]:
    """The environment and argv of the one command in the example's docstring."""
    text = (ROOT / example).read_text()
    [line] = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("PERF_SDK_ENDPOINT=")]
    words = shlex.split(line)
    env = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_]+=", w))
    argv = [w for w in words if not re.match(r"^[A-Z_]+=", w)]
    argv[0] = sys.executable if argv[0] == "python" else str(BIN / argv[0])
    return env, argv


def with_csrf(page: httpx.Response, data: dict[str, str]) -> dict[str, str]:
    token = CSRF_RE.search(page.text)
    return {**data, "csrfmiddlewaretoken": token.group(1)} if token else data


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs_by_its_documented_command(name: str, tmp_path: Path) -> None:
    example, extra = EXAMPLES[name]
    documented_env, argv = documented_command(example)
    assert documented_env["PERF_SDK_TOKEN"] == "dev-token" and "PERF_SDK_SECRET" in documented_env
    port = free_port()
    with LocalPlatform(token=documented_env["PERF_SDK_TOKEN"]) as platform:
        env = {
            **os.environ,
            **documented_env,
            "PERF_SDK_ENDPOINT": platform.url,
            "PERF_SDK_SPOOL_DIR": str(tmp_path / "spool"),
        }
        log = (tmp_path / "server.log").open("wb")
        proc = subprocess.Popen(
            [*AS_FROM_A_TERMINAL, *argv, *(a.format(port=port) for a in extra)],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base + "/", proc)
            with httpx.Client(base_url=base, headers={"User-Agent": BROWSER}, follow_redirects=True) as browser:
                form = browser.get("/apply")
                confirmation = browser.post("/apply", data=with_csrf(form, {"name": "Ada Lovelace"}))
                assert confirmation.url.path == "/apply/confirmation" and confirmation.status_code == 200
                browser.get("/apply/confirmation")  # a refresh
                feedback = browser.get("/feedback")
                thanks = browser.post("/feedback", data=with_csrf(feedback, {"rating": "5"}))
                assert thanks.status_code == 200 and thanks.url.path == "/feedback/thanks"
            proc.send_signal(signal.SIGINT)  # Ctrl-C: the tracker delivers on the way out
            assert proc.wait(timeout=120) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        output = (tmp_path / "server.log").read_text(errors="replace")
        # Ctrl-C delivers what it can within the tracker's exit timeout (2 s) and leaves the rest in the spool
        # for the next process: on a busy machine, that next process is what delivers it.
        heir = perf_sdk.Tracker(
            service=SERVICE,
            endpoint=platform.url,
            token=documented_env["PERF_SDK_TOKEN"],
            secret=documented_env["PERF_SDK_SECRET"],
            spool_dir=tmp_path / "spool",
        )
        assert heir.flush(60).pending == 0
        heir.close(5)
        transactions = platform.records(SERVICE, "transactions")
        ratings = platform.records(SERVICE, "satisfaction")
    assert sorted(r["stage"] for r in transactions) == ["completed", "started"], output[-3000:]
    assert [r["rating"] for r in ratings] == [5], output[-3000:]
    assert "perf_sdk: record refused" not in output


def test_the_flask_examples_own_test_suite_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/flask_app/test_app.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "4 passed" in result.stdout
