"""Settings resolved once at start: command-line flags > environment variables > defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from studio.core.errors import InvalidRequest, StudioError

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_MODEL = "assets/models/flux-mini"
DEVICES = ("auto", "cpu", "cuda", "mps")
MEMORY_MODES = ("none", "model", "sequential", "group", "auto")


@dataclass(frozen=True)
class Settings:
    """Where data lives and how the model runs. Paths are absolute."""

    model: str = DEFAULT_MODEL
    models: tuple[str, ...] = ()  # STUDIO_MODELS: further models a request may name (see allowed_models)
    model_dirs: tuple[Path, ...] = ()  # STUDIO_MODEL_DIRS: folders whose models are served (models.scan_model_dirs)
    data_dir: Path = PROJECT_ROOT / "gallery"
    db_url: str = ""
    lora_dirs: tuple[Path, ...] = ()
    device: str = "auto"
    memory: str = "auto"
    quant: str = "none"
    annotators: Path | None = None
    threads: int = 0
    queue_size: int = 16
    controlnets: dict[str, str] = field(default_factory=dict)
    attention_backend: str = ""  # STUDIO_ATTENTION_BACKEND: a diffusers attention backend; "" = its default
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images_dir(self) -> Path:
        """Generated images."""
        return self.data_dir / "images"

    @property
    def model_roots(self) -> tuple[Path, ...]:
        """Folders a request may name models from (beyond the configured STUDIO_MODEL)."""
        return (PROJECT_ROOT / "assets" / "models", self.data_dir / "models", *self.model_dirs)

    @property
    def allowed_models(self) -> tuple[str, ...]:
        """The models a request may name: the resident STUDIO_MODEL (``--model``) first, then STUDIO_MODELS."""
        return tuple(dict.fromkeys((self.model, *self.models)))

    def model_allowed(self, name: str) -> bool:
        """Whether ``name`` (empty: the resident model) is one of ``allowed_models`` — the same folder or hub id."""
        key = model_key(name.strip() or self.model)
        return any(model_key(allowed) == key for allowed in self.allowed_models) or self._in_model_dirs(key)

    def _in_model_dirs(self, key: str) -> bool:
        """Whether a resolved model path lies in a STUDIO_MODEL_DIRS folder (the operator's model shelf)."""
        path = Path(key)
        return path.is_absolute() and any(path.is_relative_to(folder.resolve()) for folder in self.model_dirs)

    def check_model(self, name: str) -> None:
        """Refuse (InvalidRequest) a model the operator has not allowed; choosing models is the operator's call."""
        if not self.model_allowed(name):
            raise InvalidRequest(
                f"model {name!r} is not served here — this studio serves {', '.join(self.allowed_models)}; the "
                "operator can allow more with STUDIO_MODELS (':'-separated model folders, files or hub ids) or "
                "STUDIO_MODEL_DIRS (':'-separated folders of models)"
            )

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some values replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def model_key(name: str) -> str:
    """What a model name means, for comparing names: an existing folder's resolved path, else the stripped name."""
    name = name.strip()
    path = PROJECT_ROOT / Path(name).expanduser()  # relative names are relative to the project, as in models.locate
    try:
        return str(path.resolve()) if name and path.exists() else name
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a name too long for a path, a NUL byte
        return name


def _path(value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (Path.cwd() / path)


def from_env(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from STUDIO_* variables (docs/cli.md), then explicit overrides (flags)."""
    env = dict(os.environ if env is None else env)
    data_dir = _path(env["STUDIO_DATA_DIR"]) if env.get("STUDIO_DATA_DIR") else PROJECT_ROOT / "gallery"
    if overrides.get("data_dir") is not None:
        data_dir = _path(str(overrides.pop("data_dir")))
    if env.get("STUDIO_DATA_DIR") is None and Path("/data").is_dir() and env.get("SPACE_ID"):
        data_dir = Path("/data/flux-studio")  # persistent storage on Hugging Face Spaces
    lora_env = env.get("STUDIO_LORA_DIRS")
    lora_dirs = (
        tuple(_path(p) for p in lora_env.split(":") if p)
        if lora_env
        else (PROJECT_ROOT / "assets" / "loras", data_dir / "loras")
    )
    device = env.get("STUDIO_DEVICE", "auto")
    if device not in DEVICES and not device.startswith("cuda:"):
        raise StudioError(f"STUDIO_DEVICE={device!r} is unknown — use auto, cpu, cuda, cuda:N or mps")
    memory = env.get("STUDIO_MEMORY", "auto")
    if memory not in MEMORY_MODES:
        raise StudioError(f"STUDIO_MEMORY={memory!r} is unknown — use one of {', '.join(MEMORY_MODES)}")
    settings = Settings(
        model=env.get("STUDIO_MODEL") or DEFAULT_MODEL,
        models=tuple(name.strip() for name in env.get("STUDIO_MODELS", "").split(":") if name.strip()),
        model_dirs=tuple(_path(p.strip()) for p in env.get("STUDIO_MODEL_DIRS", "").split(":") if p.strip()),
        data_dir=data_dir,
        db_url=env.get("STUDIO_DB_URL") or f"sqlite:///{data_dir / 'studio.db'}",
        lora_dirs=lora_dirs,
        device=device,
        memory=memory,
        quant=env.get("STUDIO_QUANT", "none"),
        annotators=_path(env["STUDIO_ANNOTATORS"]) if env.get("STUDIO_ANNOTATORS") else None,
        threads=int(env.get("STUDIO_THREADS", "0") or 0),
        attention_backend=env.get("STUDIO_ATTENTION_BACKEND", "").strip().lower(),
        controlnets={
            kind: env[f"STUDIO_CONTROLNET_{kind.upper()}"]
            for kind in ("canny", "depth", "pose", "union")
            if env.get(f"STUDIO_CONTROLNET_{kind.upper()}")
        },
    )
    return settings.with_overrides(**overrides)
