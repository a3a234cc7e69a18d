"""FLUX.2 ([dev] ``Flux2Pipeline``, [klein] ``Flux2KleinPipeline``) through the engine — an adapter, not our loop.

FLUX.2 has its own transformer (shared modulation, 4-axis RoPE, 32-channel latents packed 2×2 with the VAE's batch
norm), text encoders (Mistral for [dev]; Qwen3 with a chat template and stacked hidden layers for [klein]) and
reference handling (reference latents appended to the image tokens with their own time offset). Our FLUX.1 loop
(``studio.engine.sampling``) and its extensions (regions, ControlNets, Kontext tokens, schedules) are written for
FLUX.1's shapes, so a FLUX.2 generation runs diffusers' own pipeline ``__call__`` with the studio's behaviour around
it: the same seeding (one CPU ``torch.Generator(seed + k)`` per image), ``StepUpdate`` progress after every step with
throttled previews (an x0 estimate decoded with the pipeline's own unpacking and VAE), cancel at the next step
(``Cancelled`` with the resolved request, so the Studio keeps a ``cancelled`` record), LoRAs through diffusers'
FLUX.2 LoRA loader, and the engine's ``Result``. Records, PNG metadata, replay and X/Y plots come from the Studio
as for FLUX.1.

Guidance means what the pipeline's ``guidance_scale`` means: the embedded guidance for FLUX.2 [dev], classifier-free
guidance (with the negative prompt, empty by default) for a [klein] base model, nothing for a step-distilled [klein]
model. What does not apply is refused up front by ``check_request`` with the reason and the fix.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from studio.core.errors import Cancelled, InvalidRequest, StudioError
from studio.core.request import GenerationRequest, LoraSpec
from studio.engine.context import Result, RunContext, StepUpdate
from studio.models import families

log = logging.getLogger(__name__)
PREVIEW_INTERVAL_S = 0.25
MAX_LOADED_LORAS = 8
FBCACHE_REASON = (
    "First-Block Cache is not offered on FLUX.2: diffusers' first-block cache hook mis-handles FLUX.2's "
    "transformer (diffusers issue #14280) — use cache none, taylorseer or magcache"
)
_LORAS: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()  # pipe → sha256 → adapter


class _Stop(Exception):
    """Raised from the step callback to leave the pipeline's loop at once on cancel."""


def is_flux2(pipe: Any) -> bool:
    """True when ``pipe`` is a FLUX.2 pipeline (the engine hands its generations to ``generate``)."""
    return families.is_flux2(families.pipeline_family(pipe))


def read(location: Any, kwargs: dict[str, Any]) -> Any:
    """A FLUX.2 pipeline for a hub id or diffusers folder: the class its ``model_index.json`` names (hub ids by
    their name); ``kwargs`` carry the dtype and the quantization config (torchao / bitsandbytes on the transformer)."""
    import diffusers

    if location.files is not None:
        raise StudioError(
            f"{location.name} is a FLUX.2 model file — the studio loads FLUX.2 from a diffusers folder or hub id "
            "only; download the diffusers layout (e.g. black-forest-labs/FLUX.2-klein-4B)"
        )
    family = families.family_of(location)
    cls = getattr(diffusers, families.PIPELINE_CLASSES.get(family, "DiffusionPipeline"))
    if location.is_hub:
        cls = diffusers.DiffusionPipeline  # the hub's model_index.json picks the class
    return cls.from_pretrained(location.source, **kwargs)


