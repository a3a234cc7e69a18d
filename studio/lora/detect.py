"""What a LoRA file is, told from its tensor names and shapes alone: the model family it was trained for and its
format (diffusers, kohya, BFL, LyCORIS, …). No torch here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

UNET_MARKERS = ("down_blocks", "up_blocks", "mid_block", "input_blocks", "output_blocks", "middle_block")
FLUX_MARKERS = ("double_blocks", "single_blocks", "single_transformer_blocks", "x_embedder", "lora_transformer_")


def detect_target(keys: Iterable[str], shapes: Mapping[str, tuple[int, ...]]) -> str:
    """The model family the keys were trained for: flux, sdxl, sd15, sd2, sd3 or unknown."""
    keys = [k.lower() for k in keys]
    if any(marker in k for k in keys for marker in UNET_MARKERS):
        if any(
            k.startswith(("lora_te2_", "text_encoder_2.")) or "add_embedding" in k or "label_emb" in k for k in keys
        ):
            return "sdxl"
        cross = {
            shape[-1]
            for key, shape in shapes.items()
            if "attn2" in key and "to_k" in key and len(shape) == 2 and ("down" in key or "lora_a" in key.lower())
        }
        return {2048: "sdxl", 1024: "sd2"}.get(max(cross, default=768), "sd15")
    if any("joint_blocks" in k or k.startswith(("transformer.pos_embed", "pos_embed")) for k in keys):
        return "sd3"
    if any(marker in k for k in keys for marker in (*FLUX_MARKERS, "transformer_blocks")):
        return "flux"
    return "unknown"


def is_control_lora(shapes: Mapping[str, tuple[int, ...]], image_channels: int = 64) -> bool:
    """A Flux Control LoRA: its input layer (``x_embedder`` / BFL ``img_in``) takes twice the image channels."""
    return any(
        key.endswith(("x_embedder.lora_A.weight", "img_in.lora_A.weight"))
        and len(shape) == 2
        and shape[1] == 2 * image_channels
        for key, shape in shapes.items()
    )


BFL_MODULES = (
    "double_blocks.",
    "single_blocks.",
    "img_in.",
    "txt_in.",
    "time_in.",
    "vector_in.",
    "guidance_in.",
    "final_layer.",
)
FORMATS = (
    "diffusers",
    "peft",
    "ai-toolkit",
    "kohya",
    "xlabs",
    "bfl-control",
    "bfl-peft",
    "fal-kontext",
    "lycoris-lokr",
    "lycoris-loha",
    "dora",
    "unknown",
)


def detect_format(keys: Iterable[str], metadata: Mapping[str, str]) -> str:
    """One of FORMATS, told from the tensor names.

    ``lycoris-lokr``/``lycoris-loha``: LyCORIS Kronecker/Hadamard factors under any naming; ``dora``: a DoRA
    (peft ``lora_magnitude_vector`` or kohya ``dora_scale``); ``bfl-peft``: BFL module names (``double_blocks.0.
    img_attn.qkv``) with peft ``lora_A``/``lora_B``; ``fal-kontext``: the same under peft's ``base_model.model.``.
    """
    keys = list(keys)
    if any(".lokr_" in k for k in keys):
        return "lycoris-lokr"
    if any(".hada_" in k for k in keys):
        return "lycoris-loha"
    if any("lora_magnitude_vector" in k or "dora_scale" in k for k in keys):
        return "dora"
    bare = [k.removeprefix("diffusion_model.") for k in keys]
    if any("query_norm.scale" in k for k in keys) or (
        any(k.startswith("img_in.lora") for k in bare) and not any(k.startswith(BFL_MODULES[:2]) for k in bare)
    ):
        return "bfl-control"
    if any(".lora_down.weight" in k for k in keys):
        return "kohya"
    if any(".processor." in k for k in keys):
        return "xlabs"
    if any(".lora_A." in k for k in keys):
        if any(
            k.startswith("base_model.model.") and k.removeprefix("base_model.model.").startswith(BFL_MODULES)
            for k in keys
        ):
            return "fal-kontext"
        if any(k.removeprefix("diffusion_model.").startswith(BFL_MODULES) for k in keys):
            return "bfl-peft"
        if "ai-toolkit" in metadata.get("software", "") or "training_info" in metadata:
            return "ai-toolkit"
        return "diffusers" if any(k.startswith("transformer.") for k in keys) else "peft"
    return "unknown"
