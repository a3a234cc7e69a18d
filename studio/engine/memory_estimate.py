"""Will a generation fit in memory? An estimate from the model's config, checked before anything is allocated.

Peak memory of one generation beyond the resident weights is the larger of two stages, plus a fixed overhead:

* **denoise** — transformer activations: ``K_T × batch × tokens × width × bytes``, tokens = (H/16)·(W/16) image
  tokens + the text tokens. Attention runs in fused kernels (no tokens² matrix), except with regional prompts,
  whose boolean joint-attention mask and unfused scores are tokens² each. Each ControlNet adds about as much again.
* **decode** — VAE decoder activations: ``K_V × batch × max over decoder stages of (pixels × channels) × bytes``
  (for FLUX's VAE the largest is the full-resolution stage after the last upsampler), plus the float image.

``K_T`` and ``K_V`` were measured on the embedded flux-mini on CPU (peak RSS of a generation at 256–2048 px; see
docs/reliability.md); ``SAFETY`` covers allocator slack. Free memory is CUDA's free + this process's cached
blocks − the resident weights (on CUDA), or the OS's available memory (and the cgroup limit) elsewhere;
``STUDIO_MAX_MEMORY_MB`` (``Settings.max_memory_mb``) caps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from studio.core.errors import InsufficientMemory
from studio.core.request import MAX_SIDE

MIB = 2**20
GIB = 2**30
K_T = 24  # live transformer activations, in units of (tokens × width)
K_V = 4  # live VAE decoder activations, in units of the largest stage (pixels × channels)
OVERHEAD = 128 * MIB  # latents, encodings, allocator bookkeeping
SAFETY = 1.2
CAP_ENV = "STUDIO_MAX_MEMORY_MB"


@dataclass(frozen=True)
class ModelShape:
    """What peak memory depends on, read from the pipeline's configs."""

    width: int  # transformer inner dim (heads × head dim)
    heads: int
    text_tokens: int
    act_bytes: int  # bytes per transformer activation element
    vae_channels: tuple[int, ...]  # the VAE's block_out_channels (encoder order)
    vae_bytes: int
    vae_scale: int  # pixels per latent side (8 for FLUX)


def shape_of(pipe: Any, text_tokens: int) -> ModelShape:
    """The shape of a loaded Flux pipeline (``text_tokens`` = its max sequence length)."""
    config = pipe.transformer.config
    heads = int(config.num_attention_heads)
    vae = pipe.vae
    channels = tuple(int(c) for c in vae.config.block_out_channels)
    return ModelShape(
        width=heads * int(config.attention_head_dim),
        heads=heads,
        text_tokens=int(text_tokens),
        act_bytes=_dtype_bytes(pipe.transformer),
        vae_channels=channels,
        vae_bytes=_dtype_bytes(vae),
        vae_scale=2 ** (len(channels) - 1),
    )


def _dtype_bytes(module: Any) -> int:
    """Bytes per element of a module's compute dtype (quantized weights still compute in bf16/fp32)."""
    dtype = getattr(module, "dtype", torch.float32)
    return 4 if dtype == torch.float32 or not dtype.is_floating_point else torch.finfo(dtype).bits // 8


