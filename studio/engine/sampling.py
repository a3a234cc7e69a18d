"""The denoising loop, BFL-style: plain functions over explicit tensors.

    encode → prepare_noise → timesteps → denoise → decode

With a constant schedule and true CFG off it reproduces ``FluxPipeline.__call__`` bit for bit: the same
calls in the same order, only the per-step values come from lists. The pipeline object is used as a
bag of components (transformer, VAE, text encoders, scheduler config); its ``__call__`` is never used.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps
from diffusers.utils.torch_utils import get_module_execution_device

from studio.core import schedule as schedule_mod
from studio.core.errors import Cancelled
from studio.core.request import GenerationRequest
from studio.models import kinds as model_kinds


@dataclass(frozen=True)
class TextConditioning:
    """One prompt's encodings (batch 1): T5 sequence, CLIP pooled vector, text position ids."""

    prompt_embeds: torch.Tensor
    pooled_embeds: torch.Tensor
    text_ids: torch.Tensor

    def repeat(self, batch: int) -> TextConditioning:
        """The same encodings for a batch, as FluxPipeline's num_images_per_prompt does."""
        seq = self.prompt_embeds.repeat(1, batch, 1).view(batch, self.prompt_embeds.shape[1], -1)
        pooled = self.pooled_embeds.repeat(1, batch).view(batch, -1)
        return TextConditioning(seq, pooled, self.text_ids)


@dataclass(frozen=True)
class StepInfo:
    """Progress of one finished step: index (0-based), total, and the current x0 estimate (packed)."""

    step: int
    total: int
    x0: torch.Tensor
    elapsed_s: float


@dataclass(frozen=True)
class StepPlan:
    """Per-step values of the schedule, precomputed: one entry per step."""

    guidance: Sequence[float]
    true_cfg: Sequence[float]
    extras: dict[str, Sequence[float]] = field(default_factory=dict)


