"""The Engine: one resident Flux pipeline, one generation at a time, progress and cancel.

Only the Engine holds model state. ``ensure`` is keyed and idempotent: it loads nothing when the model and
quantization are unchanged; other Flux pipelines (img2img, inpaint) are derived with ``from_pipe``.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from studio.core import schedule as schedule_mod
from studio.core.errors import Cancelled, InvalidRequest, ModelMissing, StudioError, UnsupportedOnDevice
from studio.core.request import MAX_BATCH, MAX_SEED, GenerationRequest
from studio.core.settings import Settings
from studio.engine import attention, coalesce, memory_estimate, sampling
from studio.engine.caching import step_cache
from studio.engine.memory import apply_memory_mode, resolve_device
from studio.lora.library import LoraAdapters, LoraLibrary, apply_request_loras
from studio.models import kinds as model_kinds
from studio.models.catalog import ModelDefaults, ModelLocation, defaults_for, locate
from studio.store.assets import AssetStore

log = logging.getLogger(__name__)
TEXT_CACHE_SIZE = 64
CONTROL_MAPS_KEPT = 16  # annotated control maps kept by input hash
PREVIEW_INTERVAL_S = 0.25


@dataclass(frozen=True)
class StepUpdate:
    """What a progress listener sees after each step: step (1-based), total and an optional preview."""

    step: int
    total: int
    preview: Any | None = None
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class Result:
    """A finished generation: the resolved request, its images (PIL) with their seeds, and timings."""

    request: GenerationRequest
    images: list[Any]
    seeds: list[int]
    timings: dict[str, float]


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
        self._derived: dict[str, Any] = {}
        self._kontext = False  # the resident model takes reference images (FLUX.1 Kontext)
        self._text_cache: OrderedDict[tuple, sampling.TextConditioning] = OrderedDict()
        self._current_cancel: threading.Event | None = None
        self._group_cancels: tuple[threading.Event, ...] = ()
        self._coalescer: coalesce.Coalescer | None = None
        self._exec_device: torch.device = self.device
        self._assets = AssetStore(settings.data_dir / "assets")
        self._controlnets: dict[str, Any] = {}
        self._control_maps: OrderedDict[tuple[str, str, bool, int, int], Any] = OrderedDict()  # by input hash
        self.load_count = 0
        self.compiled = False
        self.lora_library = LoraLibrary(settings.lora_dirs)
        self.lora_adapters = LoraAdapters()
        self._loras = self.lora_library
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
        pipe = self._read(location, quant)  # raises before anything resident is touched
        self._unload()
        self._pipe = self._place(pipe, location)
        self._exec_device = self._pipe._execution_device
        self._key, self._location = key, location
        self._kontext = model_kinds.is_kontext(location.card_dir)
        self._defaults = defaults_for(location, bool(self._pipe.transformer.config.guidance_embeds))
        self.load_count += 1
        return location

    def _read(self, location: ModelLocation, quant: str) -> Any:
        """The model's pipeline (not yet on the device): ``from_pretrained`` for hub ids and diffusers folders,
        diffusers' single-file loaders for model files (``studio.models.loading``); ModelMissing naming the fix."""
        from diffusers import FluxPipeline

        from studio.engine.quant import quantization_config, transformer_config
        from studio.models.loading import read_pipeline

        kwargs: dict[str, Any] = {"dtype": self.dtype}
        config = quantization_config(quant, self.device) if location.files is None else None
        if config is not None:
            kwargs["quantization_config"] = config
        model_kinds.check_family(location.card_dir)
        started = time.perf_counter()
        try:
            if location.files is not None:
                pipe = read_pipeline(location.files, self.dtype, transformer_config(quant, self.device))
            else:
                pipe = FluxPipeline.from_pretrained(location.source, **kwargs)
        except StudioError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated into a message naming the fix
            raise _load_error(location, exc) from exc
        log.info("read %s in %.1fs", location.name, time.perf_counter() - started)
        return pipe

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
        if mode == "txt2img":
            return self._pipe
        if mode not in self._derived:
            from diffusers import FluxFillPipeline, FluxImg2ImgPipeline, FluxInpaintPipeline

            cls = {"img2img": FluxImg2ImgPipeline, "inpaint": FluxInpaintPipeline, "fill": FluxFillPipeline}[mode]
            derived = cls.from_pipe(self._pipe)
            derived.set_progress_bar_config(disable=True)
            self._derived[mode] = derived
        return self._derived[mode]

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
        """Ask the running generation (every request of a coalesced group) to stop at its next step; True if one ran."""
        events = [e for e in (self._current_cancel, *self._group_cancels) if e is not None]
        for event in events:
            event.set()
        return bool(events)

    def configure_coalescing(self, window_ms: float) -> None:
        """Coalesce queued compatible txt2img requests into one batched denoise; each waits ≤ ``window_ms`` for
        partners while the engine is idle. 0 turns coalescing off (every request runs alone)."""
        if window_ms < 0:
            raise StudioError(f"the coalescing window must be ≥ 0 ms (got {window_ms:g}) — try 30, or 0 for off")
        self._coalescer = (
            coalesce.Coalescer(self._run_group, window_ms / 1000, row_cap=self._rows_that_fit)
            if window_ms > 0
            else None
        )

    def _rows_that_fit(self, request: GenerationRequest) -> int:
        """How many images of ``request``'s size one batched denoise may hold in free memory (called with the lock
        held, when a coalesced group is formed); unlimited before a model is loaded or when memory is unknown."""
        if self._pipe is None or self._defaults is None:
            return MAX_BATCH
        try:
            shape = memory_estimate.shape_of(self._pipe, self._defaults.max_sequence_length)
            budget = memory_estimate.available_bytes(self._exec_device, self._pipe, self.settings.max_memory_mb)
        except Exception:  # noqa: BLE001 - no estimate (e.g. no CUDA context yet): the batch limit alone
            return MAX_BATCH
        width, height = request.width or self._defaults.width, request.height or self._defaults.height
        rows = 1
        while rows < MAX_BATCH and memory_estimate.estimate_bytes(shape, width, height, rows + 1) <= budget:
            rows += 1
        return rows

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
        cancel = cancel or threading.Event()
        key = coalesce.compatibility_key(request) if self._coalescer is not None else None
        if self._coalescer is not None and key is not None:
            return self._coalescer.submit(request, key, on_step, cancel, loras)
        with self._lock:
            self._current_cancel = cancel
            self._assets = assets or AssetStore(self.settings.data_dir / "assets")
            self._loras = loras or self.lora_library
            try:
                return self._generate_locked(request, on_step, cancel)
            finally:
                self._current_cancel = None

    def _run_group(self, take: Callable[[], list[coalesce.Ticket]]) -> None:
        """Run a coalesced group once the engine is free: alone as usual, or as one batched denoise."""
        assert self._coalescer is not None
        finish = self._coalescer.finish
        with self._lock:
            tickets = take()
            self._group_cancels = tuple(t.cancel for t in tickets)
            self._loras = tickets[0].loras or self.lora_library
            try:
                if len(tickets) > 1:
                    coalesce.run_group(self, tickets, finish)
                    return
                ticket = tickets[0]
                queue_s = time.perf_counter() - ticket.arrived
                try:
                    outcome: Result | Exception = self._generate_locked(ticket.request, ticket.on_step, ticket.cancel)
                    outcome.timings["queue_s"] = round(queue_s, 4)  # the window (and any wait for the engine)
                    outcome.timings["total_s"] = round(outcome.timings["total_s"] + queue_s, 4)
                except Exception as exc:  # noqa: BLE001 - handed to the waiting request's thread
                    outcome = exc
                finish(ticket, outcome)
            finally:
                self._group_cancels = ()

    def _generate_locked(
        self, request: GenerationRequest, on_step: Callable[[StepUpdate], None] | None, cancel: threading.Event
    ) -> Result:
        started = time.perf_counter()
        self.ensure(request.model, request.quant)
        load_s = time.perf_counter() - started
        resolved = self.resolve(request).validate()
        resolved = apply_request_loras(self._pipe, resolved, self._loras, self.lora_adapters)
        model_kinds.check_request(self._pipe.transformer, resolved)  # after the LoRAs: a Control LoRA widens it
        model_kinds.check_references(resolved, resolved.model, self._kontext)
        try:
            if cancel.is_set():
                raise Cancelled("generation cancelled before it started")
            denoise_started = time.perf_counter()
            if resolved.mode == "txt2img":
                images = self._txt2img(resolved, on_step, cancel)
            else:
                images = self._edit(resolved, on_step, cancel)
        except Cancelled as exc:
            exc.request = resolved  # type: ignore[attr-defined]
            raise
        total_s = time.perf_counter() - started
        timings = {
            "load_s": round(load_s, 4),
            "denoise_s": round(time.perf_counter() - denoise_started, 4),
            "total_s": round(total_s, 4),
        }
        return Result(resolved, images, resolved.seeds(), timings)

    # ---- txt2img: our own loop ---------------------------------------------------------------------
    def encode(self, prompt: str, prompt_2: str | None) -> sampling.TextConditioning:
        """Text encodings from an LRU cache keyed by (model, quant, text, active CLIP LoRAs and weights)."""
        assert self._defaults is not None
        key = (self._key, prompt, prompt_2, self._defaults.max_sequence_length, self.lora_adapters.text_encoder_key)
        cached = self._text_cache.get(key)
        if cached is not None:
            self._text_cache.move_to_end(key)
            return cached
        cond = sampling.encode_prompt(
            self._pipe, prompt, prompt_2, self._defaults.max_sequence_length, self._exec_device
        )
        self._text_cache[key] = cond
        while len(self._text_cache) > TEXT_CACHE_SIZE:
            self._text_cache.popitem(last=False)
        return cond

    def plan(self, request: GenerationRequest) -> sampling.StepPlan:
        """Per-step guidance and CFG values from the request's scalars and schedule curves."""
        curves = request.schedule or {}
        steps = int(request.steps or 1)
        return sampling.StepPlan(
            guidance=schedule_mod.per_step(curves.get("guidance"), steps, float(request.guidance or 0.0)),
            true_cfg=schedule_mod.per_step(curves.get("true_cfg"), steps, float(request.true_cfg)),
            extras={name: schedule_mod.per_step(curves.get(name), steps, 1.0) for name in ("control", "regions")},
        )

    def _txt2img(
        self, req: GenerationRequest, on_step: Callable[[StepUpdate], None] | None, cancel: threading.Event
    ) -> list[Any]:
        pipe = self._pipe
        assert req.width and req.height and req.steps
        plan = self.plan(req)
        batch = req.batch_size
        cond = self.encode(req.prompt, req.prompt_2).repeat(batch)
        negative = None
        if any(scale > 1 for scale in plan.true_cfg):
            negative = self.encode(req.negative_prompt or "", None).repeat(batch)
        latents, img_ids = sampling.prepare_noise(
            pipe, req.seeds(), req.height, req.width, cond.prompt_embeds.dtype, self._exec_device
        )
        scheduler, timesteps = sampling.make_scheduler(pipe, req.steps, latents.shape[1], self._exec_device)
        callback = self.step_callback(on_step, req.height, req.width)
        regional = self._regions(req, cond, plan)
        extensions = [ext for ext in (regional, self._controls(req, plan), self._references(req)) if ext is not None]
        backend = self.settings.attention_backend if regional is not None else ""
        with attention.masked_attention(pipe.transformer, backend), step_cache(pipe.transformer, req.cache, req.steps):
            latents = sampling.denoise(
                pipe, latents, img_ids, cond, negative, plan, scheduler, timesteps, callback, cancel, extensions
            )
        if cancel.is_set():
            raise Cancelled("generation cancelled before decoding")
        return sampling.decode(pipe, latents, req.height, req.width)

    def _regions(self, req: GenerationRequest, cond: sampling.TextConditioning, plan: sampling.StepPlan) -> Any | None:
        """Regional conditioning for the request's painted regions (None without regions or when all are empty)."""
        if not req.regions:
            return None
        import numpy as np
        from PIL import Image

        from studio.engine.conditioning import regions

        masks = []
        for region in req.regions:
            mask = self._assets.load(region.mask).convert("L")
            if mask.size != (req.width, req.height):
                mask = mask.resize((req.width, req.height), Image.Resampling.NEAREST)
            masks.append(np.asarray(mask) > 127)
        region_conds = [self.encode(region.prompt, None) for region in req.regions]
        base = self.encode(req.prompt, req.prompt_2)
        assert req.width and req.height
        return regions.build(
            base,
            region_conds,
            masks,
            req.height,
            req.width,
            plan.extras["regions"],
            req.batch_size,
            req.region_base_ratio,
        )

    def _references(self, req: GenerationRequest) -> Any | None:
        """FLUX.1 Kontext reference tokens for the request's reference image (None without one)."""
        if not req.references:
            return None
        from studio.engine.conditioning.reference import ReferenceTokens, encode_reference

        assert req.width and req.height
        image = self._assets.load(req.references[0])
        return ReferenceTokens(*encode_reference(self._pipe, image, req.width, req.height, req.batch_size))

    def _controls(self, req: GenerationRequest, plan: sampling.StepPlan) -> Any | None:
        """ControlNet units for the request's controls (nets loaded once and kept beside the base pipeline)."""
        if not req.controls:
            return None
        from studio.engine.conditioning import control

        assert req.width and req.height
        if model_kinds.transformer_kind(self._pipe.transformer) == "control":  # BFL Flux Control: concatenated
            spec = req.controls[0]
            mapped = self._control_map(spec, req.width, req.height)
            return control.ChannelControl(
                control.encode_control(self._pipe, mapped, req.width, req.height, req.batch_size)
            )
        units = []
        for spec in req.controls:
            mapped = self._control_map(spec, req.width, req.height)
            net, mode = self._controlnet(spec.kind.removesuffix("-map"))
            pixels = control.takes_pixels(net)  # XLabs-style: the image itself, residuals repeated over blocks
            encode = control.control_pixels if pixels else control.encode_control
            cond = encode(self._pipe, mapped, req.width, req.height, req.batch_size)
            mode_tensor = None
            if mode is not None:
                mode_tensor = torch.tensor([[mode]] * req.batch_size, dtype=torch.long, device=self._exec_device)
            scales = control.step_scales(spec.strength, spec.start, spec.end, plan.extras["control"])
            units.append(control.ControlUnit(net, cond, mode_tensor, scales, repeat_blocks=pixels))
        if len({unit.repeat_blocks for unit in units}) > 1:
            raise StudioError(
                "an XLabs-style ControlNet (with an input hint block) cannot be combined with an "
                "InstantX/Shakker-Labs one in one generation — configure ControlNets of one family"
            )
        return control.ControlExtension(units)

    def _control_map(self, spec: Any, width: int, height: int) -> Any:
        """The control unit's map (annotated when asked), kept by the input's content hash: annotate once."""
        from studio.engine.conditioning import control

        key = (spec.kind, spec.image, spec.preprocess, width, height)
        if key not in self._control_maps:
            image = self._input_image(spec.image, "RGB", width, height)
            self._control_maps[key] = control.annotate(spec.kind, image, spec.preprocess, self.settings.annotators)
            while len(self._control_maps) > CONTROL_MAPS_KEPT:
                self._control_maps.popitem(last=False)
        self._control_maps.move_to_end(key)
        return self._control_maps[key]

    def _controlnet(self, kind: str) -> tuple[Any, int | None]:
        """The ControlNet for a control kind and its union mode: STUDIO_CONTROLNET_<KIND>, a union net, the
        model folder's ``studio.json`` ``controlnets``, or the default union net for hub models."""
        from diffusers import FluxControlNetModel

        from studio.engine.conditioning import control

        source, mode = control.controlnet_source(kind, self.settings.controlnets, self._location, self.model_name)
        if source not in self._controlnets:
            try:
                net = FluxControlNetModel.from_pretrained(source, dtype=self.dtype)
            except Exception as exc:  # noqa: BLE001 - translated into a message naming the fix
                raise StudioError(
                    f"the {kind} ControlNet {source} could not be loaded ({str(exc).splitlines()[0][:160]}) — "
                    f"set STUDIO_CONTROLNET_{kind.upper()} to a FluxControlNetModel folder or hub id"
                ) from exc
            control.check_compatible(net, self._pipe.transformer, source)
            self._controlnets[source] = net.to(self._exec_device).eval()
        return self._controlnets[source], mode

    def step_callback(
        self, on_step: Callable[[StepUpdate], None] | None, height: int, width: int
    ) -> Callable[[sampling.StepInfo], None] | None:
        """A sampling callback that reports StepUpdates with a preview at most every PREVIEW_INTERVAL_S."""
        if on_step is None:
            return None
        last = [0.0]

        def callback(info: sampling.StepInfo) -> None:
            preview = None
            now = time.perf_counter()
            if info.step + 1 < info.total and now - last[0] >= PREVIEW_INTERVAL_S:
                preview = sampling.decode(self._pipe, info.x0[:1], height, width)[0]
                last[0] = now
            on_step(StepUpdate(info.step + 1, info.total, preview, info.elapsed_s))

        return callback

    # ---- img2img / inpaint: diffusers' pipelines derived with from_pipe -----------------------------
    def _edit(
        self, req: GenerationRequest, on_step: Callable[[StepUpdate], None] | None, cancel: threading.Event
    ) -> list[Any]:
        check_edit_inputs(req)
        if req.schedule or req.cache.kind != "none":
            raise StudioError(
                "schedules and step caching apply to txt2img only for now — clear them for img2img/inpaint"
            )
        fill = model_kinds.transformer_kind(self._pipe.transformer) == "fill"  # BFL Fill-dev: FluxFillPipeline
        pipe = self.pipeline_for("fill" if fill else req.mode)
        init = self._input_image(req.init_image, "RGB", req.width, req.height)
        kwargs: dict[str, Any] = {}
        if req.mode == "inpaint":
            kwargs["mask_image"] = self._input_image(req.mask, "L", req.width, req.height)
        if not fill:  # FluxFillPipeline has no true CFG
            kwargs.update(
                negative_prompt=req.negative_prompt if req.true_cfg > 1 else None, true_cfg_scale=req.true_cfg
            )
        strength = req.strength if req.strength is not None else (1.0 if fill else 0.6)

        def callback(p: Any, i: int, t: Any, tensors: dict) -> dict:
            if cancel.is_set():
                p._interrupt = True
            if on_step is not None:
                on_step(StepUpdate(i + 1, p.num_timesteps))
            return tensors

        out = pipe(
            prompt=req.prompt,
            prompt_2=req.prompt_2,
            image=init,
            strength=strength,
            height=req.height,
            width=req.width,
            num_inference_steps=req.steps,
            guidance_scale=req.guidance,
            num_images_per_prompt=req.batch_size,
            generator=[torch.Generator("cpu").manual_seed(s) for s in req.seeds()],
            max_sequence_length=self._defaults.max_sequence_length if self._defaults else 512,
            callback_on_step_end=callback,
            **kwargs,
        )
        if cancel.is_set():
            raise Cancelled("generation cancelled")
        return list(out.images)

    def _input_image(self, ref: str | None, mode: str, width: int | None, height: int | None) -> Any:
        """A stored input in ``mode``, resized to the output size when it differs."""
        from PIL import Image

        image = self._assets.load(ref or "").convert(mode)
        if width and height and image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        return image


