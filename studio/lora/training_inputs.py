"""What a LoRA training run is asked for: its settings, its images and captions, and the checks they must pass."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from studio.core.errors import InvalidRequest
from studio.core.limits import check_image

# Which layers a LoRA trains (peft ``target_modules``). "attention": q/k/v/out of every block's image attention;
# "double_attention": the double-stream blocks' image attention only (the part every LoRA format — kohya, xlabs,
# ai-toolkit — can express); "double_blocks": all of the double-stream blocks' layers kohya's Flux format holds
# (both streams' attention and MLPs).
LAYER_SETS: dict[str, list[str] | str] = {
    "attention": ["to_q", "to_k", "to_v", "to_out.0"],
    "double_attention": r"transformer_blocks\.\d+\.attn\.(to_q|to_k|to_v|to_out\.0)",
    "double_blocks": r"transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|"
    r"to_add_out)|ff\.net\.(0\.proj|2)|ff_context\.net\.(0\.proj|2))",
}
MIN_IMAGES, MAX_IMAGES = 4, 64
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,79}$")


@dataclass(frozen=True)
class TrainingConfig:
    """What to train. ``resolution`` None means the model's default size; ``layers`` a key of LAYER_SETS;
    ``guidance`` the guidance-embedding value trained at (None: the model's default guidance; 1.0 is kohya's advice
    for guidance-distilled models like FLUX.1-dev); ``sampler_sigma_share`` the share of σ drawn from the σ the
    sampler visits at the model's default steps (the rest: FLUX's shifted logit-normal). ``distilled_guidance_max``
    > 1 (guidance-distilled models only) trains at g ~ U[1, max] against ``v_u + g·(ε − x0 − v_u)``, v_u the base's
    velocity (adapter off) for the empty prompt: the LoRA's effect then grows with guidance the way the distilled
    base's conditioning does, instead of being learnt at one guidance and extrapolated (``guidance`` is unused)."""

    name: str
    trigger_word: str
    rank: int = 8
    steps: int = 200
    learning_rate: float = 1e-3
    resolution: int | None = None
    seed: int = 0
    batch_size: int = 4
    layers: str = "attention"
    guidance: float | None = None
    sampler_sigma_share: float = 0.0
    distilled_guidance_max: float = 0.0


@dataclass(frozen=True)
class TrainingExample:
    """One training image and its caption."""

    image: Any  # PIL.Image
    caption: str


def validate(config: TrainingConfig, examples: Sequence[TrainingExample], max_images: int = MAX_IMAGES) -> None:
    """Raise InvalidRequest naming the fix for anything that cannot train (``max_images``: the cap on examples;
    scripted training of a style over many generated scenes raises it)."""
    name = config.name
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name or name.lower().endswith(".safetensors"):
        raise InvalidRequest(
            f"LoRA name {name!r} is not a safe file name — use letters, digits, spaces, '-', '_' or '.' "
            "(no folders, no extension), e.g. 'my-style'"
        )
    trigger = (config.trigger_word or "").strip()
    if not trigger or "," in trigger or len(trigger) > 64:
        raise InvalidRequest("the trigger word must be a short word or phrase without commas, e.g. 'zwx style'")
    if len(examples) < MIN_IMAGES:
        raise InvalidRequest(f"{len(examples)} training images are too few — use 10–30 images (at least {MIN_IMAGES})")
    if len(examples) > max_images:
        raise InvalidRequest(f"{len(examples)} training images are too many — use 10–30 (at most {max_images})")
    for i, example in enumerate(examples):
        if not isinstance(example.caption, str) or not example.caption.strip():
            raise InvalidRequest(f"training image {i + 1} has an empty caption — describe what it shows")
        if not hasattr(example.image, "convert") or min(example.image.size) < 1:
            raise InvalidRequest(f"training image {i + 1} is not an image")
        check_image(example.image, f"training image {i + 1}")
    if not 1 <= config.rank <= 128:
        raise InvalidRequest(f"rank {config.rank} is out of range — use 1 to 128 (4–16 is typical)")
    if not 1 <= config.steps <= 5000:
        raise InvalidRequest(f"steps {config.steps} is out of range — use 1 to 5000")
    lr = config.learning_rate
    if not isinstance(lr, (int, float)) or not math.isfinite(lr) or not 0 < lr <= 1:
        raise InvalidRequest(f"learning rate {lr} is out of range — use a value in (0, 1], e.g. 1e-4")
    if config.layers not in LAYER_SETS:
        raise InvalidRequest(f"layers {config.layers!r} is not one of {', '.join(LAYER_SETS)}")
    guidance = config.guidance
    if guidance is not None and (not isinstance(guidance, (int, float)) or not 0 <= guidance <= 100):
        raise InvalidRequest(f"training guidance {guidance} is out of range — use 0 to 100 (1.0 for FLUX.1-dev)")
    if not 0 <= config.sampler_sigma_share <= 1:
        raise InvalidRequest(f"sampler σ share {config.sampler_sigma_share} is out of range — use 0 to 1")
    if config.distilled_guidance_max and not 1 < config.distilled_guidance_max <= 20:
        raise InvalidRequest(
            f"distilled guidance max {config.distilled_guidance_max} is out of range — use 0 (off) "
            "or a value in (1, 20], e.g. 4"
        )
    if config.resolution is not None and (config.resolution < 16 or config.resolution % 16):
        raise InvalidRequest(f"resolution {config.resolution} must be a multiple of 16 (at least 16)")
    if not 1 <= config.batch_size <= 64:
        raise InvalidRequest(f"batch size {config.batch_size} is out of range — use 1 to 64")


def with_trigger(caption: str, trigger: str) -> str:
    """The caption with the trigger word in front, unless it already contains it (as a word, any case)."""
    caption, trigger = caption.strip(), trigger.strip()
    if re.search(rf"(?<!\w){re.escape(trigger)}(?!\w)", caption, re.IGNORECASE):
        return caption
    return f"{trigger}, {caption}"


def square_crop(image: Any, size: int) -> Any:
    """Centre-crop to a square and resize to size x size (how mixed image sizes are handled)."""
    from PIL import Image

    image = image.convert("RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side))
    return image if side == size else image.resize((size, size), Image.Resampling.LANCZOS)
