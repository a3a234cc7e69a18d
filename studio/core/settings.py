"""Settings resolved once at start: command-line flags > environment variables > defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from studio.core.errors import InvalidRequest, StudioError

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_MODEL = "assets/models/flux-mini"
DEVICES = ("auto", "cpu", "cuda", "mps")
MEMORY_MODES = ("none", "model", "sequential", "group", "auto")
COMPILE_MODES = ("0", "1", "force")  # off; on CUDA only; on any device
APP_COALESCE_MS = 30.0  # the server's coalescing window unless STUDIO_COALESCE_MS says otherwise (0 on ZeroGPU)
SPACES_DATA = Path("/data")  # persistent storage on Hugging Face Spaces (when the Space has it)
_TRUE = ("1", "t", "true")  # what ``spaces`` accepts as SPACES_ZERO_GPU=true


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
    coalesce_ms: float = 0.0  # STUDIO_COALESCE_MS: window for batching compatible requests (0 = off)
    compile: str = "0"  # STUDIO_COMPILE: "0" off, "1" regional torch.compile on CUDA, "force" on any device
    lora_max_rank: int = 128  # STUDIO_LORA_MAX_RANK: highest LoRA rank hotswap is prepared for when compiled
    max_memory_mb: float | None = None  # STUDIO_MAX_MEMORY_MB: cap on the memory a generation may plan to use
    min_free_mb: float = 200.0  # STUDIO_MIN_FREE_MB: free disk space needed before generating (0 = no check)
    gpu_duration_s: int = 120  # STUDIO_GPU_DURATION: seconds of ZeroGPU time asked for per generation
    zero_gpu: bool = False  # SPACES_ZERO_GPU (1/t/true, as ``spaces`` reads it): a ZeroGPU Space

    @property
    def extra(self) -> dict[str, Any]:
        """Transitional, read-only: the old free-form values, now typed fields (goes once engine.py reads those)."""
        return {"coalesce_ms": self.coalesce_ms, "compile": self.compile}

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


def from_env(env: Mapping[str, str] | None = None, *, app: bool = False, **overrides: Any) -> Settings:
    """Settings from STUDIO_* variables (docs/cli.md), then explicit overrides (flags); every value checked here.

    ``app``: the server's defaults (coalescing on, ``APP_COALESCE_MS``); the CLI's are the dataclass defaults.
    Overrides of None are ignored; invalid values (from either) raise StudioError naming the fix.
    """
    env = dict(os.environ if env is None else env)
    if overrides.get("data_dir") is not None:  # a flag wins over STUDIO_DATA_DIR and over the Spaces default
        data_dir = _path(str(overrides.pop("data_dir")))
    elif env.get("STUDIO_DATA_DIR"):
        data_dir = _path(env["STUDIO_DATA_DIR"])
    elif env.get("SPACE_ID") and SPACES_DATA.is_dir():
        data_dir = SPACES_DATA / "flux-studio"  # persistent storage on Hugging Face Spaces
    else:
        data_dir = PROJECT_ROOT / "gallery"
    overrides.pop("data_dir", None)
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

    def pick(name: str, var: str) -> Any:
        """The flag's value, else the variable's (None when neither is set)."""
        value = overrides.pop(name, None)
        return value if value is not None else env.get(var)

    zero_gpu = parse_zero_gpu(pick("zero_gpu", "SPACES_ZERO_GPU"))
    coalesce_raw = pick("coalesce_ms", "STUDIO_COALESCE_MS")
    if coalesce_raw is None and app and not zero_gpu:
        coalesce_raw = APP_COALESCE_MS
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
        coalesce_ms=parse_coalesce_ms(coalesce_raw),
        compile=parse_compile(pick("compile", "STUDIO_COMPILE")),
        lora_max_rank=parse_lora_max_rank(pick("lora_max_rank", "STUDIO_LORA_MAX_RANK")),
        max_memory_mb=parse_max_memory_mb(pick("max_memory_mb", "STUDIO_MAX_MEMORY_MB")),
        min_free_mb=parse_min_free_mb(pick("min_free_mb", "STUDIO_MIN_FREE_MB")),
        gpu_duration_s=parse_gpu_duration(pick("gpu_duration_s", "STUDIO_GPU_DURATION")),
        zero_gpu=zero_gpu,
    )
    return settings.with_overrides(**overrides)


# ---- one parser per variable: None (unset) gives the default; anything invalid names the fix ------------------
def _blank(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def parse_coalesce_ms(raw: Any) -> float:
    """STUDIO_COALESCE_MS: milliseconds ≥ 0 (unset or empty: 0, off)."""
    if _blank(raw):
        return 0.0
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = -1.0
    if not 0 <= value < float("inf"):
        raise StudioError(f"STUDIO_COALESCE_MS={raw!r} is not a number — use milliseconds ≥ 0, e.g. 30 (0 = off)")
    return value


def parse_compile(raw: Any) -> str:
    """STUDIO_COMPILE: "0" (also empty/false/off/no), "1" (also true/on/yes) or "force"."""
    value = "0" if _blank(raw) else str(raw).strip().lower()
    if value in ("0", "false", "off", "no"):
        return "0"
    if value in ("1", "true", "on", "yes"):
        return "1"
    if value == "force":
        return "force"
    raise StudioError(f"STUDIO_COMPILE={value!r} is unknown — use 1 (CUDA only), force (any device) or 0")


def parse_lora_max_rank(raw: Any) -> int:
    """STUDIO_LORA_MAX_RANK: a positive whole number (default 128)."""
    if _blank(raw):
        return Settings.lora_max_rank
    try:
        rank = int(raw)
    except (TypeError, ValueError):
        rank = 0
    if rank < 1:
        raise StudioError(f"STUDIO_LORA_MAX_RANK={raw!r} must be a positive whole number — e.g. 128")
    return rank


def parse_max_memory_mb(raw: Any) -> float | None:
    """STUDIO_MAX_MEMORY_MB: a positive number of megabytes, or None (unset: no cap)."""
    if _blank(raw):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = -1.0
    if not 0 < value < float("inf"):
        var = "STUDIO_MAX_MEMORY_MB"
        raise StudioError(f"{var}={raw!r} is not a positive number of megabytes — e.g. {var}=8000, or unset it")
    return value


def parse_min_free_mb(raw: Any) -> float:
    """STUDIO_MIN_FREE_MB: megabytes ≥ 0 (default 200; 0 turns the disk check off)."""
    if _blank(raw):
        return Settings.min_free_mb
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = -1.0
    if not 0 <= value < float("inf"):
        var = "STUDIO_MIN_FREE_MB"
        raise StudioError(f"{var}={raw!r} is not a number of megabytes ≥ 0 — e.g. {var}=200")
    return value


def parse_gpu_duration(raw: Any) -> int:
    """STUDIO_GPU_DURATION: whole seconds from 1 to 3600 (default 120)."""
    if _blank(raw):
        return Settings.gpu_duration_s
    try:
        seconds = int(raw)
    except (TypeError, ValueError):
        seconds = 0
    if not 1 <= seconds <= 3600:
        raise StudioError(f"STUDIO_GPU_DURATION={raw!r} must be whole seconds from 1 to 3600 — e.g. 120")
    return seconds


def parse_zero_gpu(raw: Any) -> bool:
    """SPACES_ZERO_GPU as ``spaces`` reads it: 1, t or true (any case) is on; anything else off."""
    if isinstance(raw, bool):
        return raw
    return raw is not None and str(raw).lower() in _TRUE
