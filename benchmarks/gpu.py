"""GPU benchmark: FLUX.1 [dev], FLUX.2 [klein] 4B and FLUX.2 [dev] transformers with random weights, timed per step.

    python -m benchmarks.gpu                  # CUDA: the three geometries at 1024² (4096 + 512 tokens), 28 steps
    python -m benchmarks.gpu --scaled-down    # CPU/CI: the same harness on tiny widths and few tokens (seconds)
    python -m benchmarks.gpu --models flux2-klein-4b --modes base compile fp8 --steps 28 --json out.json

Geometries (``--models``; default the first three): ``flux1-dev`` (FluxTransformer2DModel, 19 double + 38 single
blocks, 24 × 128 heads, 11.9 B), ``flux2-klein-4b`` (Flux2Transformer2DModel, 5 + 20 blocks, 24 × 128 heads, Qwen3-4B
features 3 × 2560, no guidance embedding, 3.88 B), ``flux2-dev`` (Flux2Transformer2DModel, 8 + 48 blocks, 48 × 128
heads, Mistral features 3 × 5120, guidance embedding, 32.2 B) and, on request, ``flux2-klein-9b`` (8 + 24 blocks,
32 × 128 heads, 9.08 B). At 1024² every one sees 4096 image tokens (FLUX.1: 16-channel latents, 2×2 packing → 64
channels; FLUX.2: 32-channel latents, 2×2 patches → 128 channels) and 512 text tokens.

Modes: ``base`` (bf16 on CUDA, fp32 on CPU), ``compile`` (regional ``compile_repeated_blocks``), ``fp8`` (torchao
float8 weight-only, what STUDIO_QUANT=fp8 loads) and ``fp8-dynamic`` (float8 weights and activations), the step
caches ``fbcache`` / ``magcache`` / ``taylorseer`` (diffusers hooks, as ``studio.engine.caching`` attaches them) and the
offload modes ``offload-model`` / ``offload-group`` / ``offload-sequential`` (time and peak memory). Each row
reports seconds per step, the FLOP floor (analytic FLOPs per step / the GPU's dense bf16 peak) and their ratio.
No weights are downloaded: the model is built on the meta device and materialised on the target device. Random
weights make the caches' skip decisions unlike a trained model's: their speedups here are illustrative only (MagCache
uses FLUX.1's calibrated ratios for every geometry).

JSON: the run's ``scaled_down``, ``device``, ``device_name``, ``dtype``, ``steps``, ``peak_bf16_tflops`` and
``torch``, and ``models``: one object per geometry with ``model``, ``label``, ``geometry``, ``params``,
``flop_per_step``, ``tflop_per_step``, ``floor_s_per_step`` and ``rows`` (one per mode: ``status`` ok / skipped /
failed, and for ok rows ``per_step_s``, ``ratio_to_floor``, ``achieved_tflops``, ``speedup_vs_base``,
``peak_mem_gib``, ``warmup_s``, ``total_s``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"
MODES = (
    "base",
    "compile",
    "fp8",
    "fp8-dynamic",
    "fbcache",
    "magcache",
    "taylorseer",
    "offload-model",
    "offload-group",
    "offload-sequential",
)
CACHE_THRESHOLDS = {"fbcache": 0.12, "magcache": 0.12, "taylorseer": 3.0}
# Dense bf16 tensor-core peak (TFLOPS, no sparsity) by device-name fragment; longest fragment wins.
PEAK_BF16_TFLOPS = {
    "H200": 989.4,
    "H100": 989.4,
    "H100 PCIe": 756.0,
    "H800": 989.4,
    "GH200": 989.4,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "B200": 2250.0,
}


@dataclass(frozen=True)
class Geometry:
    """Transformer shape and token counts of one benchmark configuration.

    ``family`` "flux1" builds a FluxTransformer2DModel (GELU MLPs, pooled CLIP projection, 3 RoPE axes), "flux2" a
    Flux2Transformer2DModel (SwiGLU MLPs, no pooled projection, 4 RoPE axes, modulation shared by all blocks).
    """

    double: int
    single: int
    heads: int
    head_dim: int
    joint_attention_dim: int
    pooled: int
    rope: tuple[int, ...]
    image_tokens: int
    text_tokens: int
    in_channels: int = 64
    family: str = "flux1"
    guidance_embeds: bool = True
    mlp_ratio: float = 4.0

    @property
    def width(self) -> int:
        """Hidden size (heads × head dim)."""
        return self.heads * self.head_dim


FULL = Geometry(19, 38, 24, 128, 4096, 768, (16, 56, 56), image_tokens=4096, text_tokens=512)  # FLUX.1-dev, 1024²
SCALED = Geometry(2, 4, 2, 16, 32, 16, (4, 6, 6), image_tokens=64, text_tokens=16)


def flux2(
    double: int,
    single: int,
    heads: int,
    joint_attention_dim: int,
    guidance_embeds: bool,
    *,
    head_dim: int = 128,
    rope: tuple[int, ...] = (32, 32, 32, 32),
    image_tokens: int = 4096,
    text_tokens: int = 512,
) -> Geometry:
    """A FLUX.2 geometry: 128 input channels (32 latent channels × 2×2 patch), MLP ratio 3, RoPE theta 2000."""
    return Geometry(
        double,
        single,
        heads,
        head_dim,
        joint_attention_dim,
        0,
        rope,
        image_tokens,
        text_tokens,
        in_channels=128,
        family="flux2",
        guidance_embeds=guidance_embeds,
        mlp_ratio=3.0,
    )


# FLUX.2 sizes: BFL's reference code (github.com/black-forest-labs/flux2, src/flux2/model.py: Flux2Params for [dev],
# Klein4BParams, Klein9BParams — hidden_size, num_heads, depth, depth_single_blocks, context_in_dim, mlp_ratio 3.0,
# use_guidance_embed), as reproduced in public ports; [dev]'s also equal diffusers 0.42's Flux2Transformer2DModel
# defaults. context_in_dim = 3 stacked text-encoder layers: Mistral Small 3.1 (5120) for [dev], Qwen3-4B (2560) and
# Qwen3-8B (4096) for [klein]. Parameter counts on the meta device: 3.88 B, 9.08 B, 32.2 B.
GEOMETRIES: dict[str, Geometry] = {
    "flux1-dev": FULL,
    "flux2-klein-4b": flux2(5, 20, 24, 7680, guidance_embeds=False),
    "flux2-dev": flux2(8, 48, 48, 15360, guidance_embeds=True),
    "flux2-klein-9b": flux2(8, 24, 32, 12288, guidance_embeds=False),
}
# The same families at smoke-test sizes (CPU, CI): tiny widths, 64 image + 16 text tokens, the real block ratios.
SCALED_GEOMETRIES: dict[str, Geometry] = {
    "flux1-dev": SCALED,
    "flux2-klein-4b": flux2(1, 4, 2, 48, False, head_dim=16, rope=(4, 4, 4, 4), image_tokens=64, text_tokens=16),
    "flux2-dev": flux2(1, 6, 4, 48, True, head_dim=16, rope=(4, 4, 4, 4), image_tokens=64, text_tokens=16),
    "flux2-klein-9b": flux2(1, 3, 2, 48, False, head_dim=16, rope=(4, 4, 4, 4), image_tokens=64, text_tokens=16),
}
LABELS = {
    "flux1-dev": "FLUX.1 [dev]",
    "flux2-klein-4b": "FLUX.2 [klein] 4B",
    "flux2-dev": "FLUX.2 [dev]",
    "flux2-klein-9b": "FLUX.2 [klein] 9B",
}
DEFAULT_MODELS = ("flux1-dev", "flux2-klein-4b", "flux2-dev")


def flops_per_step(g: Geometry) -> float:
    """Matmul FLOPs of one transformer pass: (4 + m·r)·d² multiply-adds per token per block for the linears (QKV and
    output projections 4·d², MLP ratio r with m = 2 matrices for GELU, 3 for SwiGLU — FLUX.1: 12·d², FLUX.2: 13·d²,
    the same in double and single blocks), 4·L²·d for attention, plus the input/output projections (FLUX.1-dev at
    1024²: ≈ 74.4 TFLOP; FLUX.2 [klein] 4B ≈ 34.8; FLUX.2 [dev] ≈ 282.6)."""
    d, tokens = g.width, g.image_tokens + g.text_tokens
    blocks = g.double + g.single
    per_token = (4 + (3 if g.family == "flux2" else 2) * g.mlp_ratio) * d * d
    linears = 2 * per_token * tokens * blocks
    attention = 4 * tokens * tokens * d * blocks
    io = 2 * (g.in_channels * d * g.image_tokens * 2 + g.joint_attention_dim * d * g.text_tokens)
    return float(linears + attention + io)


def peak_tflops(device: torch.device, override: float | None) -> tuple[str, float | None]:
    """The device's name and dense bf16 peak (None when unknown and not given)."""
    if device.type != "cuda":
        return platform.processor() or platform.machine(), override
    name = torch.cuda.get_device_name(device)
    if override:
        return name, override
    hits = [k for k in PEAK_BF16_TFLOPS if k in name]
    return name, PEAK_BF16_TFLOPS[max(hits, key=len)] if hits else None