def check_edit_inputs(req: GenerationRequest) -> None:
    """Refuse what diffusers' img2img/inpaint pipelines would silently ignore: regions, controls, references."""
    if req.regions:
        raise InvalidRequest(
            "regions work in text-to-image only — clear the region layers or switch the mode to text-to-image"
        )
    if req.controls:
        raise InvalidRequest(
            "controls work in text-to-image only — clear the controls (Structure tab) or switch the mode to "
            "text-to-image"
        )
    if req.references:
        raise InvalidRequest(
            "reference images work in text-to-image only — remove the reference or switch the mode to text-to-image"
        )


def default_threads() -> int:
    """Half the cores (at least one): torch's spinning workers slow down badly when a core is taken."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def _load_error(location: ModelLocation, exc: Exception) -> ModelMissing:
    detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    if location.is_hub:
        return ModelMissing(
            f"could not load {location.name} from the Hugging Face Hub ({detail}) — check the network and, for "
            "FLUX.1-dev, accept its licence and run `hf auth login`; or download it and set STUDIO_MODEL to the folder"
        )
    if location.files is not None:
        return ModelMissing(
            f"the model files at {location.source} could not be loaded ({detail}) — check that the parts belong to "
            "one model and are complete (re-download a truncated file); `python -m studio model inspect "
            f"{location.source}` shows where each part comes from"
        )
    return ModelMissing(
        f"the model at {location.source} could not be loaded ({detail}) — its weights are missing or corrupt; "
        "re-download it, or rebuild the embedded model with `python -m training.build`"
    )
