"""LoRAs: honest inspection of crafted files against flux-mini, refusals that never touch the base weights,
loading and switching on the resident pipeline, replay by content hash, and the ``lora`` CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from studio.core.errors import NotFound, StudioError
from studio.core.request import GenerationRequest, LoraSpec
from studio.lora.files import LoraLibrary, read_header
from studio.lora.inspection import inspect
from studio.lora.library import resolve_specs

PROMPT = "a red circle in the top left on a white background"
BLOCK = "transformer_blocks.0"
STYLE_MODULES = (
    f"{BLOCK}.attn.to_q",
    f"{BLOCK}.attn.to_k",
    f"{BLOCK}.attn.to_v",
    f"{BLOCK}.attn.to_out.0",
    f"{BLOCK}.ff.net.0.proj",
    "single_transformer_blocks.0.proj_out",
    "proj_out",
)


# ---- crafted files ---------------------------------------------------------------------------------------
def peft_lora(transformer, modules=STYLE_MODULES, rank=4, scale=0.5, seed=0, wider: str = "", prefix="transformer."):
    """diffusers/peft keys with random A and B (B non-zero so the LoRA changes the output)."""
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for name in modules:
        module = transformer.get_submodule(name)
        module = getattr(module, "base_layer", module)
        in_features = module.in_features * 2 if name == wider else module.in_features
        tensors[f"{prefix}{name}.lora_A.weight"] = torch.randn(rank, in_features, generator=gen) * scale
        tensors[f"{prefix}{name}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=gen) * scale
    return tensors


def _model_width() -> int:
    """Inner width of the embedded transformer (heads × head dim): crafted Flux-format files follow it."""
    import json

    from tests.conftest import MODEL

    config = json.loads((MODEL / "transformer" / "config.json").read_text())
    return config["num_attention_heads"] * config["attention_head_dim"]


W = _model_width()


def kohya_flux(rank=4, with_text_encoder=False):
    gen = torch.Generator().manual_seed(1)
    tensors = {}
    for key, (out_f, in_f) in {
        "lora_unet_double_blocks_0_img_attn_qkv": (3 * W, W),
        "lora_unet_double_blocks_0_img_attn_proj": (W, W),
        "lora_unet_single_blocks_1_linear2": (W, 5 * W),
    }.items():
        tensors[f"{key}.lora_down.weight"] = torch.randn(rank, in_f, generator=gen) * 0.1
        tensors[f"{key}.lora_up.weight"] = torch.randn(out_f, rank, generator=gen) * 0.1
        tensors[f"{key}.alpha"] = torch.tensor(float(rank))
    if with_text_encoder:
        key = "lora_te1_text_model_encoder_layers_0_self_attn_q_proj"
        tensors[f"{key}.lora_down.weight"] = torch.randn(rank, 64, generator=gen)
        tensors[f"{key}.lora_up.weight"] = torch.randn(64, rank, generator=gen)
    return tensors


def xlabs_flux(rank=4):
    gen = torch.Generator().manual_seed(2)
    return {
        "double_blocks.1.processor.qkv_lora1.down.weight": torch.randn(rank, W, generator=gen),
        "double_blocks.1.processor.qkv_lora1.up.weight": torch.randn(3 * W, rank, generator=gen),
        "double_blocks.1.processor.proj_lora1.down.weight": torch.randn(rank, W, generator=gen),
        "double_blocks.1.processor.proj_lora1.up.weight": torch.randn(W, rank, generator=gen),
    }


def unet_lora(kind: str):
    if kind == "sdxl":
        key, cross = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k", 2048
    else:
        key, cross = "lora_unet_input_blocks_1_1_transformer_blocks_0_attn2_to_k", 768
    return {
        f"{key}.lora_down.weight": torch.zeros(4, cross),
        f"{key}.lora_up.weight": torch.zeros(320, 4),
        f"{key}.alpha": torch.tensor(4.0),
    }


def write(path: Path, tensors, metadata=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def snapshot(transformer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in transformer.state_dict().items()}


def assert_unchanged(transformer, before: dict[str, torch.Tensor]) -> None:
    after = transformer.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def pixels(record) -> np.ndarray:
    return np.asarray(Image.open(record["images"][0]["path"]).convert("RGB"))


@pytest.fixture(scope="module", autouse=True)
def remove_adapters_afterwards(engine):
    """Other test modules share the engine: leave its transformer as we found it."""
    yield
    engine.lora_adapters.clear()


@pytest.fixture
def transformer(engine):
    return engine.pipe.transformer


# ---- inspect ---------------------------------------------------------------------------------------------
def test_diffusers_lora_matches_every_module(tmp_path, transformer):
    path = write(
        tmp_path / "style.safetensors",
        peft_lora(transformer),
        {"flux_studio.trigger_words": json.dumps(["outlined", "hollow"])},
    )
    info = inspect(path, transformer)
    assert (info.format, info.target, info.matched, info.total, info.rank) == ("diffusers", "flux", 7, 7, 4)
    assert info.trigger_words == ("outlined", "hollow")
    assert set(info.to_json()) == {"format", "target", "matched", "total", "rank", "trigger_words", "sha256"}
    assert len(info.sha256) == 64


def test_bare_peft_keys_are_prefixed_not_silently_dropped(tmp_path, transformer):
    path = write(tmp_path / "bare.safetensors", peft_lora(transformer, prefix="base_model.model."))
    info = inspect(path, transformer)
    assert (info.format, info.matched, info.total) == ("peft", 7, 7)


def test_kohya_flux_keys_are_converted_and_matched(tmp_path, transformer):
    info = inspect(write(tmp_path / "kohya.safetensors", kohya_flux()), transformer)
    # qkv splits into to_q/to_k/to_v: 3 + proj + single linear2
    assert (info.format, info.target, info.matched, info.total) == ("kohya", "flux", 5, 5)
    with_te = inspect(write(tmp_path / "kohya_te.safetensors", kohya_flux(with_text_encoder=True)), transformer)
    assert (with_te.matched, with_te.total) == (5, 6)
    assert "text-encoder" in with_te.summary


def test_xlabs_flux_keys_are_converted_and_matched(tmp_path, transformer):
    info = inspect(write(tmp_path / "xlabs.safetensors", xlabs_flux()), transformer)
    assert (info.format, info.target, info.matched, info.total, info.rank) == ("xlabs", "flux", 4, 4, 4)


def test_kohya_metadata_gives_trigger_words_and_base_model(tmp_path):
    tags = {"10_img": {"zwx style": 20, "circle": 8, "square": 3}}
    write(
        tmp_path / "k.safetensors",
        kohya_flux(),
        {"ss_tag_frequency": json.dumps(tags), "ss_base_model_version": "flux1", "ss_network_dim": "4"},
    )
    library = LoraLibrary([tmp_path])
    entry = library.describe(library.resolve("k"))
    assert entry["trigger_words"][0] == "zwx style"
    assert entry["base_model"] == "flux1" and entry["rank"] == 4 and entry["error"] is None


# ---- refusals, and the base weights stay untouched ---------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tr: unet_lora("sdxl"), "is an SDXL LoRA"),
        (lambda tr: unet_lora("sd15"), "Stable Diffusion 1.5 LoRA"),
        (
            lambda tr: peft_lora(tr, wider=f"{BLOCK}.attn.to_q"),
            rf"1 of 7 modules have wrong shapes: e.g. {BLOCK}.attn.to_q expects in {W}, file has {2 * W} — it was trained",
        ),
        (
            lambda tr: {**peft_lora(tr), **peft_lora(tr, modules=(f"{BLOCK}.attn.to_q",), prefix="transformer.x")},
            "not in this model",
        ),
        (lambda tr: {"model.diffusion_model.foo.weight": torch.zeros(2, 2)}, "no LoRA weights we recognise"),
    ],
    ids=["sdxl", "sd15", "wider-in-features", "unknown-modules", "not-a-lora"],
)
def test_misfit_files_are_refused_and_base_weights_unchanged(engine, tmp_path, make, message):
    transformer = engine.pipe.transformer
    path = write(tmp_path / "loras" / "misfit.safetensors", make(transformer))
    before = snapshot(transformer)
    with pytest.raises(StudioError, match=message):
        inspect(path, transformer)
    wanted = resolve_specs([LoraSpec("misfit")], LoraLibrary([tmp_path / "loras"]))
    with pytest.raises(StudioError, match=message):
        engine.lora_adapters.activate(engine.pipe, wanted)
    assert_unchanged(transformer, before)


def test_broken_files_are_refused_with_the_reason(tmp_path, transformer):
    good = write(tmp_path / "good.safetensors", peft_lora(transformer))
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "cut.safetensors").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "junk.safetensors").write_bytes(b"PK\x03\x04 this is a zip pickle, not safetensors")
    (tmp_path / "old.ckpt").write_bytes(b"\x80\x04 pickle")
    before = snapshot(transformer)
    for name, message in (
        ("empty", "empty"),
        ("cut", "truncated"),
        ("junk", "not a safetensors file"),
        ("old.ckpt", "pickled checkpoint"),
    ):
        with pytest.raises(StudioError, match=message):
            inspect(tmp_path / (name if "." in name else f"{name}.safetensors"), transformer)
    library = LoraLibrary([tmp_path])
    with pytest.raises(StudioError, match="pickled checkpoint .* never opens it"):
        library.resolve("old.ckpt")
    listed = {entry["name"]: entry for entry in map(library.describe, library.scan())}
    assert listed["old.ckpt"]["error"] and listed["empty"]["error"] and listed["good"]["error"] is None
    assert_unchanged(transformer, before)


def test_names_resolve_only_inside_the_lora_folders(tmp_path, transformer):
    inside = tmp_path / "loras"
    write(inside / "styles" / "ink.safetensors", peft_lora(transformer))
    outside = write(tmp_path / "elsewhere" / "x.safetensors", peft_lora(transformer))
    library = LoraLibrary([inside])
    assert library.resolve("styles/ink").path == inside / "styles" / "ink.safetensors"
    assert library.resolve("ink").name == "styles/ink"
    assert library.resolve(str(inside / "styles" / "ink.safetensors")).name == "styles/ink"
    with pytest.raises(StudioError, match="outside the LoRA folders"):
        library.resolve(str(outside))
    with pytest.raises(StudioError, match="must not leave the LoRA folders"):
        library.resolve("styles/../../elsewhere/x")
    with pytest.raises(StudioError, match="outside the LoRA folders"):
        library.resolve("../elsewhere/x.safetensors")
    with pytest.raises(NotFound, match="no LoRA named 'nope'"):
        library.resolve("nope")


def test_same_name_in_two_folders_with_different_content_is_refused(tmp_path, transformer):
    write(tmp_path / "a" / "twin.safetensors", peft_lora(transformer, seed=1))
    write(tmp_path / "b" / "twin.safetensors", peft_lora(transformer, seed=2))
    with pytest.raises(StudioError, match="matches different files"):
        LoraLibrary([tmp_path / "a", tmp_path / "b"]).resolve("twin")


def test_sha256_is_cached_until_the_file_changes(tmp_path, transformer):
    path = write(tmp_path / "h.safetensors", peft_lora(transformer))
    library = LoraLibrary([tmp_path])
    first = library.sha256(path)
    assert library.sha256(path) == first and len(library._hashes) == 1
    write(path, peft_lora(transformer, seed=9))
    assert library.sha256(path) != first


# ---- on the resident pipeline ------------------------------------------------------------------------------
def test_lora_changes_the_image_weight_zero_does_not_and_base_is_restored(studio):
    transformer = studio.engine.pipe.transformer
    write(studio.settings.data_dir / "loras" / "style.safetensors", peft_lora(transformer, scale=0.8))
    base = studio.generate(GenerationRequest(prompt=PROMPT, seed=1))
    styled = studio.generate(GenerationRequest(prompt=PROMPT, seed=1, loras=(LoraSpec("style", "", 1.0),)))
    applied = studio.engine.lora_adapters.active
    assert [(a.name, a.info.matched, a.info.total) for a in applied] == [("style", 7, 7)]
    assert applied[0].info.summary == "7 of 7 modules applied"
    zero = studio.generate(GenerationRequest(prompt=PROMPT, seed=1, loras=(LoraSpec("style", "", 0.0),)))
    after = studio.generate(GenerationRequest(prompt=PROMPT, seed=1))
    assert not np.array_equal(pixels(base), pixels(styled))
    assert np.array_equal(pixels(base), pixels(zero))
    assert np.array_equal(pixels(base), pixels(after))
    stored = styled["request"]["loras"]
    assert stored == [{"name": "style", "sha256": applied[0].sha256, "weight": 1.0}]


def test_switching_between_loaded_loras_is_fast_and_never_reloads(studio):
    transformer = studio.engine.pipe.transformer
    folder = studio.settings.data_dir / "loras"
    write(folder / "a.safetensors", peft_lora(transformer, seed=10, scale=0.8))
    write(folder / "b.safetensors", peft_lora(transformer, seed=11, scale=0.8))
    loads = studio.engine.load_count
    first_a = studio.generate(GenerationRequest(prompt=PROMPT, seed=2, loras=(LoraSpec("a"),)))
    only_b = studio.generate(GenerationRequest(prompt=PROMPT, seed=2, loras=(LoraSpec("b", "", 0.7),)))
    both = studio.generate(GenerationRequest(prompt=PROMPT, seed=2, loras=(LoraSpec("a"), LoraSpec("b", "", 0.7))))
    started = time.perf_counter()
    again_a = studio.generate(GenerationRequest(prompt=PROMPT, seed=2, loras=(LoraSpec("a"),)))
    assert studio.engine.lora_adapters.last_switch_s < 0.5 and time.perf_counter() - started < 20
    assert studio.engine.load_count == loads
    assert np.array_equal(pixels(first_a), pixels(again_a))
    assert len({pixels(r).tobytes() for r in (first_a, only_b, both)}) == 3


def swap_after(studio, monkeypatch, first: dict, second: dict):
    """With one adapter slot: ``second`` generated alone (fresh load), then after ``first`` (swap or replace).

    ``first``/``second``: peft_lora keyword arguments. Returns (fresh record, record after first, slot of first,
    hotswap count before the second load, the transformer)."""
    transformer = studio.engine.pipe.transformer
    folder = studio.settings.data_dir / "loras"
    write(folder / "first.safetensors", peft_lora(transformer, **first))
    write(folder / "second.safetensors", peft_lora(transformer, **second))
    adapters = studio.engine.lora_adapters
    adapters.clear()
    fresh = studio.generate(GenerationRequest(prompt=PROMPT, seed=3, loras=(LoraSpec("second"),)))
    adapters.clear()
    monkeypatch.setattr(adapters, "max_loaded", 1)
    studio.generate(GenerationRequest(prompt=PROMPT, seed=3, loras=(LoraSpec("first"),)))
    slot, swaps = adapters.active[0].adapter, adapters.hotswaps
    after = studio.generate(GenerationRequest(prompt=PROMPT, seed=3, loras=(LoraSpec("second"),)))
    return fresh, after, slot, swaps, transformer


def test_beyond_the_limit_a_new_lora_is_hot_swapped_into_the_least_recent_slot(studio, monkeypatch):
    from studio.lora.library import count_applied

    fresh, swapped, slot, swaps, transformer = swap_after(studio, monkeypatch, {"seed": 21}, {"seed": 22})
    adapters = studio.engine.lora_adapters
    assert adapters.hotswaps == swaps + 1 and adapters.active[0].adapter == slot  # same layers, new weights
    assert list(adapters.loaded.values()) == [slot] and count_applied(transformer, slot) == 7
    assert np.array_equal(pixels(fresh), pixels(swapped))


def test_a_lora_of_another_rank_on_fewer_layers_swaps_in_with_the_same_result(studio, monkeypatch):
    fresh, swapped, slot, swaps, _ = swap_after(
        studio, monkeypatch, {"seed": 31}, {"rank": 8, "seed": 32, "modules": STYLE_MODULES[:3]}
    )
    adapters = studio.engine.lora_adapters
    assert adapters.hotswaps == swaps + 1 and len(adapters.loaded) == 1 and adapters.active[0].info.matched == 3
    assert np.array_equal(pixels(fresh), pixels(swapped))  # the 4 layers it lacks carry zeros, not the old weights


def test_a_lora_on_more_layers_than_the_slot_replaces_it_by_a_fresh_load(studio, monkeypatch):
    from studio.lora.library import count_applied

    fresh, replaced, first, swaps, transformer = swap_after(
        studio, monkeypatch, {"seed": 41, "modules": STYLE_MODULES[:3]}, {"seed": 42}
    )
    adapters = studio.engine.lora_adapters
    current = adapters.active[0].adapter
    assert adapters.hotswaps == swaps and current != first and list(adapters.loaded.values()) == [current]
    assert count_applied(transformer, first) == 0 and count_applied(transformer, current) == 7
    assert np.array_equal(pixels(fresh), pixels(replaced))


def test_replay_finds_the_lora_by_hash_and_names_a_missing_one(studio):
    transformer = studio.engine.pipe.transformer
    path = write(studio.settings.data_dir / "loras" / "keep.safetensors", peft_lora(transformer, seed=5, scale=0.8))
    record = studio.generate(GenerationRequest(prompt=PROMPT, seed=4, loras=(LoraSpec("keep", "", 0.9),)))
    renamed = path.rename(path.with_name("moved.safetensors"))
    replay = studio.replay(record["id"])
    assert np.array_equal(pixels(record), pixels(replay))
    assert replay["request"]["loras"][0]["sha256"] == record["request"]["loras"][0]["sha256"]
    renamed.unlink()
    with pytest.raises(NotFound, match=r"LoRA 'keep' \(sha256 [0-9a-f]{12}…\) is missing"):
        studio.replay(record["id"])


def test_a_refused_lora_in_a_request_fails_loudly(studio):
    write(studio.settings.data_dir / "loras" / "xl.safetensors", unet_lora("sdxl"))
    before = snapshot(studio.engine.pipe.transformer)
    with pytest.raises(StudioError, match="SDXL"):
        studio.generate(GenerationRequest(prompt=PROMPT, seed=1, loras=(LoraSpec("xl"),)))
    with pytest.raises(NotFound, match="no LoRA named 'ghost'"):
        studio.generate(GenerationRequest(prompt=PROMPT, seed=1, loras=(LoraSpec("ghost"),)))
    assert_unchanged(studio.engine.pipe.transformer, before)


# ---- the CLI ---------------------------------------------------------------------------------------------
def run_cli(args, capsys) -> tuple[int, dict]:
    from studio.cli.main import main

    code = main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_cli_lora_inspect_and_list(tmp_path, transformer, monkeypatch, capsys):
    from tests.conftest import MODEL

    folder = tmp_path / "loras"
    good = write(folder / "good.safetensors", peft_lora(transformer), {"flux_studio.trigger_words": "zwx, outlined"})
    bad = write(folder / "xl.safetensors", unet_lora("sdxl"))
    monkeypatch.setenv("STUDIO_MODEL", str(MODEL))
    monkeypatch.setenv("STUDIO_LORA_DIRS", str(folder))
    code, out = run_cli(["lora", "inspect", str(good)], capsys)
    assert code == 0 and out["matched"] == out["total"] == 7 and out["trigger_words"] == ["zwx", "outlined"]
    assert set(out) == {"format", "target", "matched", "total", "rank", "trigger_words", "sha256"}
    code, out = run_cli(["lora", "inspect", str(bad)], capsys)
    assert code == 2 and "SDXL" in out["error"]
    code, out = run_cli(["lora", "list"], capsys)
    assert code == 0 and [e["name"] for e in out["loras"]] == ["good", "xl"]
    assert out["loras"][0]["rank"] == 4 and len(out["loras"][0]["sha256"]) == 64
    assert read_header(good).metadata["flux_studio.trigger_words"] == "zwx, outlined"


# ---- the picker (no browser: helpers and a build) ---------------------------------------------------------
ENTRIES = [
    {
        "name": "outlined",
        "sha256": "a" * 64,
        "trigger_words": ["outlined", "hollow"],
        "rank": 8,
        "target": "flux",
        "base_model": "flux-mini",
        "error": None,
        "preview": None,
    },
    {"name": "xl", "sha256": "b" * 64, "trigger_words": [], "rank": 4, "target": "sdxl", "error": None},
    {"name": "old.ckpt", "sha256": None, "trigger_words": [], "rank": None, "error": "pickled checkpoint"},
]


def test_picker_search_choices_and_trigger_words():
    from studio.ui import lora_panel as lp

    assert [e["name"] for e in lp.filter_entries(ENTRIES, "HOLLOW")] == ["outlined"]
    assert [e["name"] for e in lp.filter_entries(ENTRIES, "")] == ["outlined", "xl", "old.ckpt"]
    assert lp.choices(ENTRIES) == [lp.NONE, "outlined"]
    assert [row[-1] for row in lp.table_rows(ENTRIES)] == ["ok", "✗ trained for sdxl, not Flux", "✗ pickled checkpoint"]
    words = lp.trigger_words_of(["outlined", lp.NONE], ENTRIES)
    assert lp.insert_trigger_words("a red circle", words) == "outlined, hollow, a red circle"
    assert lp.insert_trigger_words("an Outlined red circle", words) == "hollow, an Outlined red circle"
    assert lp.selection([("outlined", 0.8), (lp.NONE, 1.0)], ENTRIES) == [
        {"name": "outlined", "sha256": "a" * 64, "weight": 0.8}
    ]
    assert [LoraSpec(**d) for d in lp.selection([("outlined", 0.8)], ENTRIES)][0].weight == 0.8
    assert lp.slot_values([{"name": "outlined", "sha256": "a" * 64, "weight": 0.5}])[:4] == [
        "outlined",
        0.5,
        lp.NONE,
        1.0,
    ]


def test_picker_builds_in_blocks():
    import gradio as gr

    from studio.ui import lora_panel

    with gr.Blocks():
        prompt = gr.Textbox()
        widgets = lora_panel.build(lambda: ENTRIES, prompt)
    assert len(widgets["slots"]) == lora_panel.SLOTS and widgets["insert"] is not None
