"""img2img and inpaint: derived from the resident pipeline with from_pipe (weights shared), inputs by hash."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.core.errors import InvalidRequest
from studio.core.request import ControlSpec, GenerationRequest, RegionSpec

PROMPT = "a red circle in the top left on a white background"


def test_img2img_and_inpaint_share_the_resident_weights_and_store_inputs(studio):
    base = studio.generate(GenerationRequest(prompt=PROMPT, seed=1))
    init_ref = studio.store.assets.put_file(base["images"][0]["path"])
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 32, 64, 64))
    mask_ref = studio.store.assets.put_image(mask)

    loads = studio.engine.load_count
    edited = studio.generate(
        GenerationRequest(prompt=PROMPT, mode="img2img", init_image=init_ref, strength=0.5, seed=2)
    )
    inpainted = studio.generate(
        GenerationRequest(prompt=PROMPT, mode="inpaint", init_image=init_ref, mask=mask_ref, strength=0.9, seed=3)
    )
    assert studio.engine.load_count == loads
    for mode in ("img2img", "inpaint"):
        assert studio.engine.pipeline_for(mode).transformer is studio.engine.pipe.transformer
    assert edited["status"] == inpainted["status"] == "done"
    assert edited["request"]["init_image"] == init_ref and inpainted["request"]["mask"] == mask_ref

    # a quarter mask keeps more of the init image than a mask over everything (same seed and strength)
    everything = studio.store.assets.put_image(Image.new("L", (64, 64), 255))
    repainted = studio.generate(
        GenerationRequest(prompt=PROMPT, mode="inpaint", init_image=init_ref, mask=everything, strength=0.9, seed=3)
    )
    init = np.asarray(Image.open(base["images"][0]["path"]).convert("RGB")).astype(int)

    def distance(record: dict) -> float:
        return float(
            np.abs(np.asarray(Image.open(record["images"][0]["path"]).convert("RGB")).astype(int) - init).mean()
        )

    assert distance(inpainted) < distance(repainted)

    replay = studio.replay(inpainted["id"])
    assert replay["images"][0]["sha256"] == inpainted["images"][0]["sha256"]


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (lambda ref: {"regions": (RegionSpec(ref, "a blue square"),)}, "regions work in text-to-image only"),
        (lambda ref: {"controls": (ControlSpec("canny-map", ref),)}, "controls work in text-to-image only"),
    ],
)
def test_img2img_and_inpaint_refuse_regions_and_controls_instead_of_ignoring_them(studio, extra, match):
    ref = studio.store.assets.put_image(Image.new("RGB", (64, 64), "white"))
    mask = studio.store.assets.put_image(Image.new("L", (64, 64), 255))
    for mode in ("img2img", "inpaint"):
        request = GenerationRequest(
            prompt=PROMPT, mode=mode, init_image=ref, mask=mask, strength=0.5, seed=1, **extra(ref)
        )
        with pytest.raises(InvalidRequest, match=match):
            studio.engine.generate(request, assets=studio.store.assets)
