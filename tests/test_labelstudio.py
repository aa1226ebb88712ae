"""A real round trip with Label Studio: fmal export -> Label Studio (HTTP API) -> fmal import-labels.

Label Studio (the ``label-studio`` package from PyPI, pinned to ``LABEL_STUDIO_VERSION``) lives in
its own virtual environment, never in fmal's: ``$FMAL_LS_VENV`` (default
``~/.cache/fmal/labelstudio-venv``), created and installed on the first run and reused afterwards
while it holds that version (another version is replaced, with its template data). Its database is migrated once into a template data folder beside
the venv; each run copies the template, so a run costs a server start, not a migration.

The server listens on 127.0.0.1 only, its outbound calls are switched off (version check,
analytics, Sentry) and any that remain go to a dead local proxy; every wait is bounded and the
server's process group is always stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import clustered, vector_pool

from fmal import api
from fmal.export.labelstudio import choice_result, label_config
from fmal.session import Session

pytestmark = pytest.mark.labelstudio

VENV = Path(os.environ.get("FMAL_LS_VENV", Path.home() / ".cache" / "fmal" / "labelstudio-venv")).expanduser()
TEMPLATE = VENV.parent / (VENV.name + "-template-data")
USER, PASSWORD = "fmal@example.com", "fmal-roundtrip-pw"
TOKEN = "f0e1d2c3b4a5968778695a4b3c2d1e0f12345678"
#: the Label Studio release this round trip is checked against; raise it deliberately
LABEL_STUDIO_VERSION = "1.23.2"
INSTALL_TIMEOUT = 1200  # s: pip install label-studio
START_TIMEOUT = 600  # s: first start migrates the database (minutes on a busy 2-core machine)
HTTP_TIMEOUT = 60  # s: one API call


def _ls_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "LABEL_STUDIO"))}
    if not env.get("CI", "x").strip():  # Label Studio reads CI as a bool and will not start on an empty one
        env.pop("CI")
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir), "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        # anything that still tries to leave the machine hits a closed local port at once
        "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    })
    return env


def _installed_version() -> str | None:
    found = sorted(VENV.glob("lib/python*/site-packages/label_studio-*.dist-info"))
    return found[0].name[len("label_studio-"):-len(".dist-info")] if found else None


def _ensure_venv() -> Path:
    exe = VENV / "bin" / "label-studio"
    if exe.exists() and _installed_version() == LABEL_STUDIO_VERSION:
        return exe
    shutil.rmtree(TEMPLATE, ignore_errors=True)  # a database migrated by another version
    VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
    # sys.executable may itself be a venv: the new one still gets its own site-packages
    spec = f"label-studio=={LABEL_STUDIO_VERSION}"
    r = subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", spec], capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    if r.returncode != 0 or not exe.exists():
        pytest.fail(f"pip install {spec} into {VENV} failed (exit {r.returncode}): {r.stderr[-2000:]}")
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """``label-studio start`` on 127.0.0.1 in its own process group; stop() always kills it."""

    def __init__(self, exe: Path, data_dir: Path, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._fh = open(log, "wb")
        cmd = [str(exe), "start", "--data-dir", str(data_dir), "--no-browser", "--internal-host", "127.0.0.1",
               "--port", str(self.port), "--host", self.url, "--username", USER, "--password", PASSWORD,
               "--user-token", TOKEN, "--enable-legacy-api-token", "--log-level", "WARNING"]
        self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=_ls_env(data_dir), start_new_session=True)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"label-studio exited with {self.proc.returncode}: {self.tail()}")
            try:
                self.call("GET", "/api/projects")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(2)
        pytest.fail(f"label-studio not answering on {self.url} after {timeout:.0f} s: {self.tail()}")

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # straight to 127.0.0.1
        with opener.open(req, timeout=HTTP_TIMEOUT) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def tail(self) -> str:
        self._fh.flush()
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._fh.close()


def _ensure_template(exe: Path, tmp: Path) -> Path:
    """A data folder with a migrated database and the test user: made once, copied per run."""
    if (TEMPLATE / "label_studio.sqlite3").exists():
        return TEMPLATE
    work = tmp / "template"
    server = _Server(exe, work, tmp / "template.log")
    try:
        server.wait_ready(START_TIMEOUT)
    finally:
        server.stop()
    staging = TEMPLATE.with_name(TEMPLATE.name + f".{os.getpid()}.tmp")
    shutil.copytree(work, staging)
    if TEMPLATE.exists():  # another run made one meanwhile
        shutil.rmtree(staging)
    else:
        staging.rename(TEMPLATE)
    return TEMPLATE


@pytest.fixture
def private_tmp() -> Iterator[Path]:
    """A temp folder of this test alone: pytest's numbered tmp folders may be pruned by other
    pytest sessions on the same machine during a run that lasts minutes."""
    with tempfile.TemporaryDirectory(prefix="fmal-ls-") as d:
        yield Path(d)


def test_label_studio_round_trip(private_tmp: Path) -> None:
    tmp_path = private_tmp
    X, y = clustered(n=60, d=16, k=3, seed=2)
    classes = np.array(["question", "answer", "chatter"])
    index_dir = tmp_path / "indexes"
    vector_pool(index_dir, "ls", X)
    gold = {f"r{i}": str(classes[c]) for i, c in enumerate(y)}
    seed = api.seed("ls", 9, "kmeans", index_dir=index_dir)
    Session(index_dir / "ls").add_labels({i: gold[i] for i in seed.ids}, source="seed labels")
    q = api.query("ls", None, 8, "margin", index_dir=index_dir)
    exported = api.export("ls", q.round, "label-studio", index_dir=index_dir)
    tasks = json.loads(exported.output.read_text())

    exe = _ensure_venv()
    data_dir = tmp_path / "ls-data"
    shutil.copytree(_ensure_template(exe, tmp_path), data_dir)
    server = _Server(exe, data_dir, tmp_path / "ls.log")
    try:
        server.wait_ready(START_TIMEOUT)
        project = server.call("POST", "/api/projects", {"title": "fmal round trip", "label_config": label_config(classes.tolist())})
        pid = project["id"]
        imported = server.call("POST", f"/api/projects/{pid}/import", tasks)
        assert imported["task_count"] == len(tasks) == 8 and imported["prediction_count"] == 8
        listed = server.call("GET", f"/api/tasks?project={pid}&page_size=100")
        ls_tasks = listed["tasks"] if isinstance(listed, dict) else listed
        assert len(ls_tasks) == 8
        answered = {}
        for t in ls_tasks[:7]:  # the last task stays unannotated
            rid = t["data"]["fmal_id"]
            server.call("POST", f"/api/tasks/{t['id']}/annotations/", {"result": [choice_result(gold[rid])], "lead_time": 1.5})
            answered[rid] = gold[rid]
        export = server.call("GET", f"/api/projects/{pid}/export?exportType=JSON&download_all_tasks=true")
        # the probe's suggestions arrived as Label Studio predictions (the export may list them by id)
        by_id = {t["data"]["fmal_id"]: t for t in tasks}
        for t in export:
            (pred,) = t["predictions"]
            if not isinstance(pred, dict):
                pred = server.call("GET", f"/api/predictions/{pred}/")
            sent = by_id[t["data"]["fmal_id"]]["predictions"][0]
            assert pred["model_version"] == "fmal-probe" and pred["score"] == pytest.approx(sent["score"])
            assert pred["result"][0]["value"] == sent["result"][0]["value"]
    except BaseException:
        print(server.tail())
        raise
    finally:
        server.stop()
    assert server.proc.poll() is not None

    out = tmp_path / "label-studio-export.json"
    out.write_text(json.dumps(export))
    res = api.import_labels(out, "ls", "label-studio", index_dir=index_dir)
    assert (res.added, res.changed, len(res.unknown)) == (7, 0, 0)
    assert [w for _, w in res.skipped] == ["not annotated"]
    labels = Session(index_dir / "ls").labels
    assert {i: labels[i] for i in answered} == answered
    again = api.import_labels(out, "ls", "label-studio", index_dir=index_dir)
    assert (again.added, again.changed) == (0, 0)