def denoise_bytes(
    shape: ModelShape, width: int, height: int, batch: int = 1, regions: int = 0, controls: int = 0, references: int = 0
) -> int:
    """Transformer activations of one step (ControlNets, regional masks and Kontext reference tokens included)."""
    text = shape.text_tokens * (1 + regions)
    tokens = (height // 16) * (width // 16) * (1 + references) + text  # a reference: as many tokens as the image
    activations = K_T * batch * tokens * shape.width * shape.act_bytes * (1 + controls)
    if regions:  # boolean mask + unfused attention scores and probabilities
        activations += tokens * tokens + 2 * batch * shape.heads * tokens * tokens * shape.act_bytes
    return activations


def decode_bytes(shape: ModelShape, width: int, height: int, batch: int = 1) -> int:
    """VAE decoder activations plus the decoded float image."""
    channels = shape.vae_channels[::-1]  # the decoder runs them from the deepest
    side_w, side_h = width // shape.vae_scale, height // shape.vae_scale
    largest = side_w * side_h * channels[0]
    for i, out in enumerate(channels):
        into = channels[i - 1] if i else channels[0]
        largest = max(largest, side_w * side_h * max(into, out))
        if i < len(channels) - 1:  # the upsampler doubles the side with ``out`` channels
            side_w, side_h = side_w * 2, side_h * 2
            largest = max(largest, side_w * side_h * out)
    return K_V * batch * largest * shape.vae_bytes + 2 * batch * width * height * 3 * 4


def estimate_bytes(
    shape: ModelShape, width: int, height: int, batch: int = 1, regions: int = 0, controls: int = 0, references: int = 0
) -> int:
    """Peak memory of a generation beyond the resident weights."""
    peak = max(
        denoise_bytes(shape, width, height, batch, regions, controls, references),
        decode_bytes(shape, width, height, batch),
    )
    return int(OVERHEAD + SAFETY * peak)


def largest_square(
    shape: ModelShape, budget: int, batch: int = 1, regions: int = 0, controls: int = 0, references: int = 0
) -> int:
    """The largest side (a multiple of 16, ≤ MAX_SIDE) whose square fits in ``budget``; 0 when none does."""
    low, high = 0, MAX_SIDE // 16
    while low < high:  # the estimate grows with the side: binary search on side / 16
        mid = (low + high + 1) // 2
        if estimate_bytes(shape, mid * 16, mid * 16, batch, regions, controls, references) <= budget:
            low = mid
        else:
            high = mid - 1
    return low * 16


# ---- what is free --------------------------------------------------------------------------------------


def available_bytes(device: torch.device, pipe: Any = None, cap_mb: float | None = None) -> int:
    """Memory a generation may use on ``device`` now, capped by ``cap_mb`` (``Settings.max_memory_mb``) when set."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        # blocks this process's allocator caches are free to us; resident weights are not
        free += torch.cuda.memory_reserved(device) - resident_weight_bytes(pipe, device)
    else:
        free = _host_available()
    return max(0, min(free, int(cap_mb * MIB)) if cap_mb is not None else free)


def resident_weight_bytes(pipe: Any, device: torch.device) -> int:
    """Bytes of the pipeline's weights that live on ``device``'s kind (all of them unless offloaded)."""
    if pipe is None:
        return 0
    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            total += sum(p.numel() * p.element_size() for p in component.parameters() if p.device.type == device.type)
    return total


def _host_available() -> int:
    """Available RAM: /proc/meminfo's MemAvailable (or psutil), lowered to the cgroup's limit when one is set."""
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except OSError:
        pass
    if free is None:
        import psutil

        free = int(psutil.virtual_memory().available)
    limit = _cgroup_room()
    return min(free, limit) if limit is not None else free


def _cgroup_room() -> int | None:
    for limit_file, usage_file in (
        ("memory.max", "memory.current"),  # cgroup v2, then v1
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        try:
            limit = (Path("/sys/fs/cgroup") / limit_file).read_text().strip()
            usage = int((Path("/sys/fs/cgroup") / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            return max(0, int(limit) - usage)
    return None


# ---- the check -----------------------------------------------------------------------------------------
def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{max(1, round(n / MIB))} MiB"


def check_fits(
    shape: ModelShape,
    budget: int,
    width: int,
    height: int,
    batch: int = 1,
    regions: int = 0,
    controls: int = 0,
    hint: str = "",
    references: int = 0,
) -> int:
    """The estimate in bytes; InsufficientMemory naming the largest square size that fits when it exceeds ``budget``."""
    need = estimate_bytes(shape, width, height, batch, regions, controls, references)
    if need <= budget:
        return need
    size = f"{width}×{height}" + (f" × {batch} images" if batch > 1 else "")
    side = largest_square(shape, budget, batch, regions, controls, references)
    if side:
        fix = f"the largest square size that fits is {side}×{side}"
        if batch > 1:
            single = largest_square(shape, budget, 1, regions, controls, references)
            fix += f" ({single}×{single} with batch 1)"
    elif batch > 1 and largest_square(shape, budget, 1, regions, controls, references):
        single = largest_square(shape, budget, 1, regions, controls, references)
        fix = f"generate one image at a time (up to {single}×{single})"
    else:
        fix = "not even 16×16 fits — free memory (close other programs) and try again"
    raise InsufficientMemory(f"{size} needs ~{_gib(need)} but ~{_gib(budget)} is free — {fix}{hint}")
