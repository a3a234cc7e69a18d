"""Hugging Face Spaces on ZeroGPU: generation runs in ``spaces``' GPU worker; everywhere else nothing changes.

ZeroGPU (``SPACES_ZERO_GPU`` true, read as ``spaces`` reads it) works like this, and each point has its place here:

* ``import spaces`` patches torch; ``prepare_settings`` imports it before any model loads, so ``pipe.to("cuda")`` at
  load time keeps the weights on the CPU behind placeholder CUDA tensors. The memory mode becomes ``none`` (the plain
  ``.to``; CPU-offload modes are refused) and coalescing is off (one visitor's GPU quota per call).
* ``startup()`` is what ``spaces`` hooks into ``gr.Blocks.launch``: pack those weights, report the app started. The
  studio never calls ``launch`` (app.py mounts Gradio on FastAPI), so ``install_startup`` runs it as a startup event
  of the mounted Blocks.
* A ``spaces.GPU`` function runs in a worker process forked from the server once a GPU is granted; its arguments are
  pickled to it and its yields pickled back. ``gpu_generate`` sends plain data only (``GpuCall``: the request, a
  cancel flag's path, the asset folder, the LoRA folders) and the worker rebuilds the rest: a ``CancelFlag`` for the
  ``threading.Event`` (the server creates the flag file when the event is set), ``AssetStore`` and ``LoraLibrary``.
  Step updates and the final ``Outcome`` (result or error) come back as the generator's yields.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.errors import StudioError, UnsupportedOnDevice

if TYPE_CHECKING:
    from studio.core.request import GenerationRequest
    from studio.core.settings import Settings
    from studio.engine.engine import Result, StepUpdate

log = logging.getLogger(__name__)
DEFAULT_DURATION_S = 120  # ZeroGPU's per-call GPU time budget unless STUDIO_GPU_DURATION says otherwise
CANCEL_POLL_S = 0.05
_TRUE = ("1", "t", "true")
_started = False


def on_zero_gpu(env: Mapping[str, str] | None = None) -> bool:
    """True on a ZeroGPU Space (``SPACES_ZERO_GPU`` is 1/t/true, exactly what ``spaces`` accepts)."""
    value = (os.environ if env is None else env).get("SPACES_ZERO_GPU")
    return value is not None and value.lower() in _TRUE


def import_spaces_first() -> None:
    """On ZeroGPU, ``import spaces`` now (it patches torch and checks that CUDA was not touched yet)."""
    if on_zero_gpu():
        import spaces  # noqa: F401


def gpu_duration(env: Mapping[str, str] | None = None) -> int:
    """Seconds of GPU asked for per generation: ``STUDIO_GPU_DURATION`` (default 120)."""
    raw = (os.environ if env is None else env).get("STUDIO_GPU_DURATION", str(DEFAULT_DURATION_S))
    try:
        seconds = int(raw)
    except ValueError:
        seconds = 0
    if not 1 <= seconds <= 3600:
        raise StudioError(f"STUDIO_GPU_DURATION={raw!r} must be whole seconds from 1 to 3600 — e.g. 120")
    return seconds


def prepare_settings(settings: Settings) -> Settings:
    """The settings a ZeroGPU server runs with (unchanged elsewhere); imports ``spaces`` so torch is patched first."""
    if not settings.zero_gpu:
        return settings
    import_spaces_first()  # already done by ``import studio``; torch must be patched before the model loads
    if settings.memory not in ("auto", "none"):
        raise UnsupportedOnDevice(
            f"STUDIO_MEMORY={settings.memory} offloads to the CPU during generation, which ZeroGPU cannot do (the "
            "GPU exists only inside a GPU call) — unset STUDIO_MEMORY on a ZeroGPU Space"
        )
    return settings.with_overrides(memory="none", coalesce_ms=0.0)


def refuse_on_zero_gpu(what: str) -> None:
    """Refuse GPU work that does not run in a ZeroGPU call (e.g. LoRA training), naming the fix."""
    if on_zero_gpu():
        raise UnsupportedOnDevice(
            f"{what} needs a dedicated GPU; on ZeroGPU only generation gets one — run the studio on a Space "
            "with GPU hardware (e.g. L40S) or locally for this"
        )


# ---- startup: what spaces' launch hook would have run --------------------------------------------------------
def startup() -> None:
    """On ZeroGPU, once: ``spaces.zero.startup()`` (pack the weights, report started), then un-hook ``launch``."""
    global _started
    if _started or not on_zero_gpu():
        return
    import gradio as gr
    import spaces.zero
    import spaces.zero.gradio as zero_gradio

    spaces.zero.startup()
    gr.Blocks.launch = zero_gradio._orig_launch  # the hook restores launch after running once; so do we
    _started = True


def install_startup(blocks: Any) -> None:
    """Run ``startup`` when the app that mounts ``blocks`` starts (a Gradio startup event), on ZeroGPU only."""
    if not on_zero_gpu():
        return

    async def zero_gpu_startup() -> None:
        startup()  # on the event loop's (main) thread: the one that loaded the model under spaces' torch mode

    blocks.extra_startup_events.append(zero_gpu_startup)


# ---- what crosses the process boundary ------------------------------------------------------------------------
@dataclass(frozen=True)
class GpuCall:
    """The GPU function's one argument: plain, picklable data."""

    request: GenerationRequest
    cancel_path: str
    assets_root: str | None = None
    lora_dirs: tuple[str, ...] | None = None
    previews: bool = False


