"""FLUX.1 Kontext reference images: VAE-encoded, packed tokens joined after the image tokens at every step.

As diffusers' ``FluxKontextPipeline``: the reference's latents (the latent mode) are packed like the image latents
and their position ids carry 1 in the first id dimension (the image's carry 0); the transformer sees
``[image tokens, reference tokens]`` and ``studio.engine.sampling`` keeps only the image tokens of its output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image


@torch.no_grad()
def encode_reference(
    pipe: Any, image: Image.Image, width: int, height: int, batch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference at the output size (``_auto_resize=False``) → packed latents for ``batch`` rows and their ids."""
    from diffusers.pipelines.flux.pipeline_flux_kontext import retrieve_latents

    vae = pipe.vae
    image = pipe.image_processor.resize(image.convert("RGB"), height, width)
    pixels = pipe.image_processor.preprocess(image, height, width)
    pixels = pixels.to(device=next(vae.parameters()).device, dtype=vae.dtype)
    latents = retrieve_latents(vae.encode(pixels), sample_mode="argmax")
    latents = (latents - vae.config.shift_factor) * vae.config.scaling_factor
    channels, h, w = latents.shape[1:]
    packed = pipe._pack_latents(latents.repeat(batch, 1, 1, 1), batch, channels, h, w)
    ids = pipe._prepare_latent_image_ids(batch, h // 2, w // 2, packed.device, packed.dtype)
    ids[..., 0] = 1
    return packed, ids


@dataclass
class ReferenceTokens:
    """A sampling extension: reference tokens after the image tokens in ``hidden_states`` and ``img_ids``."""

    latents: torch.Tensor
    ids: torch.Tensor

    def transformer_kwargs(self, step: int, pass_name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """The image tokens followed by the reference's; the output keeps the image tokens (``sampling``)."""
        hidden = inputs["hidden_states"]
        return {
            "hidden_states": torch.cat([hidden, self.latents.to(device=hidden.device, dtype=hidden.dtype)], dim=1),
            "img_ids": torch.cat([inputs["img_ids"], self.ids.to(inputs["img_ids"].device)], dim=0),
        }


def for_request(req: Any, pipe: Any, load: Any) -> ReferenceTokens | None:
    """FLUX.1 Kontext reference tokens for the request's reference image (None without one); ``load`` opens a
    stored image."""
    if not req.references:
        return None
    assert req.width and req.height
    image = load(req.references[0])
    return ReferenceTokens(*encode_reference(pipe, image, req.width, req.height, req.batch_size))
