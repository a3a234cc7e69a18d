"""The two FluxControlNetModel families diffusers runs, each matched against diffusers' FluxControlNetPipeline.

InstantX / Shakker-Labs nets take the control's VAE latents; XLabs-style nets (XLabs' diffusers-format checkpoints)
embed the control image with their own ``input_hint_block`` and repeat a few blocks' residuals over the
transformer. On flux-mini with small random nets of each family, the studio's sampling loop must give the pixels
diffusers' pipeline gives (built with ``from_pipe`` on the resident pipeline); the two families are not summed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from studio.core import settings as settings_mod
from studio.core.errors import StudioError
from studio.core.request import ControlSpec, GenerationRequest
from studio.engine.engine import Engine
from studio.service import Studio
from studio.store.store import Store
from tests.conftest import MODEL

PROMPT = "a blue square in the center on a white background"


def random_net(folder, xlabs: bool):
    """A small FluxControlNetModel for flux-mini: InstantX-style, or XLabs-style (input hint block, patch 2)."""
    from diffusers import FluxControlNetModel, FluxTransformer2DModel

    cfg = FluxTransformer2DModel.load_config(MODEL / "transformer")
    shape = {
        k: cfg[k]
        for k in (
            "in_channels",
            "attention_head_dim",
            "num_attention_heads",
            "joint_attention_dim",
            "pooled_projection_dim",
            "guidance_embeds",
            "axes_dims_rope",
        )
    }
    extra = (
        {"patch_size": 2, "conditioning_embedding_channels": 16, "num_single_layers": 0}
        if xlabs
        else {"num_single_layers": 1}
    )
    torch.manual_seed(1 if xlabs else 0)
    net = FluxControlNetModel(num_layers=1, **shape, **extra)
    with torch.no_grad():  # controlnet blocks start at zero (no effect); give every weight some value
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    net.save_pretrained(folder)
    return net


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("controlnet-families")
    random_net(tmp / "instantx", xlabs=False)
    random_net(tmp / "xlabs", xlabs=True)
    env = {
        "STUDIO_MODEL": str(MODEL),
        "STUDIO_DATA_DIR": str(tmp / "data"),
        "STUDIO_CONTROLNET_CANNY": str(tmp / "instantx"),
        "STUDIO_CONTROLNET_DEPTH": str(tmp / "xlabs"),
    }
    settings = settings_mod.from_env(env, threads=1)
    made = Studio(settings, engine=Engine(settings), store=Store(settings.db_url, settings.data_dir))
    made.tmp = tmp
    yield made
    made.close()


def control_image():
    img = Image.new("RGB", (64, 64), "black")
    img.paste((255, 255, 255), (20, 20, 44, 44))
    return img


def pixels(record):
    return np.asarray(Image.open(record["images"][0]["path"]).convert("RGB")).astype(int)


@pytest.mark.parametrize(("kind", "folder"), [("canny-map", "instantx"), ("depth-map", "xlabs")])
def test_each_controlnet_family_matches_diffusers_flux_controlnet_pipeline(studio, kind, folder, monkeypatch):
    from diffusers import FluxControlNetModel, FluxControlNetPipeline
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    ref = studio.store.assets.put_image(control_image())
    size = {"width": 64, "height": 64}  # diffusers' pipeline below draws 64 × 64 from 8 × 8 latents
    record = studio.generate(
        GenerationRequest(prompt=PROMPT, seed=4, steps=4, guidance=3.5, controls=(ControlSpec(kind, ref),), **size)
    )
    plain = studio.generate(GenerationRequest(prompt=PROMPT, seed=4, steps=4, guidance=3.5, **size))
    assert np.abs(pixels(record) - pixels(plain)).mean() > 1  # the net changes the image

    net = FluxControlNetModel.from_pretrained(studio.tmp / folder)
    assert (net.input_hint_block is not None) == (folder == "xlabs")
    pipe = FluxControlNetPipeline.from_pipe(studio.engine.pipe, controlnet=net)
    assert pipe.transformer is studio.engine.pipe.transformer
    # the studio encodes a control with the latent mode (deterministic replay); make diffusers do the same
    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mode())
    noise = torch.randn((1, 16, 8, 8), generator=torch.Generator().manual_seed(4))
    latents = pipe._pack_latents(noise, 1, 16, 8, 8)
    out = pipe(
        prompt=PROMPT,
        control_image=control_image(),
        height=64,
        width=64,
        num_inference_steps=4,
        guidance_scale=3.5,
        latents=latents,
        max_sequence_length=32,
        output_type="np",
    ).images[0]
    theirs = (out * 255).round().astype(int)
    assert np.abs(theirs - pixels(record)).max() <= 2


def test_the_two_families_are_not_summed(studio):
    ref = studio.store.assets.put_image(control_image())
    with pytest.raises(StudioError, match="XLabs-style ControlNet"):
        studio.generate(
            GenerationRequest(
                prompt=PROMPT, seed=4, controls=(ControlSpec("canny-map", ref), ControlSpec("depth-map", ref))
            )
        )
