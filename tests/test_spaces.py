"""The same repo as a Hugging Face Space: the Spaces environment, and ZeroGPU driven through ``spaces``' own code.

What runs here without a GPU (docs/spaces.md says what that proves and what it does not):

* the worker side of the GPU call in a process forked from a server holding the model, with the call pickled to it
  and every yield pickled back through ``spaces``' own queue class — a generation with a control, a region and a
  LoRA, and a cancel set on the server's ``threading.Event``;
* the real app with ``SPACES_ZERO_GPU=true`` against a stand-in for Hugging Face's device API: ``spaces`` patches
  torch at import, the model is placed "on cuda" and packed at startup (the launch hook, run for the mounted app),
  and a generation crosses into a forked worker, which unpickles the call and reaches CUDA initialisation — where a
  GPU-less machine stops. With a CUDA GPU the same test expects the image.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from PIL import Image

from studio import spaces_support
from studio.core.errors import Cancelled, UnsupportedOnDevice
from studio.core.request import ControlSpec, GenerationRequest, LoraSpec, RegionSpec
from studio.core.settings import Settings
from studio.engine.engine import Result, StepUpdate
from tests.conftest import MODEL, ROOT
from tests.server import AppServer, free_port

ZERO = {"SPACES_ZERO_GPU": "true"}
PROMPT = "a red circle in the top left on a white background"


def test_off_zero_gpu_generation_is_the_engine_method_and_settings_are_unchanged():
    def generate(*_args: Any, **_kwargs: Any) -> None:
        return None

    assert spaces_support.gpu_generate(generate, env={}) is generate
    assert spaces_support.gpu_generate(generate, env={"SPACES_ZERO_GPU": "false"}) is generate
    settings = Settings(memory="model")
    assert spaces_support.prepare_settings(settings) is settings


def test_zero_gpu_settings_place_the_model_plainly_and_refuse_offload():
    prepared = spaces_support.prepare_settings(Settings(coalesce_ms=30.0, zero_gpu=True))
    assert prepared.memory == "none" and prepared.coalesce_ms == 0
    with pytest.raises(UnsupportedOnDevice, match="unset STUDIO_MEMORY"):
        spaces_support.prepare_settings(Settings(memory="sequential", zero_gpu=True))
    assert spaces_support.gpu_duration({}) == 120 and spaces_support.gpu_duration({"STUDIO_GPU_DURATION": "45"}) == 45
    with pytest.raises(Exception, match="STUDIO_GPU_DURATION"):
        spaces_support.gpu_duration({"STUDIO_GPU_DURATION": "soon"})


# ---- the worker side, forked, arguments and yields through spaces' queue ---------------------------------------
def _worker(generate: Any, calls: Any, results: Any) -> None:
    """What spaces' worker does with a call: take it from the queue, run the task, put every yield back."""
    call = calls.get()
    for item in spaces_support.run_call(generate, call):
        results.put(item)


def _forked(
    studio: Any, request: GenerationRequest, cancel: threading.Event | None = None, cancel_at_step: int | None = None
) -> tuple[Result, list[StepUpdate]]:
    """One GPU call in a forked process; returns the server-side result and the step updates that came back."""
    from spaces.utils import SimpleQueue  # the queue class spaces pickles GPU arguments and results through

    runner = spaces_support.ZeroGpuGenerate.__new__(spaces_support.ZeroGpuGenerate)
    runner.flags = spaces_support.CancelFlags()
    call = runner.call_for(request, previews=True, assets=studio.store.assets, loras=studio.loras)
    calls, results = SimpleQueue(), SimpleQueue()
    process = multiprocessing.get_context("fork").Process(target=_worker, args=(studio.engine.generate, calls, results))
    process.start()
    try:
        calls.put(call)
        steps: list[StepUpdate] = []

        def yields() -> Any:
            while True:
                item = results.get()
                yield item
                if isinstance(item, spaces_support.Outcome):
                    return

        def on_step(update: StepUpdate) -> None:
            steps.append(update)
            if cancel is not None and update.step == cancel_at_step:
                cancel.set()

        with runner.flags.watch(call.cancel_path, cancel):
            try:
                return spaces_support.finish(yields(), on_step), steps
            finally:
                process.join(timeout=60)
    finally:
        if process.is_alive():
            process.kill()
        runner.flags.close()


def test_a_gpu_call_crosses_a_fork_with_a_control_a_region_and_a_lora(studio):
    assets = studio.store.assets
    mask = Image.new("L", (128, 128), 0)
    mask.paste(255, (0, 0, 64, 128))
    edges = Image.new("RGB", (128, 128), "white")
    edges.paste((0, 0, 0), (40, 40, 90, 90))
    request = GenerationRequest(
        prompt=PROMPT,
        seed=3,
        steps=2,
        controls=(ControlSpec("canny", assets.put_image(edges), True, 0.7),),
        regions=(RegionSpec(assets.put_image(mask), "a blue square"),),
        loras=(LoraSpec("zwx-orange", "", 0.8),),
    ).validate()
    result, steps = _forked(studio, request)
    assert result.request.prompt == PROMPT and result.request.loras[0].sha256  # resolved in the worker
    assert [s.step for s in steps] == [1, 2] and len(result.images) == 1
    assert result.images[0].size == (128, 128)
    record = studio.generate(request)  # the same request in-process: the forked worker made the same pixels
    with Image.open(record["images"][0]["path"]) as same:
        assert same.convert("RGB").tobytes() == result.images[0].convert("RGB").tobytes()


