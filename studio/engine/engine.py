"""The Engine: one resident Flux pipeline, one generation (or coalesced group) at a time, progress and cancel.

Only the Engine holds model state. ``ensure`` is keyed and idempotent: it loads nothing when the model and
quantization are unchanged; other Flux pipelines (img2img, inpaint) are derived with ``from_pipe``. One txt2img
path: ``_prepare`` resolves the requests of a run (one, or a coalesced group), ``_denoise_rows`` denoises their rows
together (``studio.engine.rows``). Per-call state travels in a ``RunContext``, never on the Engine.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from studio.core.errors import Cancelled, StudioError, UnsupportedOnDevice
from studio.core.request import MAX_SEED, GenerationRequest
from studio.core.settings import Settings
from studio.engine import attention, coalesce, edit, flux2, loading, rows, sampling
from studio.engine.caching import step_cache
from studio.engine.conditioning import control, reference, regions
from studio.engine.conditioning.control_cache import ControlMaps, ControlNets, preview_map
from studio.engine.context import Exclusive, Finish, Result, RunContext, StepUpdate, run_timings
from studio.engine.lru import LruCache
from studio.engine.memory import apply_memory_mode, default_threads, resolve_device
from studio.lora.library import LoraAdapters, LoraLibrary, apply_request_loras
from studio.models import kinds as model_kinds
from studio.models.catalog import ModelDefaults, ModelLocation, defaults_for, locate
from studio.store.assets import AssetStore

__all__ = ["Engine", "Result", "StepUpdate", "default_threads"]
log = logging.getLogger(__name__)
TEXT_CACHE_SIZE = 64


class Engine:
    """Owns the pipeline. Thread-safe: one generation at a time behind a lock."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self._lock = threading.Lock()
        self._pipe: Any = None
        self._key: tuple[str, str] | None = None
        self._location: ModelLocation | None = None
        self._defaults: ModelDefaults | None = None
        self._derived = edit.DerivedPipelines()
        self._kontext = False  # the resident model takes reference images (FLUX.1 Kontext)
        self._text_cache = LruCache(TEXT_CACHE_SIZE)
        self._running: tuple[threading.Event, ...] = ()  # the cancel events of what holds the engine now
        self._coalescer: coalesce.Coalescer | None = None
        self._exec_device: torch.device = self.device
        self._assets = AssetStore(settings.data_dir / "assets")  # inputs of calls that name no store
        self._controlnets = ControlNets(self.dtype)
        self._control_maps = ControlMaps(settings.annotators)  # the one cache of annotated control maps
        self.load_count = 0
        self.compiled = False
        self.lora_library = LoraLibrary(settings.lora_dirs)
        self.lora_adapters = LoraAdapters()
        if self.device.type == "cpu":
            torch.set_num_threads(settings.threads or default_threads())
        if settings.memory not in ("none", "auto") and self.device.type != "cuda":
            raise UnsupportedOnDevice(
                f"STUDIO_MEMORY={settings.memory} offloads to a CUDA GPU, but the device is {self.device} — "
                "unset STUDIO_MEMORY (or use none) on this machine"
            )
        self.configure_coalescing(settings.coalesce_ms)

    # ---- model -------------------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        """The loaded model's name (or the configured one before the first load)."""
        return self._location.name if self._location else self.settings.model

    def locate_model(self, model: str = "") -> ModelLocation:
        """Where ``model`` (empty: STUDIO_MODEL) loads from; InvalidRequest unless the operator allows it
        (``Settings.allowed_models``: STUDIO_MODEL and STUDIO_MODELS)."""
        name = (model or self.settings.model).strip()
        self.settings.check_model(name)
        return locate(name, self.settings.with_overrides(model=name))  # an allowed model is the operator's choice

    def ensure(self, model: str = "", quant: str = "") -> ModelLocation:
        """Load the model once; a no-op when it is already resident with the same quantization.

        Only allowed models load (``locate_model``). The resident pipeline is dropped only after the new weights
        have been read: a model that fails to load (missing or corrupt weights, no network) leaves it working.
        An empty ``quant`` (a request that names none) takes the settings' (STUDIO_QUANT); ``resolve`` records it.
        """
        location = self.locate_model(model)
        quant = quant or self.settings.quant or "none"
        key = (location.source, quant)
        if self._key == key:
            return location
        pipe = loading.read(location, quant, self.device, self.dtype)  # raises before anything resident is touched
        self._unload()
        self._pipe = self._place(pipe, location)
        self._exec_device = self._pipe._execution_device
        self._key, self._location = key, location
        self._kontext = model_kinds.is_kontext(location.card_dir)
        self._defaults = defaults_for(location, bool(self._pipe.transformer.config.guidance_embeds))
        self.load_count += 1
        return location

    def _place(self, pipe: Any, location: ModelLocation) -> Any:
        """``pipe`` on the device with the memory mode, attention backend and compilation the settings ask for."""
        started = time.perf_counter()
        pipe.set_progress_bar_config(disable=True)
        apply_memory_mode(pipe, self.settings.memory, self.device)
        attention.apply_backend(pipe.transformer, self.settings.attention_backend)
        self.compiled = self._maybe_compile(pipe)
        log.info("placed %s in %.1fs", location.name, time.perf_counter() - started)
        return pipe

    def _maybe_compile(self, pipe: Any) -> bool:
        """Regional torch.compile of the transformer when ``settings.compile`` (STUDIO_COMPILE) asks."""
        from studio.engine.compiling import compile_wanted, prepare_pipeline

        if not compile_wanted(self.device, self.settings.compile):
            return False
        prepare_pipeline(pipe, self.settings.lora_max_rank)
        return True

    def _unload(self) -> None:
        self._pipe, self._key, self._location, self._defaults = None, None, None, None
        self._kontext = False
        self._derived.clear()
        self._text_cache.clear()
        self._controlnets.clear()
        self._control_maps.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def defaults(self, model: str = "") -> ModelDefaults:
        """The model's defaults (loads the model if needed)."""
        with self._lock:
            self.ensure(model)
            assert self._defaults is not None
            return self._defaults

    @property
    def pipe(self) -> Any:
        """The resident base pipeline (None before the first load)."""
        return self._pipe

    def pipeline_for(self, mode: str) -> Any:
        """The pipeline for a mode, derived from the resident one with ``from_pipe`` (weights shared)."""
        return self._pipe if mode == "txt2img" else self._derived.get(self._pipe, mode)

    # ---- requests ----------------------------------------------------------------------------------
    def resolve(self, request: GenerationRequest) -> GenerationRequest:
        """Fill unset values from the loaded model's defaults and draw a seed if none is given."""
        assert self._defaults is not None and self._location is not None
        d = self._defaults
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED - request.batch_size + 1)
        return request.replace(
            model=self._location.name,
            width=request.width or d.width,
            height=request.height or d.height,
            steps=request.steps or d.steps,
            guidance=d.guidance if request.guidance is None else request.guidance,
            seed=seed,
            quant=self._key[1] if self._key else request.quant,
        )

    def cancel(self) -> bool:
        """Ask what runs now (every request of a coalesced group, a training run) to stop at its next step; True if
        something ran."""
        events = self._running
        for event in events:
            event.set()
        return bool(events)

    @contextmanager
    def exclusive(self, cancel: threading.Event | None = None, model: str = "") -> Iterator[Exclusive]:
        """Hold the engine alone (no generation meanwhile) with the model resident, for a job like LoRA training:
        yields the pipeline, execution device, defaults and the cancel event that ``cancel()`` sets."""
        cancel = cancel or threading.Event()
        with self._lock:
            self._running = (cancel,)
            try:
                self.ensure(model)
                assert self._defaults is not None
                yield Exclusive(self._pipe, self._exec_device, self._defaults, cancel)
            finally:
                self._running = ()

    def configure_coalescing(self, window_ms: float) -> None:
        """Coalesce queued compatible txt2img requests into one batched denoise; each waits ≤ ``window_ms`` for
        partners while the engine is idle. 0 turns coalescing off (every request runs alone)."""
        if window_ms < 0:
            raise StudioError(f"the coalescing window must be ≥ 0 ms (got {window_ms:g}) — try 30, or 0 for off")
        self._coalescer = None
        if window_ms > 0:
            self._coalescer = coalesce.Coalescer(self._run_group, window_ms / 1000, row_cap=self._rows_that_fit)

    def _rows_that_fit(self, request: GenerationRequest) -> int:
        """How many images of ``request``'s size one batched denoise may hold in free memory (called with the lock
        held, when a coalesced group is formed)."""
        return rows.rows_that_fit(self._pipe, self._defaults, self._exec_device, request, self.settings.max_memory_mb)

    @property
    def coalescer(self) -> coalesce.Coalescer | None:
        """The request coalescer (None when coalescing is off)."""
        return self._coalescer

    @property
    def execution_device(self) -> torch.device:
        """The device the transformer runs on (resolved once per load)."""
        return self._exec_device

    @property
    def busy(self) -> bool:
        """True while a generation runs."""
        return self._lock.locked()

    def generate(
        self,
        request: GenerationRequest,
        on_step: Callable[[StepUpdate], None] | None = None,
        cancel: threading.Event | None = None,
        assets: AssetStore | None = None,
        loras: LoraLibrary | None = None,
    ) -> Result:
        """Run one generation. Raises StudioError for user errors and Cancelled (with ``.request``) on cancel.

        ``assets`` resolves the request's input references (init image, mask, control maps).
        ``loras`` is the LoRA library the request's LoRAs are found in (default: the settings' LoRA folders).
        """
        request.validate()
        context = RunContext(assets or self._assets, loras or self.lora_library, cancel or threading.Event(), on_step)
        key = coalesce.compatibility_key(request) if self._coalescer is not None else None
        if self._coalescer is not None and key is not None and flux2.coalescable(self, request):
            return self._coalescer.submit(request, (key, id(context.loras)), context)
        outcomes: dict[int, Result | BaseException] = {}
        with self._lock:
            self._run([(request, context)], outcomes.__setitem__)
        outcome = outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _run_group(self, take: Callable[[], list[coalesce.Ticket]]) -> None:
        """Run a coalesced group once the engine is free (``take`` forms it): its rows in one denoise."""
        assert self._coalescer is not None
        finish = self._coalescer.finish
        with self._lock:
            tickets = take()
            self._run([(t.request, t.context) for t in tickets], lambda k, outcome: finish(tickets[k], outcome), True)

    def _run(self, members: list[tuple[GenerationRequest, RunContext]], finish: Finish, queued: bool = False) -> None:
        """Run requests (one, or a compatible group) with the lock held; finish each with its Result or error."""
        started = time.perf_counter()
        finished: set[int] = set()

        def settle(k: int, outcome: Result | BaseException) -> None:
            finished.add(k)
            finish(k, outcome)

        self._running = tuple(context.cancel for _, context in members)
        try:
            self.ensure(members[0][0].model, members[0][0].quant)
            load_s = time.perf_counter() - started
            if flux2.is_flux2(self._pipe):  # diffusers' FLUX.2 pipeline with our progress, cancel and LoRAs
                settle(0, flux2.generate(self, members[0][0], members[0][1], started))
                return
            live = self._prepare(members, settle)
            if not live:
                return
            denoise_started = time.perf_counter()
            images = self._denoise_rows(live, settle) if live[0].request.mode == "txt2img" else [self._edit(live[0])]
            denoise_s = time.perf_counter() - denoise_started
        except BaseException as exc:  # every waiting caller sees the failure, not only the first
            for k in range(len(members)):
                if k not in finished:
                    finish(k, exc)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._running = ()
        for member, imgs in zip(live, images):
            if imgs is not None:
                timings = run_timings(load_s, denoise_s, started, member.context.arrived if queued else None)
                if len(members) > 1:
                    timings["coalesced"] = len(live)
                settle(member.index, Result(member.request, imgs, member.request.seeds(), timings))

    def _prepare(self, members: list[tuple[GenerationRequest, RunContext]], finish: Finish) -> list[rows.Member]:
        """Resolve each request, apply its LoRAs and check it against the model; a request that fails (or is already
        cancelled) is finished alone. The live ones, as rows of one batch."""
        live = []
        for k, (request, context) in enumerate(members):
            try:
                resolved = self.resolve(request).validate()
                resolved = apply_request_loras(self._pipe, resolved, context.loras, self.lora_adapters)
                model_kinds.check_request(self._pipe.transformer, resolved)  # after the LoRAs: a Control LoRA widens it
                model_kinds.check_references(resolved, resolved.model, self._kontext)
            except Exception as exc:  # noqa: BLE001 - handed to that request's caller
                finish(k, exc)
                continue
            if context.cancel.is_set():
                finish(k, rows.cancelled("generation cancelled before it started", resolved))
            else:
                live.append((k, resolved, context))
        return rows.layout(live)

    # ---- txt2img: our own loop ---------------------------------------------------------------------
    def encode(self, prompt: str, prompt_2: str | None) -> sampling.TextConditioning:
        """Text encodings from an LRU cache keyed by (model, quant, text, active CLIP LoRAs and weights)."""
        assert self._defaults is not None
        key = (self._key, prompt, prompt_2, self._defaults.max_sequence_length, self.lora_adapters.text_encoder_key)
        encode = lambda: sampling.encode_prompt(  # noqa: E731
            self._pipe, prompt, prompt_2, self._defaults.max_sequence_length, self._exec_device
        )
        return self._text_cache.get(key, encode)

    def _denoise_rows(self, live: list[rows.Member], finish: Finish) -> list[list[Any] | None]:
        """One denoise over every live member's rows (one request: with its regions, controls, reference and step
        cache); each member's images, None for one that left (cancelled, failing listener)."""
        pipe, device, req = self._pipe, self._exec_device, live[0].request
        assert req.width and req.height and req.steps
        plan = sampling.plan_for(req)
        cond = rows.concat(
            [self.encode(m.request.prompt, m.request.prompt_2).repeat(m.request.batch_size) for m in live]
        )
        negative = None
        if any(scale > 1 for scale in plan.true_cfg):
            negative = rows.concat(
                [self.encode(m.request.negative_prompt or "", None).repeat(m.request.batch_size) for m in live]
            )
        seeds = [s for m in live for s in m.request.seeds()]
        latents, img_ids = sampling.prepare_noise(pipe, seeds, req.height, req.width, cond.prompt_embeds.dtype, device)
        scheduler, timesteps = sampling.make_scheduler(pipe, req.steps, latents.shape[1], device)
        listeners = [rows.step_listener(pipe, m.context.on_step, req.height, req.width) for m in live]
        progress = rows.RowProgress(live, listeners, finish)
        extensions = self._extensions(live[0], plan) if len(live) == 1 else []
        on_step = progress if progress.has_listeners or len(live) > 1 else None
        inputs = sampling.DenoiseInputs(
            latents, img_ids, cond, negative, plan, scheduler, timesteps, on_step, progress, extensions
        )
        try:
            with step_cache(pipe.transformer, req.cache, req.steps):
                latents = sampling.denoise(pipe, inputs)
        except Cancelled:
            if any(progress.active):
                raise
            return [None] * len(live)
        progress.before_decoding()
        return progress.split(sampling.decode(pipe, latents[progress.rows()], req.height, req.width))

    def _extensions(self, member: rows.Member, plan: sampling.StepPlan) -> list[Any]:
        """The sampling extensions of one request: regions, controls, a reference image (built by their modules)."""
        req, load = member.request, member.context.assets.load
        backend = self.settings.attention_backend
        built = (
            regions.for_request(req, load, self.encode, plan.extras["regions"], backend),
            control.for_request(
                req,
                self._pipe,
                plan.extras["control"],
                lambda spec: self._request_map(spec, member.context, req),
                self._controlnet,
                self._exec_device,
            ),
            reference.for_request(req, self._pipe, load),
        )
        return [extension for extension in built if extension is not None]

    def control_map(self, kind: str, image: Any, width: int | None = None, height: int | None = None) -> Any:
        """The map a control input turns into (canny/depth/pose annotated, a ``-map`` kind as is), from the engine's
        one cache (by input content; bounded in count and bytes). With ``width`` and ``height`` the input is resized
        to that size first, as a generation does; inputs over ``MAX_PIXELS`` are refused."""
        size = (width, height) if width and height else None
        return preview_map(self._control_maps, kind, image, size)

    def _request_map(self, spec: Any, context: RunContext, req: GenerationRequest) -> Any:
        """A control unit's map at the output size, kept by the input's content hash: annotate once."""
        assert req.width and req.height
        size = (req.width, req.height)
        opened = lambda: edit.input_image(context.assets, spec.image, "RGB", req.width, req.height)  # noqa: E731
        mapped = self._control_maps.get(spec.kind, spec.preprocess, spec.image, opened, size)
        return control.require_edges(spec.kind, mapped)

    def _controlnet(self, kind: str) -> tuple[Any, int | None]:
        """The ControlNet for a control kind and its union mode (``control.controlnet_source``), loaded once."""
        source, mode = control.controlnet_source(kind, self.settings.controlnets, self._location, self.model_name)
        return self._controlnets.load(kind, source, self._pipe.transformer, self._exec_device), mode

    def _edit(self, member: rows.Member) -> list[Any]:
        assert self._defaults is not None
        return edit.run(
            self._pipe, self.pipeline_for, member.request, member.context, self._defaults.max_sequence_length
        )
