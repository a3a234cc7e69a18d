"""Settings resolved once at start: flags > environment variables > defaults, every value checked in ``from_env``."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.core import settings as settings_mod
from studio.core.errors import StudioError
from studio.core.settings import Settings, from_env

# field, variable, a valid value as set in the environment, what it becomes, a flag value (typed) that wins over it
FIELDS = [
    ("coalesce_ms", "STUDIO_COALESCE_MS", "12.5", 12.5, 40.0),
    ("compile", "STUDIO_COMPILE", "force", "force", "1"),
    ("lora_max_rank", "STUDIO_LORA_MAX_RANK", "64", 64, 32),
    ("max_memory_mb", "STUDIO_MAX_MEMORY_MB", "8000", 8000.0, 400.0),
    ("min_free_mb", "STUDIO_MIN_FREE_MB", "0", 0.0, 50.0),
    ("gpu_duration_s", "STUDIO_GPU_DURATION", "45", 45, 300),
    ("zero_gpu", "SPACES_ZERO_GPU", "True", True, False),
]


@pytest.mark.parametrize(("name", "var", "raw", "value", "flag"), FIELDS, ids=[f[0] for f in FIELDS])
def test_flags_win_over_the_environment_which_wins_over_defaults(name, var, raw, value, flag):
    assert getattr(from_env({}), name) == getattr(Settings(), name)  # the default
    assert getattr(from_env({var: raw}), name) == value
    assert getattr(from_env({var: raw}, **{name: flag}), name) == flag
    assert getattr(from_env({var: raw}, **{name: None}), name) == value  # an unset flag leaves the variable


def test_defaults():
    settings = from_env({})
    assert (settings.coalesce_ms, settings.compile, settings.lora_max_rank) == (0.0, "0", 128)
    assert (settings.max_memory_mb, settings.min_free_mb, settings.gpu_duration_s, settings.zero_gpu) == (
        None,
        200.0,
        120,
        False,
    )


def test_the_app_coalesces_by_default_except_on_zero_gpu():
    assert from_env({}, app=True).coalesce_ms == settings_mod.APP_COALESCE_MS == 30
    assert from_env({"STUDIO_COALESCE_MS": "0"}, app=True).coalesce_ms == 0
    assert from_env({"SPACES_ZERO_GPU": "true"}, app=True).coalesce_ms == 0
    assert from_env({}).coalesce_ms == 0  # the CLI


@pytest.mark.parametrize(
    ("raw", "mode"),
    [("", "0"), ("0", "0"), ("off", "0"), ("1", "1"), ("TRUE", "1"), ("yes", "1"), (" Force ", "force")],
)
def test_compile_spellings(raw, mode):
    assert from_env({"STUDIO_COMPILE": raw}).compile == mode


def test_zero_gpu_is_read_as_spaces_reads_it():
    for raw in ("1", "t", "true", "TRUE"):
        assert from_env({"SPACES_ZERO_GPU": raw}).zero_gpu
    for raw in ("", "0", "false", "yes"):
        assert not from_env({"SPACES_ZERO_GPU": raw}).zero_gpu


INVALID = [
    ("STUDIO_COALESCE_MS", "soon", r"STUDIO_COALESCE_MS='soon' is not a number — use milliseconds"),
    ("STUDIO_COALESCE_MS", "-5", r"STUDIO_COALESCE_MS='-5' is not a number — use milliseconds"),
    ("STUDIO_COMPILE", "maybe", r"STUDIO_COMPILE='maybe' is unknown — use 1 \(CUDA only\), force"),
    ("STUDIO_LORA_MAX_RANK", "0", r"STUDIO_LORA_MAX_RANK='0' must be a positive whole number — e.g. 128"),
    ("STUDIO_LORA_MAX_RANK", "big", r"STUDIO_LORA_MAX_RANK='big' must be a positive whole number"),
    ("STUDIO_MAX_MEMORY_MB", "lots", r"STUDIO_MAX_MEMORY_MB='lots' is not a positive number of megabytes — e.g."),
    ("STUDIO_MAX_MEMORY_MB", "0", r"STUDIO_MAX_MEMORY_MB='0' is not a positive number"),
    ("STUDIO_MIN_FREE_MB", "-5", r"STUDIO_MIN_FREE_MB='-5' is not a number of megabytes ≥ 0 — e.g. STUDIO_MIN"),
    ("STUDIO_MIN_FREE_MB", "nan", r"STUDIO_MIN_FREE_MB='nan' is not a number of megabytes"),
    ("STUDIO_GPU_DURATION", "soon", r"STUDIO_GPU_DURATION='soon' must be whole seconds from 1 to 3600 — e.g. 120"),
    ("STUDIO_GPU_DURATION", "7200", r"STUDIO_GPU_DURATION='7200' must be whole seconds"),
    ("STUDIO_DEVICE", "tpu", r"STUDIO_DEVICE='tpu' is unknown — use auto, cpu"),
    ("STUDIO_MEMORY", "lots", r"STUDIO_MEMORY='lots' is unknown — use one of"),
]


@pytest.mark.parametrize(("var", "raw", "message"), INVALID, ids=[f"{v}={r}" for v, r, _ in INVALID])
def test_an_invalid_value_is_refused_at_start_naming_the_fix(var, raw, message):
    with pytest.raises(StudioError, match=message):
        from_env({var: raw})


def test_an_invalid_flag_value_is_refused_too():
    with pytest.raises(StudioError, match="STUDIO_LORA_MAX_RANK=-1"):
        from_env({}, lora_max_rank=-1)
    with pytest.raises(StudioError, match="STUDIO_COMPILE='sometimes'"):
        from_env({}, compile="sometimes")


# ---- the data folder: --data-dir > STUDIO_DATA_DIR > /data on a Space > gallery ---------------------------------
@pytest.fixture
def spaces_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for a Space's persistent /data."""
    data = tmp_path / "persistent"
    data.mkdir()
    monkeypatch.setattr(settings_mod, "SPACES_DATA", data)
    return data