@dataclass(frozen=True)
class Outcome:
    """The GPU function's last yield: the engine's result, or the error it raised."""

    result: Result | None = None
    error: Exception | None = None


class CancelFlag:
    """The worker's stand-in for the server's ``threading.Event``: set once the flag file exists (or ``set()``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._event = threading.Event()

    def is_set(self) -> bool:
        return self._event.is_set() or os.path.exists(self.path)

    def set(self) -> None:
        self._event.set()


class CancelFlags:
    """Flag files of running GPU calls in a private folder; ``watch`` creates one when its event is set."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="studio-cancel-"))

    def new_path(self) -> str:
        return str(self.root / secrets.token_hex(12))

    @contextlib.contextmanager
    def watch(self, path: str, event: threading.Event | None) -> Iterator[None]:
        """While the block runs, mirror ``event`` into the flag file; remove the file afterwards."""
        done = threading.Event()

        def mirror() -> None:
            while not done.wait(CANCEL_POLL_S):
                if event is not None and event.is_set():
                    Path(path).touch()
                    return

        watcher = threading.Thread(target=mirror, name="studio-cancel-flag", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()
            Path(path).unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def portable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling, else a RuntimeError carrying its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - any failure to round-trip means: send a plain copy
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


# ---- the worker side ------------------------------------------------------------------------------------------
_libraries: dict[tuple[str, ...], Any] = {}


def _library(dirs: tuple[str, ...] | None) -> Any:
    """A LoRA library over ``dirs`` (one per folder set, so its hash cache lasts across calls)."""
    if dirs is None:
        return None
    from studio.lora.files import LoraLibrary

    if dirs not in _libraries:
        _libraries[dirs] = LoraLibrary([Path(d) for d in dirs])
    return _libraries[dirs]


def run_call(generate: Callable[..., Result], call: GpuCall) -> Iterator[StepUpdate | Outcome]:
    """Run ``generate`` for ``call`` (in the GPU worker); yield step updates, then one ``Outcome``.

    Closing the generator early (the server stopped listening) cancels the generation.
    """
    from studio.store.assets import AssetStore

    updates: queue.Queue[Any] = queue.Queue()
    cancel = CancelFlag(call.cancel_path)

    def work() -> None:
        try:
            result = generate(
                call.request,
                on_step=updates.put if call.previews else None,
                cancel=cancel,
                assets=AssetStore(Path(call.assets_root)) if call.assets_root else None,
                loras=_library(call.lora_dirs),
            )
            updates.put(Outcome(result=result))
        except Exception as exc:  # noqa: BLE001 - sent back to the server, which raises it
            if not isinstance(exc, StudioError):
                log.exception("generation failed in the GPU worker")
            updates.put(Outcome(error=portable(exc)))

    threading.Thread(target=work, name="studio-gpu-call", daemon=True).start()
    try:
        while True:
            item = updates.get()
            yield item
            if isinstance(item, Outcome):
                return
    finally:
        cancel.set()  # a no-op once finished; stops the generation if the generator was closed early


def finish(items: Iterator[StepUpdate | Outcome], on_step: Callable[[StepUpdate], None] | None) -> Result:
    """Consume a GPU call's yields on the server: step updates to ``on_step``; the outcome returned or raised."""
    outcome: Outcome | None = None
    for item in items:
        if isinstance(item, Outcome):
            outcome = item
        elif on_step is not None:
            on_step(item)
    if outcome is None:
        raise StudioError("the GPU worker ended without a result — try again")
    if outcome.error is not None:
        raise outcome.error
    assert outcome.result is not None
    return outcome.result


class ZeroGpuGenerate:
    """``Engine.generate``'s signature, run through ``spaces.GPU`` with plain-data arguments (see the module doc)."""

    def __init__(self, generate: Callable[..., Result], duration: int) -> None:
        import spaces

        self.flags = CancelFlags()

        def studio_generate(call: GpuCall) -> Iterator[StepUpdate | Outcome]:
            yield from run_call(generate, call)

        self.on_gpu = spaces.GPU(duration=duration)(studio_generate)

    def call_for(
        self, request: GenerationRequest, previews: bool = False, assets: Any = None, loras: Any = None
    ) -> GpuCall:
        """The plain data for one generation."""
        return GpuCall(
            request=request,
            cancel_path=self.flags.new_path(),
            assets_root=str(assets.root) if assets is not None else None,
            lora_dirs=tuple(str(d) for d in loras.dirs) if loras is not None else None,
            previews=previews,
        )

    def __call__(
        self,
        request: GenerationRequest,
        on_step: Callable[[StepUpdate], None] | None = None,
        cancel: threading.Event | None = None,
        assets: Any = None,
        loras: Any = None,
    ) -> Result:
        call = self.call_for(request, on_step is not None, assets, loras)
        with self.flags.watch(call.cancel_path, cancel):
            return finish(self.on_gpu(call), on_step)


def gpu_generate(generate: Callable[..., Result], env: Mapping[str, str] | None = None) -> Callable[..., Result]:
    """``generate`` itself, or on ZeroGPU a ``ZeroGpuGenerate`` around it (same call signature)."""
    if not on_zero_gpu(env):
        return generate
    return ZeroGpuGenerate(generate, gpu_duration(env))