def construct(g: Geometry, dtype: torch.dtype) -> Any:
    """The transformer of geometry ``g`` (Flux or Flux2) on the meta device (no memory), parameters in ``dtype``."""
    from diffusers import Flux2Transformer2DModel, FluxTransformer2DModel

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # parameters are created in ``dtype``: no full-precision copy on the device
    try:
        with torch.device("meta"):
            if g.family == "flux2":
                model = Flux2Transformer2DModel(
                    patch_size=1,
                    in_channels=g.in_channels,
                    num_layers=g.double,
                    num_single_layers=g.single,
                    attention_head_dim=g.head_dim,
                    num_attention_heads=g.heads,
                    joint_attention_dim=g.joint_attention_dim,
                    mlp_ratio=g.mlp_ratio,
                    axes_dims_rope=g.rope,
                    guidance_embeds=g.guidance_embeds,
                )
            else:
                model = FluxTransformer2DModel(
                    patch_size=1,
                    in_channels=g.in_channels,
                    num_layers=g.double,
                    num_single_layers=g.single,
                    attention_head_dim=g.head_dim,
                    num_attention_heads=g.heads,
                    joint_attention_dim=g.joint_attention_dim,
                    pooled_projection_dim=g.pooled,
                    guidance_embeds=g.guidance_embeds,
                    axes_dims_rope=g.rope,
                )
    finally:
        torch.set_default_dtype(previous)
    return model