def test_on_a_space_with_persistent_storage_the_data_goes_there(spaces_data):
    settings = from_env({"SPACE_ID": "someone/studio"})
    assert settings.data_dir == spaces_data / "flux-studio"
    assert settings.db_url == f"sqlite:///{spaces_data / 'flux-studio' / 'studio.db'}"
    assert from_env({}).data_dir == settings_mod.PROJECT_ROOT / "gallery"  # not a Space


def test_data_dir_flag_and_variable_win_over_the_spaces_default(spaces_data, tmp_path):
    flag, var = tmp_path / "flag", tmp_path / "var"
    space = {"SPACE_ID": "someone/studio"}
    assert from_env(space, data_dir=str(flag)).data_dir == flag
    assert from_env(space, data_dir=flag).db_url == f"sqlite:///{flag / 'studio.db'}"
    assert from_env({**space, "STUDIO_DATA_DIR": str(var)}).data_dir == var
    assert from_env({**space, "STUDIO_DATA_DIR": str(var)}, data_dir=str(flag)).data_dir == flag
    assert from_env({"STUDIO_DATA_DIR": str(var)}, data_dir=str(flag)).lora_dirs[-1] == flag / "loras"


def test_app_data_dir_flag_wins_on_a_space(spaces_data, tmp_path, monkeypatch):
    """``python app.py --data-dir X`` on a Space: the settings the app builds use X."""
    import app

    monkeypatch.setenv("SPACE_ID", "someone/studio")
    monkeypatch.delenv("STUDIO_DATA_DIR", raising=False)
    assert app.settings_from_args(app.parse_args([])).data_dir == spaces_data / "flux-studio"
    settings = app.settings_from_args(app.parse_args(["--data-dir", str(tmp_path / "mine")]))
    assert settings.data_dir == tmp_path / "mine" and settings.coalesce_ms == 30
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "env"))
    assert app.settings_from_args(app.parse_args([])).data_dir == tmp_path / "env"