def test_cancelling_the_servers_event_stops_the_forked_generation(studio):
    cancel = threading.Event()
    with pytest.raises(Cancelled) as err:
        _forked(studio, GenerationRequest(prompt=PROMPT, seed=4, steps=40).validate(), cancel, cancel_at_step=1)
    assert err.value.request.steps == 40  # the worker's exception, with its resolved request, came back pickled


# ---- the real app under SPACES_ZERO_GPU, against a stand-in for the device API ---------------------------------
class DeviceApi:
    """Hugging Face's ZeroGPU device API as ``spaces.zero.api.APIClient`` calls it: grants GPU 0, records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                calls.append((url.path, {k: v[0] for k, v in parse_qs(url.query).items()}))
                body = b""
                if url.path == "/schedule":
                    body = json.dumps({"idle": False, "nvidiaIndex": 0, "nvidiaUUID": "0", "allowToken": "t"}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        return [path for path, _ in self.calls]

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def zero_gpu(tmp_path_factory):
    root = tmp_path_factory.mktemp("zero-gpu")
    (root / "data").mkdir()
    api = DeviceApi()
    env = {"SPACES_ZERO_GPU": "true", "SPACES_ZERO_DEVICE_API_URL": api.url, "HOME": str(root / "home")}
    srv = AppServer(root / "data", env=env)
    yield srv, api, root / "home" / ".zerogpu" / "tensors"
    srv.close()
    api.close()


@pytest.mark.slow
def test_zero_gpu_startup_packs_the_weights_and_reports_for_the_mounted_app(zero_gpu):
    _server, api, offload = zero_gpu
    assert api.paths()[:1] == ["/startup-report"]  # spaces' launch hook ran, without launch()
    packed = sum(f.stat().st_size for f in offload.iterdir())
    assert packed > 10 * 2**20  # flux-mini's weights, placed "on cuda" under spaces' torch patch, packed to disk


@pytest.mark.slow
def test_zero_gpu_generation_crosses_into_spaces_forked_worker(zero_gpu):
    import torch
    from gradio_client import Client

    server, api, _offload = zero_gpu
    client = Client(server.url, verbose=False)
    has_gpu = torch.cuda.is_available()
    try:
        made = client.predict(prompt=PROMPT, seed=1, steps=2, api_name="/generate")
    except Exception as exc:  # noqa: BLE001 - only a GPU-less machine may end here, and only at CUDA init
        assert not has_gpu, exc
        made = None
    log = server.log_path.read_text()
    schedule = [params for path, params in api.calls if path == "/schedule"]
    allowed = [params for path, params in api.calls if path == "/allow"]
    assert schedule and schedule[-1]["durationSeconds"] == "120"
    # /allow comes from the forked worker after it unpickled the call: another process than the server's
    assert allowed and int(allowed[-1]["pid"]) not in (server.proc.pid, os.getpid())
    assert not re.search(r"PicklingError|[Cc]an(no|')t pickle", log)
    if has_gpu:
        assert made["status"] == "done" and Path(made["images"][0]).is_file()  # downloaded by the client
    else:
        worker_failure = log[log.index("in worker_init") :]
        assert "torch.init(nvidia_uuid)" in worker_failure and "NVIDIA driver" in worker_failure


def test_lora_training_is_refused_on_zero_gpu(studio, monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    with pytest.raises(UnsupportedOnDevice, match="ZeroGPU"):
        studio.train_lora("x", "zwx", [], [], 4, 1, 1e-4)


# ---- the Spaces environment without ZeroGPU ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def space(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("space-data")
    env = {
        "SPACE_ID": "someone/flux-studio",
        "SPACE_HOST": "someone-flux-studio.hf.space",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "SYSTEM": "spaces",
        # what a Space with `hf_oauth: true` gets (the provider is only contacted when someone logs in)
        "OAUTH_CLIENT_ID": "test-client",
        "OAUTH_CLIENT_SECRET": "test-secret",
        "OAUTH_SCOPES": "openid profile",
        "OPENID_PROVIDER_URL": "https://huggingface.co",
    }
    srv = AppServer(data_dir, env=env)
    yield srv
    srv.close()


def test_app_serves_with_the_spaces_environment(space):
    with urllib.request.urlopen(space.url + "/healthz") as resp:
        assert json.load(resp)["status"] == "ok"
    with urllib.request.urlopen(space.url + "/") as resp:
        assert resp.status == 200 and b"Flux Studio" in resp.read()
    with urllib.request.urlopen(space.url + "/config") as resp:
        config = json.load(resp)
    assert any(
        c.get("props", {}).get("value", "").startswith("Sign in") or c.get("type") == "loginbutton"
        for c in config["components"]
    )  # multi-user on a Space with OAuth: a Hugging Face login button


def test_query_string_share_form_redirects_to_the_share_page(space):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(space.url + "/?share=unknown-token-aaaaaaaaaaaa")
    assert err.value.code == 404 and "/share/unknown-token" in err.value.url


def test_readme_front_matter_is_complete():
    import yaml

    text = (ROOT / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    for key in ("title", "sdk", "sdk_version", "app_file", "license", "short_description", "models", "hf_oauth"):
        assert front.get(key), key
    assert len(front["short_description"]) <= 60  # the Hub's limit
    assert str(MODEL.name) not in front["models"] and all("/" in m for m in front["models"])