def build(g: Geometry, device: torch.device | str, dtype: torch.dtype) -> Any:
    """The transformer of geometry ``g`` with random weights, allocated directly on ``device``."""
    model = construct(g, dtype).to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.zero_()
            elif param.ndim == 1:
                param.fill_(1.0)  # norm scales
            else:
                param.normal_(0.0, param.shape[-1] ** -0.5, generator=generator)
    return model.eval().requires_grad_(False)


def positions(g: Geometry) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE ids as the pipelines build them: FLUX.1 (t, h, w) with zero text ids; FLUX.2 (t, h, w, l) with the text
    position in l. Image tokens fill a square grid row by row."""
    side = math.isqrt(g.image_tokens - 1) + 1
    grid = torch.cartesian_prod(torch.arange(side), torch.arange(side))[: g.image_tokens].float()
    zeros = torch.zeros(g.image_tokens, 1)
    if g.family == "flux2":
        text = torch.zeros(g.text_tokens, 4)
        text[:, 3] = torch.arange(g.text_tokens)
        return text, torch.cat([zeros, grid, zeros], dim=1)
    return torch.zeros(g.text_tokens, 3), torch.cat([zeros, grid], dim=1)


def inputs(g: Geometry, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Random transformer inputs for one image (batch 1): every forward argument but the timestep."""
    gen = torch.Generator(device=device).manual_seed(1)
    txt_ids, img_ids = positions(g)
    tensors = {
        "hidden_states": torch.randn(1, g.image_tokens, g.in_channels, device=device, dtype=dtype, generator=gen),
        "encoder_hidden_states": torch.randn(
            1, g.text_tokens, g.joint_attention_dim, device=device, dtype=dtype, generator=gen
        ),
        "txt_ids": txt_ids.to(device),
        "img_ids": img_ids.to(device),
    }
    if g.family == "flux1":
        tensors["pooled_projections"] = torch.randn(1, g.pooled, device=device, dtype=dtype, generator=gen)
    if g.guidance_embeds:  # distilled guidance (FLUX.1 [dev] 3.5, FLUX.2 [dev] 4.0); [klein] has no such input
        tensors["guidance"] = torch.full([1], 4.0 if g.family == "flux2" else 3.5, device=device, dtype=torch.float32)
    return tensors


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def denoise(model: Any, tensors: dict[str, torch.Tensor], steps: int, device: torch.device) -> float:
    """Run ``steps`` Euler steps with our loop's cache context; seconds (device-synchronised)."""
    latents = tensors["hidden_states"]
    conditioning = {name: value for name, value in tensors.items() if name != "hidden_states"}
    sigmas = torch.linspace(1.0, 0.0, steps + 1).tolist()
    sync(device)
    started = time.perf_counter()
    for i in range(steps):
        timestep = torch.full([1], sigmas[i], device=device, dtype=latents.dtype)
        with model.cache_context("cond"):
            velocity = model(hidden_states=latents, timestep=timestep, return_dict=False, **conditioning)[0]
        latents = latents + (sigmas[i + 1] - sigmas[i]) * velocity
    sync(device)
    return time.perf_counter() - started


