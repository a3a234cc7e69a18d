"""img2img and inpaint (and BFL Fill): diffusers' pipelines derived from the resident one with ``from_pipe``.

They run diffusers' ``__call__``, outside our sampling loop, so what only the loop applies — regions, controls,
reference images, schedules and step caching — is refused here with the fix instead of being silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from studio.core.errors import Cancelled, InvalidRequest, StudioError
from studio.core.request import GenerationRequest
from studio.engine.context import RunContext, StepUpdate
from studio.models import kinds as model_kinds
from studio.store.assets import AssetStore


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
    if req.schedule or req.cache.kind != "none":
        raise StudioError("schedules and step caching apply to txt2img only for now — clear them for img2img/inpaint")


def input_image(assets: AssetStore, ref: str | None, mode: str, width: int | None, height: int | None) -> Any:
    """A stored input in ``mode``, resized to the output size when it differs."""
    from PIL import Image

    image = assets.load(ref or "").convert(mode)
    if width and height and image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image


def run(
    pipe: Any, derived: Callable[[str], Any], req: GenerationRequest, context: RunContext, max_sequence_length: int
) -> list[Any]:
    """The request's images from the derived pipeline for its mode (``derived(mode)``; Fill on a Fill model)."""
    check_edit_inputs(req)
    fill = model_kinds.transformer_kind(pipe.transformer) == "fill"  # BFL Fill-dev: FluxFillPipeline
    edit_pipe = derived("fill" if fill else req.mode)
    init = input_image(context.assets, req.init_image, "RGB", req.width, req.height)
    kwargs: dict[str, Any] = {}
    if req.mode == "inpaint":
        kwargs["mask_image"] = input_image(context.assets, req.mask, "L", req.width, req.height)
    if not fill:  # FluxFillPipeline has no true CFG
        kwargs.update(negative_prompt=req.negative_prompt if req.true_cfg > 1 else None, true_cfg_scale=req.true_cfg)
    strength = req.strength if req.strength is not None else (1.0 if fill else 0.6)
    cancel, on_step = context.cancel, context.on_step

    def callback(p: Any, i: int, t: Any, tensors: dict) -> dict:
        if cancel.is_set():
            p._interrupt = True
        if on_step is not None:
            on_step(StepUpdate(i + 1, p.num_timesteps))
        return tensors

    out = edit_pipe(
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
        max_sequence_length=max_sequence_length,
        callback_on_step_end=callback,
        **kwargs,
    )
    if cancel.is_set():
        exc = Cancelled("generation cancelled")
        exc.request = req  # type: ignore[attr-defined] - the record of a cancelled run keeps its request
        raise exc
    return list(out.images)


class DerivedPipelines:
    """The img2img, inpaint and Fill pipelines derived from the resident one with ``from_pipe`` (weights shared),
    each made once per load."""

    def __init__(self) -> None:
        self._made: dict[str, Any] = {}

    def get(self, pipe: Any, mode: str) -> Any:
        if mode not in self._made:
            from diffusers import FluxFillPipeline, FluxImg2ImgPipeline, FluxInpaintPipeline

            cls = {"img2img": FluxImg2ImgPipeline, "inpaint": FluxInpaintPipeline, "fill": FluxFillPipeline}[mode]
            derived = cls.from_pipe(pipe)
            derived.set_progress_bar_config(disable=True)
            self._made[mode] = derived
        return self._made[mode]

    def clear(self) -> None:
        self._made.clear()
