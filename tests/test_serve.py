"""``python app.py --replicas 2``: two engine replicas on Ray Serve behind the one Gradio front end.

One app (module fixture, a private local Ray cluster whose temp dir is under the test's tmp dir): concurrent API
requests use both replicas and land in the one history; a cancel from the page reaches the replica running it;
a replica killed mid-generation ends its request as a failed record, the other request finishes and Serve
replaces the replica. Without ``--replicas`` Ray is never imported.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MODEL, ROOT
from tests.server import AppServer

pytestmark = pytest.mark.slow
START_LINE = re.compile(r"generate (\w+) runs on replica (\w+) \(pid (\d+)\)")


class ReplicaServer(AppServer):
    """AppServer with time for Ray to start and two replicas to load the model."""

    def _wait(self, timeout_s: float = 420) -> None:
        super()._wait(timeout_s)

    def close(self) -> None:
        """SIGTERM, and time for the app to stop Ray itself (about 5 s when idle) before AppServer's SIGKILL."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        super().close()


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Ray's GCS, raylet and workers are the app's children and grandchildren)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return "?"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ReplicaServer]:
    data_dir = tmp_path_factory.mktemp("serve-data")
    ray_tmp = tmp_path_factory.mktemp("ray")
    srv = ReplicaServer(data_dir, "--replicas", "2", env={"RAY_TMPDIR": str(ray_tmp), "RAY_ADDRESS": ""})
    ray_pids: set[int] = set()
    try:
        ray_pids = descendants(srv.proc.pid)
        yield srv
    finally:
        ray_pids |= descendants(srv.proc.pid)
        stopping = time.monotonic()
        srv.close()
        stopped = f"the app stopped in {time.monotonic() - stopping:.1f} s with code {srv.proc.returncode}"
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in ray_pids) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = {pid: command(pid) for pid in ray_pids if alive(pid)}
        for pid in left:  # only processes this app started
            os.kill(pid, signal.SIGKILL)
        assert not left, f"Ray processes outlived the app ({stopped}): {left}"


def healthz(server: AppServer) -> dict[str, Any]:
    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as resp:
        return json.load(resp)


def generate(server: AppServer, prompt: str, **values: Any) -> dict[str, Any]:
    from gradio_client import Client

    return Client(server.url, verbose=False).predict(prompt=prompt, api_name="/generate", **values)


def history(server: AppServer) -> list[dict[str, Any]]:
    """Every record in the app's one database, read directly."""
    from studio.store.store import Store

    with Store(f"sqlite:///{server.data_dir / 'studio.db'}", server.data_dir) as store:
        return store.list(limit=500)[0]


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_healthz_counts_the_replicas(server):
    body = healthz(server)
    assert body["status"] == "ok" and body["model"].endswith("flux-mini")
    assert body["replicas"] == {"ready": 2, "total": 2}


def test_concurrent_requests_use_both_replicas_and_one_history(server):
    prompts = [f"a red circle on a white background, number {k}" for k in range(6)]
    with ThreadPoolExecutor(len(prompts)) as pool:
        outs = list(pool.map(lambda k: generate(server, prompts[k], seed=100 + k), range(len(prompts))))
    assert all(out["status"] == "done" and Path(out["images"][0]).is_file() for out in outs)
    replicas = {out["timings"]["replica"] for out in outs}
    assert len(replicas) == 2, replicas  # both engines worked
    stored = {record["id"]: record for record in history(server)}
    for out in outs:  # every replica wrote into the same database and data folder
        record = stored[out["id"]]
        assert record["timings"]["replica"] == out["timings"]["replica"]
        assert record["request"]["seed"] == out["seed"] and Path(record["images"][0]["path"]).is_file()
        assert Path(record["images"][0]["path"]).parent == server.data_dir / "images"
    from gradio_client import Client

    replay = Client(server.url, verbose=False).predict(id=outs[0]["id"], api_name="/replay")
    assert replay["replay_of"] == outs[0]["id"] and replay["status"] == "done" and replay["timings"]["replica"]