def skip_reason(
    mode: str, device: torch.device, scaled_down: bool, explicit: bool, family: str = "flux1"
) -> str | None:
    """Why a mode cannot (or should not by default) run here; None when it runs."""
    cuda = device.type == "cuda"
    if mode == "fbcache" and family == "flux2":
        return (
            "diffusers' First-Block Cache cannot bridge Flux2's double blocks (2-tuple) and single blocks (fused "
            "tensor): TypeError in the tail hook (huggingface/diffusers#14280)"
        )
    if mode.startswith("offload") and not cuda:
        return "offloading moves weights between CPU and a CUDA GPU — needs CUDA"
    if mode.startswith("fp8") and (not cuda or torch.cuda.get_device_capability(device) < (8, 9)):
        return "torchao float8 needs a CUDA GPU with compute capability ≥ 8.9 (Ada/Hopper)"
    if mode == "compile" and not cuda and not explicit:
        return "torch.compile is off on CPU by default (pass --modes compile to force it)"
    return None


@contextlib.contextmanager
def prepared(mode: str, model: Any, g: Geometry, steps: int, device: torch.device) -> Iterator[Any]:
    """The model set up for one mode (hooks removed afterwards); offload/quant/compile modes mutate it."""
    if mode in CACHE_THRESHOLDS:
        from studio.core.request import CacheSpec
        from studio.engine.caching import cache_config

        model.enable_cache(cache_config(CacheSpec(mode, CACHE_THRESHOLDS[mode]), steps))
        try:
            yield model
        finally:
            model.disable_cache()
        return
    if mode == "compile":
        from studio.engine.compiling import compile_transformer

        compile_transformer(model)
    elif mode.startswith("fp8"):
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, Float8WeightOnlyConfig, quantize_

        quantize_(model, Float8WeightOnlyConfig() if mode == "fp8" else Float8DynamicActivationFloat8WeightConfig())
    elif mode == "offload-group":
        model.to("cpu")
        model.enable_group_offload(
            onload_device=device, offload_device=torch.device("cpu"), offload_type="leaf_level", use_stream=True
        )
    elif mode == "offload-sequential":
        from accelerate import cpu_offload

        model.to("cpu")
        cpu_offload(model, execution_device=device)
    yield model


def run_mode(
    mode: str, g: Geometry, steps: int, device: torch.device, dtype: torch.dtype, base: Any | None
) -> dict[str, Any]:
    """Time one mode: a warm-up generation (compile happens here), then the measured one."""
    fresh = mode in ("compile", "fp8", "fp8-dynamic") or mode.startswith("offload")
    model = build(g, device, dtype) if fresh or base is None else base
    tensors = inputs(g, device, dtype)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    row: dict[str, Any] = {"mode": mode, "status": "ok", "steps": steps}
    with prepared(mode, model, g, steps, device) as prepared_model:
        move: Callable[[], None] = lambda: None  # noqa: E731
        if mode == "offload-model":  # what model CPU offload does per generation: on before, off after
            prepared_model.to("cpu")

            def move() -> None:
                prepared_model.to(device)

        warm_started = time.perf_counter()
        move()
        denoise(prepared_model, tensors, min(steps, 2) if mode != "compile" else steps, device)
        row["warmup_s"] = round(time.perf_counter() - warm_started, 4)
        if mode == "offload-model":
            prepared_model.to("cpu")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        move()
        denoise(prepared_model, tensors, steps, device)
        if mode == "offload-model":
            prepared_model.to("cpu")
        sync(device)
        total = time.perf_counter() - started
    row["total_s"] = round(total, 4)
    row["per_step_s"] = round(total / steps, 5)
    row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None
    if model is not base:
        del model
    gc.collect()
    return row