def card(location: Any) -> dict[str, Any]:
    """The folder's ``studio.json`` (empty for hub ids or without one)."""
    folder = getattr(location, "card_dir", None)
    if folder is None:
        return {}
    try:
        value = json.loads((Path(folder) / "studio.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def label(pipe: Any) -> str:
    """``FLUX.2 [dev]`` or ``FLUX.2 [klein]`` (distilled or base)."""
    family = families.pipeline_family(pipe)
    name = families.LABELS.get(family or "", "FLUX.2")
    if family == families.FLUX2_KLEIN:
        name += " (step-distilled)" if families.is_distilled(pipe) else " (base)"
    return name


def has_guidance(pipe: Any) -> bool:
    """Whether the guidance value changes anything: embedded guidance ([dev]) or CFG (a [klein] base model)."""
    if families.pipeline_family(pipe) == families.FLUX2_KLEIN:
        return not families.is_distilled(pipe)
    return bool(getattr(pipe.transformer.config, "guidance_embeds", True))


def check_request(pipe: Any, request: GenerationRequest) -> None:
    """Refuse, before anything runs, what a FLUX.2 pipeline cannot do — each message names the reason and the fix."""
    name = label(pipe)
    if request.mode != "txt2img":
        raise InvalidRequest(
            f"{name} runs text-to-image and reference editing — img2img and inpaint are FLUX.1 pipelines; add the "
            "image as a reference image instead (Edit tab → references, CLI --reference), or load a FLUX.1 model"
        )
    if request.controls:
        raise InvalidRequest(
            f"ControlNets and Flux Control models are FLUX.1 (their weights fit FLUX.1's transformer only) — "
            f"{name} cannot use them; remove the controls, or give the structure image as a reference image"
        )
    if request.regions:
        raise InvalidRequest(
            f"regional prompts run in the studio's FLUX.1 sampling loop, which {name} does not use — remove the "
            "regions (describe the layout in the prompt), or load a FLUX.1 model"
        )
    if request.prompt_2:
        raise InvalidRequest(
            f"prompt 2 is FLUX.1's second (T5) prompt — {name} has one text encoder; put everything in the prompt"
        )
    if request.schedule:
        raise InvalidRequest(
            f"per-step schedules run in the studio's FLUX.1 sampling loop — {name} takes constant values; "
            "clear the schedule curves"
        )
    if request.true_cfg != 1:
        hint = (
            "set true CFG to 1 and use guidance (it is this model's classifier-free guidance scale)"
            if families.pipeline_family(pipe) == families.FLUX2_KLEIN and not families.is_distilled(pipe)
            else "set true CFG to 1"
        )
        raise InvalidRequest(f"{name} has no separate true CFG — {hint}")
    if request.negative_prompt and not _cfg_active(pipe, request):
        raise InvalidRequest(
            f"a negative prompt needs classifier-free guidance, which {name} does not run"
            + (" at guidance ≤ 1 — raise guidance above 1" if _takes_cfg(pipe) else " — remove the negative prompt")
        )
    if request.cache.kind == "fbcache":
        raise InvalidRequest(FBCACHE_REASON)


def _takes_cfg(pipe: Any) -> bool:
    return families.pipeline_family(pipe) == families.FLUX2_KLEIN and not families.is_distilled(pipe)


def _cfg_active(pipe: Any, request: GenerationRequest) -> bool:
    return _takes_cfg(pipe) and float(request.guidance or 0) > 1


def generate(engine: Any, request: GenerationRequest, context: RunContext, started: float) -> Result:
    """One FLUX.2 generation on the engine's resident pipeline (the engine's lock held, the model ensured)."""
    pipe = engine.pipe
    load_s = time.perf_counter() - started
    resolved = engine.resolve(request).validate()
    check_request(pipe, resolved)
    resolved = activate_loras(pipe, resolved, context.loras)
    try:
        if context.cancel.is_set():
            raise Cancelled("generation cancelled before it started")
        denoise_started = time.perf_counter()
        images = run(engine, resolved, context)
    except Cancelled as exc:
        exc.request = resolved  # type: ignore[attr-defined]
        raise
    timings = {
        "load_s": round(load_s, 4),
        "denoise_s": round(time.perf_counter() - denoise_started, 4),
        "total_s": round(time.perf_counter() - started, 4),
    }
    return Result(resolved, images, resolved.seeds(), timings)


def run(engine: Any, req: GenerationRequest, context: RunContext) -> list[Any]:
    """The pipeline's ``__call__`` with the studio's seeding, references, progress, previews and cancel."""
    from studio.engine.caching import step_cache

    pipe = engine.pipe
    assert req.width and req.height and req.steps and req.seed is not None
    kwargs = call_kwargs(engine, req)
    references = [context.assets.load(ref).convert("RGB") for ref in req.references]
    if references:
        kwargs["image"] = references[0] if len(references) == 1 else references
    if _cfg_active(pipe, req) and req.negative_prompt:
        kwargs["negative_prompt_embeds"] = pipe.encode_prompt(
            prompt=[req.negative_prompt] * req.batch_size,
            device=engine.execution_device,
            max_sequence_length=kwargs["max_sequence_length"],
            **(
                {"text_encoder_out_layers": kwargs["text_encoder_out_layers"]}
                if "text_encoder_out_layers" in kwargs
                else {}
            ),
        )[0]
    progress = _Progress(engine, pipe, req, context.on_step, context.cancel)
    hook = pipe.transformer.register_forward_hook(progress.capture) if progress.previews else None
    try:
        with step_cache(pipe.transformer, req.cache, req.steps):
            out = pipe(**kwargs, callback_on_step_end=progress.callback)
    except _Stop:
        raise Cancelled("generation cancelled") from None
    finally:
        if hook is not None:
            hook.remove()
        pipe._interrupt = False
    if context.cancel.is_set():
        raise Cancelled("generation cancelled before decoding")
    return list(out.images)


def call_kwargs(engine: Any, req: GenerationRequest) -> dict[str, Any]:
    """The pipeline arguments for a resolved request (without references, negative prompt and callback) — the same
    a direct ``pipe(...)`` call would take, so its pixels match the studio's."""
    pipe = engine.pipe
    defaults = engine._defaults
    kwargs: dict[str, Any] = {
        "prompt": req.prompt,
        "height": req.height,
        "width": req.width,
        "num_inference_steps": req.steps,
        "guidance_scale": float(req.guidance if req.guidance is not None else 1.0),
        "num_images_per_prompt": req.batch_size,
        "generator": [torch.Generator("cpu").manual_seed(seed) for seed in req.seeds()],
        "max_sequence_length": defaults.max_sequence_length if defaults else 512,
    }
    layers = card(engine._location).get("text_encoder_out_layers")
    if layers:
        kwargs["text_encoder_out_layers"] = tuple(int(n) for n in layers)
    if families.pipeline_family(pipe) == families.FLUX2_KLEIN and families.is_distilled(pipe):
        kwargs["guidance_scale"] = 1.0  # ignored by the pipeline (it would only warn); recorded as requested
    return kwargs


class _Progress:
    """The ``callback_on_step_end``: a StepUpdate per step, a preview at most every PREVIEW_INTERVAL_S, cancel."""

    def __init__(
        self,
        engine: Any,
        pipe: Any,
        req: GenerationRequest,
        on_step: Callable[[Any], None] | None,
        cancel: threading.Event,
    ) -> None:
        self.engine, self.pipe, self.req, self.on_step, self.cancel = engine, pipe, req, on_step, cancel
        self.started = time.perf_counter()
        self.last_preview = 0.0
        self.velocity: torch.Tensor | None = None  # the first (conditional) transformer output of this step
        memory = getattr(engine.settings, "memory", "none")
        self.previews = on_step is not None and memory in ("none", "auto")  # offloading: a decode would shuttle

    def capture(self, _module: Any, _args: Any, output: Any) -> None:
        if self.velocity is None:
            self.velocity = output[0] if isinstance(output, tuple) else getattr(output, "sample", output)

    def callback(self, pipe: Any, i: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if self.cancel.is_set():
            pipe._interrupt = True
            raise _Stop
        velocity, self.velocity = self.velocity, None
        if self.on_step is not None:
            total = int(getattr(pipe, "num_timesteps", None) or self.req.steps or 0)
            preview = None
            now = time.perf_counter()
            if self.previews and i + 1 < total and now - self.last_preview >= PREVIEW_INTERVAL_S:
                try:
                    preview = self.preview(pipe, tensors["latents"], velocity, i)
                except Exception:  # noqa: BLE001 - a preview is optional; the generation goes on
                    log.debug("FLUX.2 preview failed", exc_info=True)
                self.last_preview = now
            self.on_step(StepUpdate(i + 1, total, preview, time.perf_counter() - self.started))
        if self.cancel.is_set():
            pipe._interrupt = True
            raise _Stop
        return tensors

    @torch.no_grad()
    def preview(self, pipe: Any, latents: torch.Tensor, velocity: torch.Tensor | None, i: int) -> Any:
        """The first image's x0 estimate (latents − σ·v), unpacked, de-normalized and decoded as the pipeline does."""
        req = self.req
        assert req.height and req.width
        rows, cols = req.height // (pipe.vae_scale_factor * 2), req.width // (pipe.vae_scale_factor * 2)
        x = latents[:1]
        if velocity is not None:
            sigma = pipe.scheduler.sigmas[i + 1].to(x.device, x.dtype)
            x = x - sigma * velocity[:1, : x.shape[1]].to(x.dtype)
        x = x.reshape(1, rows, cols, x.shape[-1]).permute(0, 3, 1, 2)  # tokens are packed row-major
        vae = pipe.vae
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(x.device, x.dtype)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(x.device, x.dtype)
        x = pipe._unpatchify_latents(x * std + mean)
        image = vae.decode(x.to(vae.device, vae.dtype), return_dict=False)[0]
        return pipe.image_processor.postprocess(image, output_type="pil")[0]


# ---- LoRAs: diffusers' FLUX.2 LoRA loader -------------------------------------------------------------
def activate_loras(pipe: Any, request: GenerationRequest, library: Any) -> GenerationRequest:
    """Make exactly the request's LoRAs active on the FLUX.2 transformer (``pipe.load_lora_weights``, which reads
    diffusers, BFL and other FLUX.2 formats) and return the request with each LoRA's name and sha256."""
    from studio.lora.library import resolve_specs

    wanted = resolve_specs(request.loras, library)
    loaded = _LORAS.setdefault(pipe, {})
    for lora in wanted:
        if lora.sha256 in loaded:
            continue
        adapter = f"lora_{lora.sha256[:16]}"
        try:
            pipe.load_lora_weights(str(lora.path), adapter_name=adapter)
        except Exception as exc:  # noqa: BLE001 - translated into a message naming the fix
            _delete(pipe, adapter)
            detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise StudioError(
                f"LoRA {lora.name} does not fit {label(pipe)} ({detail}) — use a LoRA trained for this FLUX.2 "
                "model (FLUX.1 LoRAs do not apply to FLUX.2)"
            ) from None
        if not any(adapter in getattr(module, "lora_A", {}) for module in pipe.transformer.modules()):
            _delete(pipe, adapter)
            raise StudioError(
                f"LoRA {lora.name}: no layer of {label(pipe)} took its weights — it is not a LoRA for this FLUX.2 "
                "model (FLUX.1 LoRAs do not apply to FLUX.2); use one trained for it"
            )
        loaded[lora.sha256] = adapter
    keep = {lora.sha256 for lora in wanted}
    while len(loaded) > MAX_LOADED_LORAS:
        victim = next((sha for sha in loaded if sha not in keep), None)
        if victim is None:
            break
        _delete(pipe, loaded.pop(victim))
    if wanted:
        pipe.enable_lora()
        pipe.set_adapters([loaded[lora.sha256] for lora in wanted], [lora.weight for lora in wanted])
    elif loaded:
        pipe.disable_lora()
    return request.replace(loras=tuple(LoraSpec(w.name, w.sha256, w.weight) for w in wanted))


def _delete(pipe: Any, adapter: str) -> None:
    try:
        pipe.delete_adapters([adapter])
    except Exception:  # noqa: BLE001 - nothing was loaded under that name
        log.debug("no adapter %s to delete", adapter)


# ---- coalescing ---------------------------------------------------------------------------------------
def coalescable(engine: Any, request: GenerationRequest) -> bool:
    """False for requests that will run on FLUX.2 (coalesced groups denoise in our FLUX.1 loop): they run alone."""
    if is_flux2(engine.pipe) and (not request.model or request.model == engine.model_name):
        return False
    try:
        return not families.is_flux2(families.family_of(engine.locate_model(request.model)))
    except StudioError:
        return True  # the request's own run reports the problem
