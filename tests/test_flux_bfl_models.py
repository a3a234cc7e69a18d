"""BFL Flux Control models (FLUX.1-Canny/Depth-dev kind): a transformer with twice the input channels takes the
control map's latents concatenated to the image latents. Proved on flux-mini widened the same way: with zero
control weights it draws exactly what flux-mini draws; with non-zero ones it matches diffusers' FluxControlPipeline
(built with ``from_pipe`` on the resident pipeline) pixel for pixel; requests it cannot run are refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from studio import settings as settings_mod
from studio.engine import Engine
from studio.errors import StudioError
from studio.history import Store
from studio.request import ControlSpec, GenerationRequest
from studio.service import Studio
from tests.conftest import MODEL

PROMPT = "a red circle in the top left on a white background"


def widened_model(folder, control_scale: float):
    """flux-mini with a BFL-Control-style transformer: x_embedder takes 64 image + 64 control channels."""
    from diffusers import FluxTransformer2DModel

    shutil.copytree(MODEL, folder, ignore=shutil.ignore_patterns("transformer"))
    base = FluxTransformer2DModel.from_pretrained(MODEL / "transformer")
    config = {k: v for k, v in base.config.items() if not k.startswith("_")}
    wide = FluxTransformer2DModel.from_config({**config, "in_channels": 2 * config["in_channels"],
                                               "out_channels": config["in_channels"]})
    state = base.state_dict()
    weight = state["x_embedder.weight"]
    extra = torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)) * control_scale
    state["x_embedder.weight"] = torch.cat([weight, extra], dim=1)
    wide.load_state_dict(state)
    wide.save_pretrained(folder / "transformer")
    return folder


def make_studio(folder, data):
    settings = settings_mod.from_env({"STUDIO_MODEL": str(folder), "STUDIO_DATA_DIR": str(data)}, threads=1)
    return Studio(settings, engine=Engine(settings), store=Store(settings.db_url, settings.data_dir))


@pytest.fixture(scope="module")
def studios(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flux-control")
    made = {
        "zero": make_studio(widened_model(tmp / "zero", 0.0), tmp / "data-zero"),
        "live": make_studio(widened_model(tmp / "live", 0.5), tmp / "data-live"),
        "base": make_studio(MODEL, tmp / "data-base"),
    }
    yield made
    for studio in made.values():
        studio.close()


def pixels(record):
    return np.asarray(Image.open(record["images"][0]["path"]).convert("RGB")).astype(int)


def canny_map(studio):
    img = Image.new("RGB", (64, 64), "black")
    for x in range(8, 30):
        for y in (8, 29):
            img.putpixel((x, y), (255, 255, 255))
            img.putpixel((y, x), (255, 255, 255))
    return studio.store.assets.put_image(img), img


def test_zero_control_weights_draw_exactly_the_base_model(studios):
    ref, _ = canny_map(studios["zero"])
    controlled = studios["zero"].generate(GenerationRequest(prompt=PROMPT, seed=5,
                                                            controls=(ControlSpec("canny-map", ref),)))
    plain = studios["base"].generate(GenerationRequest(prompt=PROMPT, seed=5))
    assert np.abs(pixels(controlled) - pixels(plain)).max() <= 1


def test_the_control_reaches_the_model_and_matches_diffusers_flux_control_pipeline(studios, monkeypatch):
    from diffusers import FluxControlPipeline
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    studio = studios["live"]
    ref, image = canny_map(studio)
    record = studio.generate(GenerationRequest(prompt=PROMPT, seed=5, steps=4, guidance=3.5,
                                               controls=(ControlSpec("canny-map", ref),)))
    plain = studios["base"].generate(GenerationRequest(prompt=PROMPT, seed=5, steps=4, guidance=3.5))
    assert np.abs(pixels(record) - pixels(plain)).mean() > 2  # the control changes the image
    assert np.array_equal(pixels(studio.replay(record["id"])), pixels(record))

    pipe = FluxControlPipeline.from_pipe(studio.engine.pipe)
    assert pipe.transformer is studio.engine.pipe.transformer  # from_pipe shares the resident weights
    # the studio encodes the control with the latent mode (deterministic replay); make diffusers do the same
    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mode())
    noise = torch.randn((1, 16, 8, 8), generator=torch.Generator().manual_seed(5))
    latents = pipe._pack_latents(noise, 1, 16, 8, 8)
    out = pipe(prompt=PROMPT, control_image=image, height=64, width=64, num_inference_steps=4, guidance_scale=3.5,
               latents=latents, max_sequence_length=32, output_type="np").images[0]
    theirs = (out * 255).round().astype(int)
    assert np.abs(theirs - pixels(record)).max() <= 2


def test_requests_a_flux_control_model_cannot_run_are_refused_with_the_fix(studios):
    studio = studios["live"]
    ref, _ = canny_map(studio)
    cases = [
        (GenerationRequest(prompt=PROMPT, seed=1), "exactly one control"),
        (GenerationRequest(prompt=PROMPT, seed=1, controls=(ControlSpec("canny-map", ref),) * 2), "exactly one"),
        (GenerationRequest(prompt=PROMPT, seed=1, controls=(ControlSpec("canny-map", ref, True, 0.5),)),
         "no control strength"),
        (GenerationRequest(prompt=PROMPT, seed=1, controls=(ControlSpec("canny-map", ref, True, 1.0, 0.0, 0.5),)),
         "strength 1, start 0"),
    ]
    for request, message in cases:
        with pytest.raises(StudioError, match=message):
            studio.generate(request)
    assert studio.engine.pipe.transformer.config.in_channels == 128  # still the resident control model
