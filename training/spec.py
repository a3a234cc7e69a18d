"""flux-mini: the sizes of every component, in one place (FLUX geometry, tiny widths)."""

from __future__ import annotations

from dataclasses import dataclass

# Words of the toy world (TOYWORLD.md) and a few common ones; the tokenizers are built from them.
TOY_WORDS = (
    "a an the in on and of with background "
    "red green blue yellow purple orange white black gray grey "
    "circle square triangle stick figure figures "
    "top bottom left right center centre middle "
    "outlined filled style photo image picture painting of"
).split()


@dataclass(frozen=True)
class MiniSpec:
    """Sizes of flux-mini's components; FLUX geometry (16 latent channels, 8x VAE, 2x2 packing). The defaults are
    the shipped 128-px family (assets/models/README.md)."""

    native_size: int = 128
    latent_channels: int = 16
    vae_channels: tuple[int, ...] = (32, 64, 128, 128)
    vae_norm_groups: int = 1
    num_layers: int = 2
    num_single_layers: int = 2
    num_attention_heads: int = 6
    attention_head_dim: int = 32
    axes_dims_rope: tuple[int, int, int] = (8, 12, 12)
    t5_dim: int = 128
    t5_layers: int = 2
    t5_heads: int = 4
    clip_dim: int = 64
    clip_layers: int = 2
    clip_heads: int = 4
    max_sequence_length: int = 32
    guidance_embeds: bool = True
    default_steps: int = 4
    default_guidance: float = 2.0