def page_event(
    server: AppServer,
    api_name: str,
    values: dict[str, Any],
    on_message: Callable[[dict[str, Any], httpx.Client, dict[str, Any], str], None] | None = None,
) -> dict[str, Any]:
    """Run the page's event ``api_name`` (the first whose name starts so) over Gradio's queue protocol, each input
    at its default unless ``values`` names its elem_id; ``on_message`` sees every message; return the last one."""
    session = secrets.token_hex(8)
    with httpx.Client(timeout=180) as client:
        config = client.get(f"{server.url}/config").json()
        components = {c["id"]: c.get("props", {}) for c in config["components"]}
        fn_index, inputs = ui_event(config, api_name)
        data = [values.get(components[cid].get("elem_id"), components[cid].get("value")) for cid in inputs]
        body = {"fn_index": fn_index, "data": data, "session_hash": session}
        assert client.post(f"{server.url}/gradio_api/queue/join", json=body).status_code == 200
        with client.stream("GET", f"{server.url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if on_message is not None:
                    on_message(message, client, config, session)
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError(f"{api_name} never completed")


def ui_event(config: dict[str, Any], api_name: str) -> tuple[int, list[int]]:
    """(fn_index, input component ids) of the first page event whose API name starts with ``api_name``."""
    return next(
        (k, d["inputs"]) for k, d in enumerate(config["dependencies"]) if str(d.get("api_name")).startswith(api_name)
    )


def test_cancel_from_the_page_reaches_the_replica(server):
    """The page's Generate (step updates stream back from the replica), then its Cancel, over Gradio's protocol."""
    prompt = "a green triangle in the center, cancelled"
    steps_seen: list[dict[str, Any]] = []

    def press_cancel_while_denoising(
        message: dict[str, Any], client: httpx.Client, config: dict[str, Any], session: str
    ) -> None:
        if message.get("msg") == "process_generating" and "Step " in json.dumps(message["output"]):
            steps_seen.append(message)
            if len(steps_seen) == 2:  # it is denoising on a replica: press Cancel (the page's own event)
                cancel = {"fn_index": ui_event(config, "on_cancel")[0], "data": [], "session_hash": session}
                assert client.post(f"{server.url}/gradio_api/run/predict", json=cancel).status_code == 200

    final = page_event(server, "on_generate", {"prompt": prompt, "steps": 200, "seed": 5}, press_cancel_while_denoising)
    assert len(steps_seen) >= 2 and final["success"], final
    assert any("data:image/png" in json.dumps(m["output"]) for m in steps_seen)  # a step preview from the replica
    assert "Cancelled" in json.dumps(final["output"]["data"][0])
    record = next(r for r in history(server) if r["request"]["prompt"] == prompt)
    assert record["status"] == "cancelled" and record["images"] == [] and record["timings"]["replica"]


def test_live_mode_runs_on_a_replica_and_stores_nothing(server):
    prompt = "a purple circle, live preview"
    final = page_event(server, "on_live", {"prompt": prompt, "live": True, "seed": 9})
    assert final["success"], final
    assert json.dumps(final["output"]["data"][0]).startswith('"Live')
    assert "data:image/png" in json.dumps(final["output"]["data"][1])  # the image came back from the replica
    assert not [r for r in history(server) if r["request"]["prompt"] == prompt]


def test_killed_replica_fails_its_request_and_is_replaced(server):
    def starts() -> list[tuple[str, str, str]]:
        return START_LINE.findall(server.log_path.read_text())

    seen = len(starts())
    with ThreadPoolExecutor(2) as pool:
        doomed = pool.submit(generate, server, "a blue square, killed", seed=11, steps=200)
        wait_until(lambda: len(starts()) > seen, 60, "the first request to start")
        other = pool.submit(generate, server, "a yellow circle, survives", seed=12, steps=30)
        wait_until(lambda: len(starts()) > seen + 1, 60, "the second request to start")
        (_, doomed_replica, doomed_pid), (_, other_replica, _) = starts()[seen : seen + 2]
        assert doomed_replica != other_replica  # the second request went to the idle replica
        time.sleep(1.0)
        os.kill(int(doomed_pid), signal.SIGKILL)  # the replica's worker process, mid-denoise
        with pytest.raises(Exception, match=f"replica {doomed_replica} running this generation stopped"):
            doomed.result()
        survived = other.result()
    assert survived["status"] == "done" and survived["timings"]["replica"] == other_replica
    failed = next(r for r in history(server) if r["request"]["prompt"] == "a blue square, killed")
    assert failed["status"] == "failed" and failed["images"] == [] and doomed_replica in failed["error"]
    assert failed["timings"]["replica"] == doomed_replica
    owned = {Path(image["path"]).name for record in history(server) for image in record["images"]}
    assert {path.name for path in (server.data_dir / "images").iterdir()} <= owned  # no image without its record
    wait_until(lambda: healthz(server)["replicas"] == {"ready": 1, "total": 2}, 60, "/healthz to count the loss")
    wait_until(lambda: healthz(server)["replicas"] == {"ready": 2, "total": 2}, 180, "Serve to replace the replica")
    after = generate(server, "a blue square, after the kill", seed=13)
    assert after["status"] == "done" and after["timings"]["replica"] != doomed_replica


def test_without_replicas_ray_is_never_imported(tmp_path):
    script = (
        "import sys, app\n"
        "app.create_app(app.parse_args([]))\n"
        "assert 'ray' not in sys.modules, sorted(m for m in sys.modules if m.startswith('ray'))\n"
        "print('no ray')\n"
    )
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(tmp_path),
        "STUDIO_MODEL": str(MODEL),
        "STUDIO_THREADS": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "no ray" in out.stdout, out.stderr[-3000:]
