"""Choosing the model is the operator's call: STUDIO_MODELS lists what a request may name (default: STUDIO_MODEL
alone), and a model that fails to load never costs the resident one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from studio.core import settings as settings_mod
from studio.core.errors import InvalidRequest, ModelMissing
from studio.core.request import GenerationRequest
from tests.conftest import MODEL

PROMPT = "a red circle in the top left on a white background"


def linked_copy(target: Path) -> Path:
    """Another model folder with the embedded model's files (symlinked file by file: a distinct folder, no copying)."""
    shutil.copytree(MODEL, target, copy_function=os.symlink)
    return target


def pixels(record: dict) -> bytes:
    """The first image's pixels (the PNG's bytes also hold the request, model name included)."""
    from PIL import Image

    with Image.open(record["images"][0]["path"]) as image:
        return image.tobytes()


def records(studio) -> int:  # noqa: ANN001
    return studio.store.list()[1]


def test_allowed_models_come_from_studio_model_and_studio_models():
    settings = settings_mod.from_env({"STUDIO_MODEL": str(MODEL), "STUDIO_MODELS": "org/one: :/models/two:"})
    assert settings.allowed_models == (str(MODEL), "org/one", "/models/two")
    assert settings_mod.from_env({}).allowed_models == (settings_mod.DEFAULT_MODEL,)
    flagged = settings_mod.from_env({"STUDIO_MODELS": "org/one"}, model="org/resident")
    assert flagged.allowed_models == ("org/resident", "org/one")  # --model is the resident model


def test_the_same_folder_by_another_spelling_is_the_same_model():
    settings = settings_mod.from_env({"STUDIO_MODEL": "assets/models/flux-mini"})
    assert settings.model_allowed(str(MODEL)) and settings.model_allowed("") and settings.model_allowed(" ")
    assert not settings.model_allowed("assets/models/flux-mini-controlnet-union")
    assert not settings.model_allowed("black-forest-labs/FLUX.1-dev")


def test_by_default_a_request_for_another_model_is_refused_and_nothing_loads(studio, tmp_path):
    other = linked_copy(tmp_path / "other-model")  # would otherwise be a perfectly loadable model
    loads, resident = studio.engine.load_count, studio.engine.model_name
    for name in (str(other), "black-forest-labs/FLUX.1-dev", "/etc", "assets/models/flux-mini-controlnet-union"):
        request = GenerationRequest(prompt=PROMPT, model=name, seed=1, steps=1)
        with pytest.raises(InvalidRequest, match="STUDIO_MODELS") as err:
            studio.generate(request)
        assert repr(name) in str(err.value)
        with pytest.raises(InvalidRequest, match="STUDIO_MODELS"):
            studio.preview(request)
        with pytest.raises(InvalidRequest, match="STUDIO_MODELS"):
            studio.engine.ensure(name)
    assert (studio.engine.load_count, studio.engine.model_name) == (loads, resident)
    assert records(studio) == 0


def test_replaying_a_record_of_a_model_no_longer_allowed_is_refused(studio):
    from PIL import Image

    old = GenerationRequest(prompt=PROMPT, model="black-forest-labs/FLUX.1-dev", seed=1, steps=1, width=64,
                            height=64, guidance=3.5)  # fmt: skip
    record = studio.store.add(request=old.to_dict(), images=[Image.new("RGB", (64, 64))], seeds=[1], timings={})
    loads = studio.engine.load_count
    with pytest.raises(InvalidRequest, match="STUDIO_MODELS"):
        studio.replay(record["id"])
    assert records(studio) == 1 and studio.engine.load_count == loads


@pytest.fixture(scope="module")
def switching(tmp_path_factory):
    """A Studio whose operator allows a second model and a broken one (STUDIO_MODELS)."""
    from studio.engine.engine import Engine
    from studio.service import Studio
    from studio.store.store import Store

    root = tmp_path_factory.mktemp("allow")
    second = linked_copy(root / "second")
    broken = linked_copy(root / "broken")
    (broken / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    env = {"STUDIO_MODEL": str(MODEL), "STUDIO_MODELS": f"{second}:{broken}", "STUDIO_DATA_DIR": str(root / "data")}
    settings = settings_mod.from_env(env, threads=1)
    engine = Engine(settings)
    engine.ensure()
    store = Store(settings.db_url, settings.data_dir)
    yield Studio(settings, engine=engine, store=store), second, broken
    store.close()


def test_a_broken_allowed_model_leaves_the_resident_one_generating(switching):
    studio, _second, broken = switching
    engine = studio.engine
    resident, loads = engine.model_name, engine.load_count
    with pytest.raises(ModelMissing, match="missing or corrupt"):
        studio.generate(GenerationRequest(prompt=PROMPT, model=str(broken), seed=1, steps=1))
    assert engine.pipe is not None and (engine.model_name, engine.load_count) == (resident, loads)
    record = studio.generate(GenerationRequest(prompt=PROMPT, model=resident, seed=1, steps=1))
    assert record["status"] == "done" and record["request"]["model"] == resident
    assert engine.load_count == loads  # generated on the pipeline that stayed resident


def test_a_model_listed_in_studio_models_is_accepted(switching):
    studio, second, _broken = switching
    resident = studio.engine.model_name
    base = studio.generate(GenerationRequest(prompt=PROMPT, seed=4, steps=1))
    loads = studio.engine.load_count
    switched = studio.generate(GenerationRequest(prompt=PROMPT, model=str(second), seed=4, steps=1))
    assert switched["request"]["model"] == str(second) and studio.engine.model_name == str(second)
    assert studio.engine.load_count == loads + 1
    assert pixels(switched) == pixels(base)  # the same weights in another folder
    assert pixels(studio.replay(switched["id"])) == pixels(base)
    studio.engine.ensure()  # back to the resident model for the rest of the module
    assert studio.engine.model_name == resident
