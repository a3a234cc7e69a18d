"""The operator's model picker (issue 28): what ``studio.models.choices`` lists and reads without loading weights,
and the header's "model ▾" in real Chromium — picking a second model sets its size/steps, its generation's record
names it, and a model that cannot load is refused with the reason while the current one stays.

Screenshots go to the test's tmp dir and to ``/tmp/model_picker_shots/`` for a person to look at.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from studio.core.errors import InvalidRequest
from studio.core.settings import Settings
from studio.models.catalog import DEV, SCHNELL
from studio.models.choices import find_choice, model_choices, model_defaults
from tests.conftest import MODEL, ROOT

SHOTS = Path("/tmp/model_picker_shots")
VIEWPORT = {"width": 1440, "height": 900}
WIDE = {"name": "flux-mini-wide", "width": 160, "height": 96, "steps": 3, "guidance": 1.5, "max_sequence_length": 32}


def twin(folder: Path, card: dict | None = None, index: dict | None = None, transformer: dict | None = None) -> Path:
    """A model folder sharing flux-mini's weights (symlinks) with its own studio.json / model_index / config."""
    folder.mkdir(parents=True)
    for entry in MODEL.iterdir():
        if entry.name in ("studio.json", "README.md"):
            continue
        if entry.name == "model_index.json" and index is not None:
            (folder / entry.name).write_text(json.dumps({**json.loads(entry.read_text()), **index}))
        elif entry.name == "transformer" and transformer is not None:
            (folder / "transformer").mkdir()
            config = json.loads((entry / "config.json").read_text())
            (folder / "transformer" / "config.json").write_text(json.dumps({**config, **transformer}))
        else:
            (folder / entry.name).symlink_to(entry)
    if card is not None:
        (folder / "studio.json").write_text(json.dumps(card))
    return folder


@pytest.fixture
def shelf(tmp_path: Path) -> dict[str, Path]:
    models = tmp_path / "models"
    wide = twin(models / "flux-mini-wide", WIDE)
    kontext = twin(
        models / "flux-mini-edit", {**WIDE, "name": "flux-mini-edit"}, {"_class_name": "FluxKontextPipeline"}
    )
    schnell = twin(models / "flux-mini-fast", transformer={"guidance_embeds": False})
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    (shelf / "broken.safetensors").write_bytes(b"not a safetensors file")
    return {"wide": wide, "kontext": kontext, "schnell": schnell, "shelf": shelf}


def test_choices_resident_first_then_served_then_the_shelf_with_reasons(shelf):
    settings = Settings(
        model=str(shelf["wide"]), models=(str(MODEL), str(shelf["kontext"])), model_dirs=(shelf["shelf"],)
    )
    choices = model_choices(settings, resident=str(MODEL))
    assert [c.label for c in choices] == ["flux-mini", "flux-mini-wide", "flux-mini-edit", "broken.safetensors"]
    assert choices[0].resident and not any(c.resident for c in choices[1:])
    assert [c.kontext for c in choices] == [False, False, True, False]
    broken = choices[-1]
    assert not broken.loadable and broken.reason and "broken.safetensors" in broken.name
    assert all(c.loadable and c.reason is None for c in choices[:3])
    assert find_choice(choices, str(shelf["kontext"]) + "/") is choices[2]  # same folder, another spelling
    assert find_choice(choices, "/etc") is None
    missing = model_choices(Settings(model=str(MODEL), models=("assets/models/nowhere",)))
    assert [c.loadable for c in missing] == [True, False] and "no model at" in missing[1].reason


def test_defaults_come_from_studio_json_or_the_guidance_embedding_without_loading(shelf):
    settings = Settings(model=str(MODEL), models=tuple(str(shelf[k]) for k in ("wide", "schnell")))
    wide = model_defaults(str(shelf["wide"]), settings)
    assert (wide.width, wide.height, wide.steps, wide.guidance) == (160, 96, 3, 1.5)
    assert model_defaults(str(shelf["schnell"]), settings) == SCHNELL  # no studio.json, no guidance embedding
    assert model_defaults("", settings).width == 128  # the resident model's own card
    plain = Settings(model=str(MODEL), models=(str(twin(shelf["shelf"].parent / "plain", transformer={})),))
    assert model_defaults(plain.models[0], plain) == DEV  # guidance embedding, no card: dev-like
    with pytest.raises(InvalidRequest, match="not served here"):
        model_defaults("/etc", settings)


def test_choices_import_no_torch():
    code = "import sys, studio.models.choices; print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---- in the browser ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def picker_server(tmp_path_factory):
    from tests.server import AppServer

    root = tmp_path_factory.mktemp("picker")
    wide = twin(root / "models" / "flux-mini-wide", WIDE)
    shelf = root / "shelf"
    shelf.mkdir()
    (shelf / "broken.safetensors").write_bytes(b"not a safetensors file")
    data_dir = root / "data"
    data_dir.mkdir()
    srv = AppServer(data_dir, env={"STUDIO_MODELS": str(wide), "STUDIO_MODEL_DIRS": str(shelf)})
    srv.wide = wide
    yield srv
    srv.close()


def shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path))
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / name)


def pick(page, label: str) -> None:
    page.locator("#model_picker input").click()
    page.get_by_role("option", name=label, exact=True).click()


@pytest.mark.browser
def test_pick_a_second_model_sets_its_defaults_and_the_record_names_it(picker_server, tmp_path):
    from playwright.sync_api import expect

    from tests.test_app import browser_page, latest_records

    with browser_page(tmp_path, VIEWPORT) as page:
        page.goto(picker_server.url + "/")
        expect(page.locator("#generate")).to_be_visible(timeout=30_000)
        picker = page.locator("#model_picker input")
        expect(picker).to_have_value("flux-mini")
        expect(page.locator("#width input")).to_have_value("128")
        shot(page, tmp_path, "picker_start.png")
        page.locator("#model_picker input").click()
        expect(page.get_by_role("option", name="⊘ broken.safetensors — cannot load")).to_be_visible()
        shot(page, tmp_path, "picker_open.png")
        page.get_by_role("option", name="⊘ broken.safetensors — cannot load").click()
        expect(page.get_by_text("cannot load:").first).to_be_visible(timeout=15_000)  # the reason, as a warning
        expect(picker).to_have_value("flux-mini", timeout=10_000)  # the current model stays

        pick(page, "flux-mini-wide")
        expect(page.locator("#width input")).to_have_value("160", timeout=15_000)
        expect(page.locator("#height input")).to_have_value("96")
        expect(page.locator("#steps input")).to_have_value("3")
        expect(page.locator("#model_note")).to_contain_text("160×96 · 3 steps")
        shot(page, tmp_path, "picker_wide.png")
        page.locator("#prompt textarea").fill("a red circle in the top left on a white background")
        page.locator("#generate").click()
        expect(page.locator("#status")).to_contain_text("Done", timeout=180_000)
    record = latest_records(picker_server, 1)[0]
    assert record["request"]["model"] == str(picker_server.wide)
    assert (record["request"]["width"], record["request"]["height"], record["request"]["steps"]) == (160, 96, 3)