def run_model(
    name: str,
    g: Geometry,
    args: argparse.Namespace,
    device: torch.device,
    dtype: torch.dtype,
    steps: int,
    peak: float | None,
) -> dict[str, Any]:
    """Every requested mode on one geometry, against its FLOP floor; the model is freed before returning."""
    flops = flops_per_step(g)
    floor = flops / (peak * 1e12) if peak else None
    modes = args.modes or list(MODES)
    shared = ("base", *CACHE_THRESHOLDS)  # run on one resident model; the others build their own after it is freed
    order = [m for m in MODES if m in shared] + [m for m in MODES if m not in shared]
    base: Any | None = build(g, device, dtype)
    params = sum(p.numel() for p in base.parameters())
    rows = []
    for mode in order:
        if mode not in modes:
            continue
        if mode not in shared and base is not None:  # peak memory of a fresh mode must not count the base model
            base = None
            free(device)
        reason = skip_reason(mode, device, args.scaled_down, explicit=bool(args.modes), family=g.family)
        if reason:
            rows.append({"mode": mode, "status": "skipped", "reason": reason})
            continue
        try:
            row = run_mode(mode, g, steps, device, dtype, base)
        except Exception as exc:  # noqa: BLE001 - one failing mode must not hide the others
            rows.append({"mode": mode, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:300]})
            free(device)
            continue
        row["achieved_tflops"] = sig(flops / row["per_step_s"] / 1e12)
        row["ratio_to_floor"] = sig(row["per_step_s"] / floor) if floor else None
        rows.append(row)
    base = None
    free(device)
    rows.sort(key=lambda r: MODES.index(r["mode"]))
    base_row = next((r for r in rows if r["mode"] == "base" and r["status"] == "ok"), None)
    for row in rows:
        if base_row and row["status"] == "ok":
            row["speedup_vs_base"] = round(base_row["per_step_s"] / row["per_step_s"], 3)
    return {
        "model": name,
        "label": LABELS[name],
        "geometry": asdict(g),
        "params": params,
        "flop_per_step": flops,
        "tflop_per_step": sig(flops / 1e12),
        "floor_s_per_step": sig(floor) if floor else None,
        "rows": rows,
    }


def free(device: torch.device) -> None:
    """Collect dropped models and hand their device memory back."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every requested mode on every requested geometry, one model resident at a time; the JSON result object."""
    scaled = args.scaled_down
    table = SCALED_GEOMETRIES if scaled else GEOMETRIES
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not scaled else "cpu"))
    if device.type == "cpu":
        torch.set_num_threads(int(os.environ.get("STUDIO_THREADS") or 1))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    steps = args.steps or (4 if scaled else 28)
    device_name, peak = peak_tflops(device, args.peak_tflops)
    models = [run_model(name, table[name], args, device, dtype, steps, peak) for name in args.models]
    return {
        "scaled_down": scaled,
        "device": str(device),
        "device_name": device_name,
        "dtype": str(dtype).removeprefix("torch."),
        "steps": steps,
        "peak_bf16_tflops": peak,
        "torch": torch.__version__,
        "models": models,
    }


def sig(value: float, digits: int = 4) -> float:
    """``value`` rounded to significant digits (tiny scaled-down numbers stay non-zero)."""
    return float(f"{value:.{digits}g}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scaled-down", action="store_true", help="tiny widths and few tokens (CPU, CI)")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=tuple(GEOMETRIES),
        default=list(DEFAULT_MODELS),
        help="geometries, one after another (default: FLUX.1 [dev], FLUX.2 [klein] 4B, FLUX.2 [dev])",
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=None)
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (28 full, 4 scaled down)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak when the table lacks it")
    parser.add_argument("--json", type=Path, default=None, help="default benchmarks/results/gpu[-scaled-down].json")
    return parser.parse_args(argv)


def report(result: dict[str, Any]) -> None:
    """The run as text: per geometry, its size and floor, then one line per mode."""
    print(
        f"{result['device_name']} ({result['device']}, {result['dtype']}), {result['steps']} steps, "
        f"dense bf16 peak {result['peak_bf16_tflops']} TFLOPS"
    )
    for model in result["models"]:
        size = f"{model['params'] / 1e9:.3f} B" if model["params"] >= 1e8 else f"{model['params'] / 1e6:.3f} M"
        print(
            f"\n{model['label']} ({model['model']}): {size} params, "
            f"{model['tflop_per_step']} TFLOP/step, floor {model['floor_s_per_step']} s/step"
        )
        print(f"{'mode':<20} {'s/step':>9} {'×floor':>8} {'speedup':>8} {'peak GiB':>9}  note")
        for r in model["rows"]:
            if r["status"] != "ok":
                print(f"{r['mode']:<20} {'-':>9} {'-':>8} {'-':>8} {'-':>9}  {r['status']}: {r['reason']}")
                continue
            print(
                f"{r['mode']:<20} {r['per_step_s']:>9.4f} {r['ratio_to_floor'] or float('nan'):>8.2f} "
                f"{r.get('speedup_vs_base', float('nan')):>8.2f} {r['peak_mem_gib'] or float('nan'):>9}  "
                f"warm-up {r['warmup_s']} s"
            )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    result = run(args)
    path = args.json or RESULTS / ("gpu-scaled-down.json" if args.scaled_down else "gpu.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    report(result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