class Extension(Protocol):
    """Something that adds or replaces transformer inputs at a step (regions mask, control residuals …)."""

    def transformer_kwargs(self, step: int, pass_name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """Keyword arguments to add or replace at this step and pass ("cond"/"uncond"), given the inputs so far."""
        ...


@torch.no_grad()
def encode_prompt(
    pipe: Any, prompt: str, prompt_2: str | None, max_sequence_length: int, device: torch.device | None = None
) -> TextConditioning:
    """Encode one prompt with CLIP (pooled) and T5 (sequence), exactly as FluxPipeline does."""
    device = device or pipe._execution_device  # the property walks every module: pass it when known
    seq, pooled, text_ids = pipe.encode_prompt(
        prompt=prompt,
        prompt_2=prompt_2,
        device=device,
        num_images_per_prompt=1,
        max_sequence_length=max_sequence_length,
    )
    return TextConditioning(seq, pooled, text_ids)


@torch.no_grad()
def prepare_noise(
    pipe: Any, seeds: Sequence[int], height: int, width: int, dtype: torch.dtype, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed starting noise from one CPU generator per image (seed + k), and the image position ids."""
    generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    channels = model_kinds.image_channels(pipe.transformer) // 4  # a Flux Control model's input is wider
    device = device or pipe._execution_device
    return pipe.prepare_latents(len(seeds), channels, height, width, dtype, device, generators)


def make_scheduler(
    pipe: Any, steps: int, image_seq_len: int, device: torch.device | None = None
) -> tuple[FlowMatchEulerDiscreteScheduler, torch.Tensor]:
    """A private scheduler (the resident one is never mutated) and its timesteps, FLUX shift applied."""
    scheduler = copy.deepcopy(pipe.scheduler)
    device = device or pipe._execution_device
    sigmas = np.linspace(1.0, 1 / steps, steps)
    if getattr(scheduler.config, "use_flow_sigmas", False):
        sigmas = None
    mu = calculate_shift(
        image_seq_len,
        scheduler.config.get("base_image_seq_len", 256),
        scheduler.config.get("max_image_seq_len", 4096),
        scheduler.config.get("base_shift", 0.5),
        scheduler.config.get("max_shift", 1.15),
    )
    timesteps, _ = retrieve_timesteps(scheduler, steps, device, sigmas=sigmas, mu=mu)
    scheduler.set_begin_index(0)
    return scheduler, timesteps


def _transformer_pass(
    pipe: Any,
    name: str,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    guidance: torch.Tensor | None,
    cond: TextConditioning,
    img_ids: torch.Tensor,
    step: int,
    extensions: Sequence[Extension],
) -> torch.Tensor:
    kwargs: dict[str, Any] = {
        "hidden_states": latents,
        "timestep": timestep / 1000,
        "guidance": guidance,
        "pooled_projections": cond.pooled_embeds,
        "encoder_hidden_states": cond.prompt_embeds,
        "txt_ids": cond.text_ids,
        "img_ids": img_ids,
        "joint_attention_kwargs": {},
        "return_dict": False,
    }
    for extension in extensions:
        kwargs.update(extension.transformer_kwargs(step, name, kwargs))
    with pipe.transformer.cache_context(name):
        out = pipe.transformer(**kwargs)[0]
    return out[:, : latents.shape[1]]  # extra tokens an extension joined (Kontext references) are not predicted


class CancelFlag(Protocol):
    """A threading.Event, or anything that answers ``is_set()`` (a coalesced group's combined cancel)."""

    def is_set(self) -> bool:
        """True once the run should stop."""
        ...


@dataclass(frozen=True)
class DenoiseInputs:
    """Everything one denoise runs on: packed latents and their ids, text conditioning (negative: true CFG only),
    the per-step plan, a private scheduler with its timesteps, and the optional listener, cancel and extensions.

    An extension may have ``scope(pipe)``, a context manager held around the whole loop (the regional extension's
    attention backend)."""

    latents: torch.Tensor
    img_ids: torch.Tensor
    cond: TextConditioning
    negative: TextConditioning | None
    plan: StepPlan
    scheduler: FlowMatchEulerDiscreteScheduler
    timesteps: torch.Tensor
    on_step: Callable[[StepInfo], None] | None = None
    cancel: CancelFlag | None = None
    extensions: Sequence[Extension] = ()


@torch.no_grad()
def denoise(pipe: Any, inputs: DenoiseInputs) -> torch.Tensor:
    """Flow-matching Euler steps with per-step distilled guidance and true CFG (a second pass only where > 1)."""
    with ExitStack() as stack:
        for extension in inputs.extensions:
            scope = getattr(extension, "scope", None)
            if scope is not None:
                stack.enter_context(scope(pipe))
        return _steps(pipe, inputs)


def _steps(pipe: Any, inputs: DenoiseInputs) -> torch.Tensor:
    latents, cond, negative, plan, scheduler = (
        inputs.latents,
        inputs.cond,
        inputs.negative,
        inputs.plan,
        inputs.scheduler,
    )
    img_ids, extensions, cancel, timesteps = inputs.img_ids, inputs.extensions, inputs.cancel, inputs.timesteps
    batch = latents.shape[0]
    device = latents.device
    has_guidance_embed = bool(pipe.transformer.config.guidance_embeds)
    started = time.perf_counter()
    for i, t in enumerate(timesteps):
        if cancel is not None and cancel.is_set():
            raise Cancelled("generation cancelled")
        timestep = t.expand(batch).to(latents.dtype)
        guidance = None
        if has_guidance_embed:
            guidance = torch.full([1], plan.guidance[i], device=device, dtype=torch.float32).expand(batch)
        noise_pred = _transformer_pass(pipe, "cond", latents, timestep, guidance, cond, img_ids, i, extensions)
        scale = plan.true_cfg[i]
        if negative is not None and scale > 1:
            neg_pred = _transformer_pass(pipe, "uncond", latents, timestep, guidance, negative, img_ids, i, extensions)
            noise_pred = neg_pred + scale * (noise_pred - neg_pred)
        latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
        if inputs.on_step is not None:
            x0 = _x0_estimate(latents, noise_pred, scheduler)
            inputs.on_step(StepInfo(i, len(timesteps), x0, time.perf_counter() - started))
    return latents


def _x0_estimate(latents_after: torch.Tensor, velocity: torch.Tensor, scheduler: Any) -> torch.Tensor:
    """Clean-image estimate after a step: x0 = x_t - sigma_t * v, with x_t recovered from the Euler update."""
    index = scheduler.step_index  # already advanced
    sigma_next = scheduler.sigmas[index].to(latents_after.device)
    return latents_after - sigma_next * velocity


@torch.no_grad()
def decode(pipe: Any, latents: torch.Tensor, height: int, width: int) -> list[Any]:
    """Unpack, unscale and VAE-decode packed latents to PIL images (FluxPipeline's final stage)."""
    latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
    latents = (latents / pipe.vae.config.scaling_factor) + pipe.vae.config.shift_factor
    latents = latents.to(get_module_execution_device(pipe.vae))
    image = pipe.vae.decode(latents, return_dict=False)[0]
    return pipe.image_processor.postprocess(image, output_type="pil")


def plan_for(request: GenerationRequest) -> StepPlan:
    """Per-step guidance and CFG values (and extension strengths) from the request's scalars and schedule curves."""
    curves = request.schedule or {}
    steps = int(request.steps or 1)
    return StepPlan(
        guidance=schedule_mod.per_step(curves.get("guidance"), steps, float(request.guidance or 0.0)),
        true_cfg=schedule_mod.per_step(curves.get("true_cfg"), steps, float(request.true_cfg)),
        extras={name: schedule_mod.per_step(curves.get(name), steps, 1.0) for name in ("control", "regions")},
    )
