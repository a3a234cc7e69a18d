"""The shipped flux-mini-kontext: a FLUX.1 Kontext-style edit model that loads as one, edits through the studio's own
loop from an instruction, and does so in the browser from the Edit tab's Reference input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core.request import GenerationRequest
from tests.conftest import ROOT

FOLDER = ROOT / "assets" / "models" / "flux-mini-kontext"
SIZE = 128


@pytest.fixture(scope="module")
def kontext_studio(tmp_path_factory: pytest.TempPathFactory):
    from studio.core import settings as settings_mod
    from studio.engine.engine import Engine
    from studio.service import Studio
    from studio.store.store import Store

    data_dir = tmp_path_factory.mktemp("data")
    settings = settings_mod.from_env({"STUDIO_MODEL": str(FOLDER), "STUDIO_DATA_DIR": str(data_dir)}, threads=1)
    store = Store(settings.db_url, settings.data_dir)
    yield Studio(settings, engine=Engine(settings), store=store)
    store.close()


def test_the_folder_is_a_kontext_model_with_its_defaults() -> None:
    from studio.models import kinds as model_kinds
    from studio.models.inspection import diffusers_report

    assert json.loads((FOLDER / "model_index.json").read_text())["_class_name"] == "FluxKontextPipeline"
    assert model_kinds.is_kontext(FOLDER)
    card = json.loads((FOLDER / "studio.json").read_text())
    assert (card["width"], card["height"], card["steps"], card["kontext"]) == (SIZE, SIZE, 4, True)
    report = diffusers_report(FOLDER)
    assert (report["family"], report["loadable"]) == ("flux1-kontext", True)


def test_held_out_recolour_edits_are_obeyed_through_the_studio(kontext_studio) -> None:
    """The first held-out recolour edits of ``training.evaluate_kontext`` (all 25 obeyed there), run as requests:
    the result shows the edited scene, not a copy of the reference."""
    from training.evaluate_kontext import matches
    from training.kontext_data import eval_edits

    edits = [e for e in eval_edits(4) if e.kind == "recolour"]
    assert len(edits) == 4
    for k, edit in enumerate(edits):
        ref = kontext_studio.store.assets.put_image(Image.fromarray(edit.reference_image(SIZE)))
        record = kontext_studio.generate(GenerationRequest(prompt=edit.prompt, references=(ref,), seed=k))
        assert record["status"] == "done" and record["request"]["references"] == [ref]
        image = np.asarray(Image.open(record["images"][0]["path"]).convert("RGB"))
        assert matches(image, edit.target), f"edit {k} ({edit.prompt!r}) not obeyed"
        assert not matches(image, edit.reference), f"edit {k} copied the reference"


@pytest.mark.browser
@pytest.mark.slow
def test_the_edit_tab_edits_an_uploaded_image_with_an_instruction(tmp_path: Path) -> None:
    """In Chromium: the header names the Kontext model, the Reference box is open and says how to edit; an uploaded
    reference plus "make the … blue" gives a record that carries the reference and shows the edit."""
    from playwright.sync_api import expect

    from studio.toyworld.grammar import Scene, ToyObject
    from studio.toyworld.render import render_scene
    from tests.server import AppServer
    from tests.test_app import browser_page, latest_records, record_image
    from training.evaluate_kontext import matches

    reference = Scene((ToyObject("red", "circle", "top left"),), "white")
    target = Scene((ToyObject("blue", "circle", "top left"),), "white")
    upload = tmp_path / "reference.png"
    Image.fromarray(render_scene(reference, SIZE, seed=1).image).save(upload)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    server = AppServer(data_dir, env={"STUDIO_MODEL": str(FOLDER)})
    try:
        with browser_page(tmp_path, {"width": 1440, "height": 900}) as page:
            page.goto(server.url + "/")
            expect(page.locator("#generate")).to_be_visible(timeout=30_000)
            expect(page.locator("#header")).to_contain_text("flux-mini-kontext")
            page.get_by_role("tab", name="Edit").click()
            expect(page.locator("#reference_note")).to_contain_text("describe the change in the prompt")
            page.locator("#edit_reference input[type=file]").set_input_files(str(upload))
            expect(page.locator("#edit_reference img")).to_be_visible(timeout=15_000)
            page.locator("#prompt textarea").fill("make the circle blue")
            page.locator("#seed input").fill("0")
            page.locator("#generate").click()
            expect(page.locator("#status")).to_contain_text("Done", timeout=180_000)
            page.screenshot(path=str(tmp_path / "kontext_edit.png"))
            shutil.copy(tmp_path / "kontext_edit.png", Path("/tmp/kontext_edit.png"))
        record = latest_records(server, 1)[0]
        image = np.asarray(record_image(server, record).convert("RGB"))
    finally:
        server.close()
    assert len(record["request"]["references"]) == 1
    assert matches(image, target), "the instruction was not obeyed"
