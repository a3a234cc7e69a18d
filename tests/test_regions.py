"""Regional prompting: token ownership, the joint attention mask, and the loop on the embedded model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.core.errors import InvalidRequest
from studio.core.request import GenerationRequest, RegionSpec
from studio.engine.conditioning import regions

BASE = "a red circle in the top left and a blue square in the bottom right on a white background"


def box_mask(size: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_tokens_follow_the_painted_cells_and_later_regions_win():
    left = box_mask(64, 0, 0, 32, 64)
    top = box_mask(64, 0, 0, 64, 32)
    owner = regions.token_regions([left, top], 64, 64).reshape(4, 4)
    assert (owner[:2, :] == 1).all()  # top half: the later region
    assert (owner[2:, :2] == 0).all() and (owner[2:, 2:] == -1).all()


def test_attention_mask_rules():
    owner = np.array([0, 1, -1])
    mask = regions.attention_mask(owner, text_len=2, regions=2).numpy()
    base, r0, r1, img = slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 9)
    assert mask[base, base].all() and not mask[base, r0].any() and not mask[r0, r1].any()
    assert mask[base, img].all()  # the base prompt sees every image token
    assert mask[r0, img].tolist() == [[True, False, False]] * 2
    assert mask[img, r1].tolist() == [[False, False], [True, True], [False, False]]
    assert mask[img, img].all() and mask.any(axis=1).all()  # nobody attends to nothing


def pixels(record: dict) -> np.ndarray:
    return np.asarray(Image.open(record["images"][0]["path"]).convert("RGB"))


def store_mask(studio, mask: np.ndarray) -> str:
    return studio.store.assets.put_image(Image.fromarray((mask * 255).astype(np.uint8), "L"))


def test_empty_region_changes_nothing_and_painted_regions_do(studio):
    plain = studio.generate(GenerationRequest(prompt=BASE, seed=8))
    empty = store_mask(studio, np.zeros((64, 64), dtype=bool))
    same = studio.generate(GenerationRequest(prompt=BASE, seed=8, regions=(RegionSpec(empty, "a green triangle"),)))
    assert np.array_equal(pixels(same), pixels(plain))  # the files differ only in their metadata

    left = store_mask(studio, box_mask(64, 0, 0, 32, 32))
    right = store_mask(studio, box_mask(64, 32, 32, 64, 64))
    specs = (
        RegionSpec(left, "a red circle in the top left on a white background"),
        RegionSpec(right, "a blue square in the bottom right on a white background"),
    )
    regional = studio.generate(GenerationRequest(prompt=BASE, seed=8, regions=specs))
    assert not np.array_equal(pixels(regional), pixels(plain))
    assert [r["prompt"] for r in regional["request"]["regions"]] == [s.prompt for s in specs]
    replay = studio.replay(regional["id"])
    assert replay["images"][0]["sha256"] == regional["images"][0]["sha256"]

    window_off = studio.generate(
        GenerationRequest(prompt=BASE, seed=8, regions=specs, schedule={"regions": [[0, 0.0], [1, 0.0]]})
    )
    assert np.array_equal(pixels(window_off), pixels(plain))


def test_region_without_prompt_is_refused():
    with pytest.raises(InvalidRequest, match="region prompt"):
        GenerationRequest(prompt=BASE, regions=(RegionSpec("sha256:" + "a" * 64, " "),)).validate()


def test_base_ratio_mixes_the_main_prompt_into_regions_and_zero_is_off(studio):
    left = store_mask(studio, box_mask(64, 0, 0, 32, 32))
    specs = (RegionSpec(left, "a red circle in the top left on a white background"),)
    off = studio.generate(GenerationRequest(prompt=BASE, seed=3, regions=specs))
    zero = studio.generate(GenerationRequest(prompt=BASE, seed=3, regions=specs, region_base_ratio=0.0))
    mixed = studio.generate(GenerationRequest(prompt=BASE, seed=3, regions=specs, region_base_ratio=0.6))
    assert np.array_equal(pixels(zero), pixels(off))
    assert not np.array_equal(pixels(mixed), pixels(off))
    assert mixed["request"]["region_base_ratio"] == 0.6
    assert studio.replay(mixed["id"])["images"][0]["sha256"] == mixed["images"][0]["sha256"]
    with pytest.raises(InvalidRequest, match="region_base_ratio"):
        GenerationRequest(prompt=BASE, regions=specs, region_base_ratio=1.5).validate()


def test_regions_under_a_backend_without_masks_run_on_native_attention_and_switch_back(tmp_path, engine):
    from studio.core import settings as settings_mod
    from studio.core.errors import StudioError
    from studio.engine.engine import Engine
    from studio.service import Studio
    from studio.store.store import Store
    from tests.conftest import MODEL

    def studio_with(backend: str, name: str) -> Studio:
        env = {"STUDIO_MODEL": str(MODEL), "STUDIO_DATA_DIR": str(tmp_path / name), "STUDIO_ATTENTION_BACKEND": backend}
        settings = settings_mod.from_env(env, threads=1)
        return Studio(settings, engine=Engine(settings), store=Store(settings.db_url, settings.data_dir))

    native, maskless = studio_with("native", "a"), studio_with("_native_flash", "b")  # torch's flash SDPA: no masks
    try:
        specs = []
        for studio in (native, maskless):
            left = store_mask(studio, box_mask(64, 0, 0, 32, 32))
            specs.append((RegionSpec(left, "a green triangle in the top left on a white background"),))
        made = [
            s.generate(GenerationRequest(prompt=BASE, seed=8, regions=r)) for s, r in zip((native, maskless), specs)
        ]
        assert np.array_equal(pixels(made[0]), pixels(made[1]))  # the regions took effect the same way
        processors = [m.processor for m in maskless.engine.pipe.transformer.modules() if hasattr(m, "processor")]
        assert {str(p._attention_backend.value) for p in processors if hasattr(p, "_attention_backend")} == {
            "_native_flash"
        }  # configured backend back in place
    finally:
        native.close()
        maskless.close()
        from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

        # set_attention_backend also sets diffusers' process-wide active backend: leave the default for later tests
        _AttentionBackendRegistry.set_active_backend(AttentionBackendName.NATIVE)
    with pytest.raises(StudioError, match="STUDIO_ATTENTION_BACKEND='no-such'"):
        studio_with("no-such", "c").engine.ensure()
