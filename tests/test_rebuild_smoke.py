"""``python -m training.train_all --smoke``: every stage of the 128-px family's rebuild (random init → VAE → decoder
→ base → ControlNet → outlined LoRA → adversarial decoder → export) for a few steps at 32 px, and what it exports
loads with the unchanged diffusers classes and generates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import FluxControlNetModel, FluxPipeline

from training import train_all


@pytest.mark.slow
def test_the_smoke_rebuild_runs_every_stage_and_exports_a_loadable_family(tmp_path):
    out = tmp_path / "rebuild"
    ledger = train_all.main(["--smoke", "--out", str(out)])
    assert list(ledger["done"]) == list(train_all.STAGES)
    assert ledger["done"]["export"]["result"] == {"installed": False}

    folder = out / "flux-mini"
    card = json.loads((folder / "studio.json").read_text())
    assert (card["width"], card["guidance_distilled"], card["controlnets"]) == (
        32,
        False,
        {"union": "../flux-mini-controlnet-union"},
    )
    pipe = FluxPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(
        "a red circle in the top left on a white background",
        num_inference_steps=2,
        height=32,
        width=32,
        max_sequence_length=32,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images[0]
    assert image.shape == (32, 32, 3) and np.isfinite(image).all()
    net = FluxControlNetModel.from_pretrained(out / "flux-mini-controlnet-union")
    assert net.config.num_mode == 10
    assert (out / "loras" / "outlined.safetensors").is_file()
    assert (out / "loras" / "kohya" / "outlined-kohya.safetensors").is_file()

    again = train_all.main(["--smoke", "--out", str(out)])  # resumable: finished stages are skipped
    assert again["done"]["vae"] == ledger["done"]["vae"]
