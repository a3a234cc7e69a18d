"""LoRA training on the resident model: a peft adapter on the transformer, the rectified-flow loss, a safetensors out.

``train_lora(engine, config, examples, out_dir)`` holds the engine's lock for the whole run (no generation
meanwhile), removes every loaded LoRA, adds one adapter (``studio-training``) to the resident transformer and trains
only its weights with AdamW on the flow-matching velocity loss:

    x_t = (1 - σ) x0 + σ noise,   target = noise - x0,   σ ~ logit-normal, FLUX-shifted for the image size

Images of any size are centre-cropped to a square and resized to ``resolution`` (a multiple of 16). Captions get the
trigger word put in front when they lack it. Latents are the VAE's mean, shifted/scaled and packed 2x2 exactly like
``FluxPipeline``; captions are encoded with ``engine.encode``.

The result is written to a temporary name and moved into ``out_dir`` only at the end (``os.replace``), so a cancelled
or failed run leaves nothing in the LoRA folder. Keys are diffusers' (``transformer.<module>.lora_A.weight``), with
``flux_studio.*`` metadata (trigger words, base model, training summary). Every ``checkpoint_every`` steps the
adapter, optimizer and RNG state go to ``<out_dir's parent>/.lora-training/<name>.pt`` (our own file, outside the
LoRA folders, which list pickles); a later run with the same settings and images resumes from it. Afterwards the
adapter is removed again: the base weights are never changed.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio.core.errors import Cancelled, InvalidRequest
from studio.lora.checkpoints import (
    ADAPTER,
    CHECKPOINT_EVERY,
    checkpoint_path,
    fingerprint,
    load_checkpoint,
    save_checkpoint,
    write_atomically,
)
from studio.lora.training_inputs import (
    LAYER_SETS,
    MAX_IMAGES,
    TrainingConfig,
    TrainingExample,
    square_crop,
    validate,
    with_trigger,
)

log = logging.getLogger(__name__)


@torch.no_grad()
def encode_images(
    pipe: Any, images: Sequence[Any], size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed, shifted and scaled VAE latents (the mean) of the images, and their position ids."""
    vae = pipe.vae
    pixels = np.stack([np.asarray(square_crop(im, size), dtype=np.float32) for im in images]) / 127.5 - 1.0
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(device=device, dtype=vae.dtype)
    chunks = [vae.encode(x[i : i + 8]).latent_dist.mean for i in range(0, len(x), 8)]
    latents = (torch.cat(chunks) - vae.config.shift_factor) * vae.config.scaling_factor
    b, c, h, w = latents.shape
    packed = pipe._pack_latents(latents, b, c, h, w)
    ids = pipe._prepare_latent_image_ids(b, h // 2, w // 2, device, latents.dtype)
    return packed, ids


def _sigmas(
    gen: torch.Generator,
    batch: int,
    seq_len: int,
    scheduler_config: Any,
    visited: torch.Tensor | None = None,
    visited_share: float = 0.0,
) -> torch.Tensor:
    """σ ~ logit-normal(0, 1), shifted like the FLUX scheduler for this image size; with ``visited_share`` > 0 that
    share is drawn from ``visited`` (the σ the sampler steps through) instead."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    mu = calculate_shift(
        seq_len,
        scheduler_config.get("base_image_seq_len", 256),
        scheduler_config.get("max_image_seq_len", 4096),
        scheduler_config.get("base_shift", 0.5),
        scheduler_config.get("max_shift", 1.15),
    )
    u = torch.sigmoid(torch.randn(batch, generator=gen))
    sigma = math.exp(mu) / (math.exp(mu) + (1 / u - 1))
    if visited is None or visited_share <= 0:
        return sigma
    pick = visited[torch.randint(len(visited), (batch,), generator=gen)].to(sigma.dtype)
    return torch.where(torch.rand(batch, generator=gen) < visited_share, pick, sigma)


@torch.no_grad()
def _distilled_target(
    transformer: Any,
    x_t: torch.Tensor,
    sigma: torch.Tensor,
    guidance: torch.Tensor,
    conditional: torch.Tensor,
    empty: Any,
    img_ids: torch.Tensor,
) -> torch.Tensor:
    """``v_u + g·(conditional − v_u)``: v_u the base model's (adapter off) velocity for the empty prompt at g = 1."""
    batch = x_t.shape[0]
    transformer.disable_adapters()
    try:
        uncond = transformer(
            hidden_states=x_t,
            timestep=sigma,
            guidance=torch.ones_like(guidance),
            pooled_projections=empty.pooled_embeds.to(x_t.dtype).expand(batch, -1),
            encoder_hidden_states=empty.prompt_embeds.to(x_t.dtype).expand(batch, -1, -1),
            txt_ids=empty.text_ids,
            img_ids=img_ids,
            return_dict=False,
        )[0]
    finally:
        transformer.enable_adapters()
    return uncond + guidance.to(x_t.dtype)[:, None, None] * (conditional - uncond)


def train_lora(
    engine: Any,
    config: TrainingConfig,
    examples: Sequence[TrainingExample],
    out_dir: Path,
    on_progress: Callable[[int, int, float], None] | None = None,
    cancel: threading.Event | None = None,
    *,
    overwrite: bool = False,
    threads: int | None = 1,
    checkpoint_every: int = CHECKPOINT_EVERY,
    max_images: int = MAX_IMAGES,
) -> Path:
    """Train a LoRA on the resident model and write ``out_dir/<name>.safetensors``; return its path.

    ``on_progress(step, total, loss)`` is called after every step; setting ``cancel`` (or ``engine.cancel()``) stops
    at the next step with Cancelled, leaving nothing in ``out_dir``. ``threads`` sets torch's CPU threads for the run.
    """
    validate(config, examples, max_images)
    out_dir = Path(out_dir)
    final = out_dir / f"{config.name}.safetensors"
    if final.exists() and not overwrite:
        raise InvalidRequest(f"a LoRA named {config.name!r} already exists in {out_dir} — pick another name")
    cancel = cancel or threading.Event()
    old_threads = torch.get_num_threads()
    with engine._lock:
        engine._current_cancel = cancel
        if threads:
            torch.set_num_threads(threads)
        try:
            engine.ensure()
            engine.lora_adapters.clear()
            return _train_locked(engine, config, examples, final, on_progress, cancel, checkpoint_every)
        finally:
            engine._current_cancel = None
            torch.set_num_threads(old_threads)


def _train_locked(
    engine: Any,
    config: TrainingConfig,
    examples: Sequence[TrainingExample],
    final: Path,
    on_progress: Callable[[int, int, float], None] | None,
    cancel: threading.Event,
    checkpoint_every: int,
) -> Path:
    from peft import LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict

    started = time.perf_counter()
    pipe, device = engine.pipe, engine._exec_device
    transformer = pipe.transformer
    defaults = engine._defaults
    size = config.resolution or defaults.width
    if size % 16:
        raise InvalidRequest(f"resolution {size} must be a multiple of 16")
    captions = [with_trigger(e.caption, config.trigger_word) for e in examples]
    latents, img_ids = encode_images(pipe, [e.image for e in examples], size, device)
    conds = [engine.encode(c, None) for c in captions]
    dtype = transformer.dtype
    latents = latents.to(dtype)
    embeds = torch.cat([c.prompt_embeds for c in conds]).to(device=device, dtype=dtype)
    pooled = torch.cat([c.pooled_embeds for c in conds]).to(device=device, dtype=dtype)
    text_ids = conds[0].text_ids
    run_fingerprint = fingerprint(config, size, captions, latents, engine.model_name)

    torch.manual_seed(config.seed)
    grad_flags = {n: p.requires_grad for n, p in transformer.named_parameters()}
    transformer.add_adapter(
        LoraConfig(
            r=config.rank,
            lora_alpha=config.rank,
            init_lora_weights="gaussian",
            target_modules=LAYER_SETS[config.layers],
        ),
        adapter_name=ADAPTER,
    )
    try:
        transformer.requires_grad_(False)
        params = []
        for name, param in transformer.named_parameters():
            if f".{ADAPTER}." in name:
                param.data = param.data.float()  # train in float32 even on a bf16 model
                param.requires_grad_(True)
                params.append(param)
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=1e-4)
        gen = torch.Generator().manual_seed(config.seed)
        losses: list[float] = []
        start_step = 0
        ckpt = checkpoint_path(final.parent, config.name)
        state = load_checkpoint(ckpt, run_fingerprint, config.steps)
        if state is not None:
            set_peft_model_state_dict(transformer, state["lora"], adapter_name=ADAPTER)
            optimizer.load_state_dict(state["optimizer"])
            gen.set_state(state["generator"])
            start_step, losses = state["step"], [float(x) for x in state["losses"]]
        guidance_value = None
        if transformer.config.guidance_embeds:
            guidance_value = defaults.guidance if config.guidance is None else config.guidance
        elif config.distilled_guidance_max:
            raise InvalidRequest(
                "distilled-guidance training needs a guidance-distilled model (FLUX.1-dev-like); "
                "this one has no guidance input — set distilled_guidance_max to 0"
            )
        empty = engine.encode("", None) if config.distilled_guidance_max else None
        visited = None
        if config.sampler_sigma_share > 0:
            from studio.engine.sampling import make_scheduler

            visited = make_scheduler(pipe, defaults.steps, latents.shape[1], torch.device("cpu"))[0].sigmas[:-1].float()
        n, batch = len(examples), min(config.batch_size, len(examples))
        order: list[int] = []
        with torch.enable_grad():
            for step in range(start_step, config.steps):
                if cancel.is_set():
                    raise Cancelled(
                        f"training cancelled at step {step} of {config.steps} — nothing was written "
                        "to the LoRA folder; run it again with the same settings to resume"
                    )
                while len(order) < batch:
                    order += torch.randperm(n, generator=gen).tolist()
                idx, order = order[:batch], order[batch:]
                x0 = latents[idx]
                noise = torch.randn(x0.shape, generator=gen).to(device=device, dtype=x0.dtype)
                sigma = _sigmas(gen, batch, x0.shape[1], pipe.scheduler.config, visited, config.sampler_sigma_share)
                sigma = sigma.to(device=device, dtype=x0.dtype)
                x_t = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise
                target = noise - x0
                guidance = None
                if empty is not None:
                    guidance = 1 + (config.distilled_guidance_max - 1) * torch.rand(batch, generator=gen)
                    guidance = guidance.to(device=device, dtype=torch.float32)
                    target = _distilled_target(transformer, x_t, sigma, guidance, target, empty, img_ids)
                elif guidance_value is not None:
                    guidance = torch.full((batch,), float(guidance_value), device=device, dtype=torch.float32)
                pred = transformer(
                    hidden_states=x_t,
                    timestep=sigma,
                    guidance=guidance,
                    pooled_projections=pooled[idx],
                    encoder_hidden_states=embeds[idx],
                    txt_ids=text_ids,
                    img_ids=img_ids,
                    return_dict=False,
                )[0]
                loss = torch.nn.functional.mse_loss(pred.float(), target.float())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                losses.append(float(loss.detach()))
                if on_progress is not None:
                    on_progress(step + 1, config.steps, losses[-1])
                done = step + 1
                if checkpoint_every and done % checkpoint_every == 0 and done < config.steps:
                    save_checkpoint(ckpt, transformer, optimizer, gen, done, losses, run_fingerprint)
        lora = get_peft_model_state_dict(transformer, adapter_name=ADAPTER)
        tensors = {f"transformer.{k}": v.detach().to("cpu", torch.float32).contiguous() for k, v in lora.items()}
        tail = losses[-min(10, len(losses)) :]
        summary = {
            "steps": config.steps,
            "rank": config.rank,
            "learning_rate": config.learning_rate,
            "seed": config.seed,
            "images": len(examples),
            "resolution": size,
            "batch_size": batch,
            "layers": config.layers,
            "guidance": None if empty is not None else guidance_value,
            "sampler_sigma_share": config.sampler_sigma_share,
            "distilled_guidance_max": config.distilled_guidance_max,
            "first_loss": round(losses[0], 6),
            "final_loss": round(sum(tail) / len(tail), 6),
            "seconds": round(time.perf_counter() - started, 2),
        }
        metadata = {
            "flux_studio.trigger_words": config.trigger_word.strip(),
            "flux_studio.base_model": engine.model_name,
            "flux_studio.title": config.name,
            "flux_studio.training": json.dumps(summary),
        }
        write_atomically(final, tensors, metadata)
        ckpt.unlink(missing_ok=True)
        return final
    finally:
        transformer.unload_lora()  # only our adapter was loaded (cleared above): back to the plain layers
        for name, param in transformer.named_parameters():
            param.requires_grad_(grad_flags.get(name, param.requires_grad))
