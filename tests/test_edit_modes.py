"""img2img and inpaint: derived from the resident pipeline with from_pipe (weights shared), inputs by hash."""

from __future__ import annotations

import numpy as np
from PIL import Image

from studio.request import GenerationRequest

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

    # inpainting keeps the unmasked area close to the init image, repaints the masked one
    init = np.asarray(Image.open(base["images"][0]["path"]).convert("RGB")).astype(int)
    out = np.asarray(Image.open(inpainted["images"][0]["path"]).convert("RGB")).astype(int)
    kept = np.abs(out[:24, :24] - init[:24, :24]).mean()
    changed = np.abs(out[40:, 40:] - init[40:, 40:]).mean()
    assert changed > kept

    replay = studio.replay(inpainted["id"])
    assert replay["images"][0]["sha256"] == inpainted["images"][0]["sha256"]
