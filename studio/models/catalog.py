"""Which model a name means, where it loads from, and its defaults (steps, guidance, size).

A model is a hub id, a diffusers folder (``model_index.json``), or files (``studio.models.files``): a FLUX.1
transformer file (BFL/ComfyUI layout, bf16/fp8, GGUF) or a folder of ComfyUI split parts. FLUX.2 models
(``Flux2Pipeline`` / ``Flux2KleinPipeline``) load from diffusers folders and hub ids (``studio.models.families``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from studio.core.errors import ModelMissing
from studio.core.settings import DEFAULT_MODEL, PROJECT_ROOT, Settings
from studio.models import families
from studio.models.files import ModelFiles, resolve
from studio.models.headers import PICKLE_SUFFIXES, WEIGHT_SUFFIXES, UnreadableModel, pieces, read_header
from studio.models.inspection import report

HUB_MODELS = ("black-forest-labs/FLUX.1-schnell", "black-forest-labs/FLUX.1-dev")
FLUX2_HUB_MODELS = (
    "black-forest-labs/FLUX.2-klein-4B",
    "black-forest-labs/FLUX.2-klein-9B",
    "black-forest-labs/FLUX.2-dev",
)
MAX_SCANNED = 500  # entries looked at in one model folder


@dataclass(frozen=True)
class ModelDefaults:
    """What a model does best when the user leaves a value unset."""

    width: int
    height: int
    steps: int
    guidance: float
    max_sequence_length: int
    guidance_distilled: bool = True  # False: the guidance embedding is present but untrained (the value is ignored)


SCHNELL = ModelDefaults(1024, 1024, 4, 0.0, 256)
DEV = ModelDefaults(1024, 1024, 28, 3.5, 512)
KLEIN = ModelDefaults(1024, 1024, 4, 1.0, 512, guidance_distilled=False)  # step-distilled: guidance has no effect
KLEIN_BASE = ModelDefaults(1024, 1024, 50, 4.0, 512)  # guidance = classifier-free guidance scale
FLUX2_DEV = ModelDefaults(1024, 1024, 50, 4.0, 512)  # embedded guidance


@dataclass(frozen=True)
class ModelLocation:
    """A resolved model: the hub id or path, whether it is a hub id, and (for model files) which files make it."""

    name: str
    source: str
    is_hub: bool
    files: ModelFiles | None = None  # None: ``from_pretrained(source)`` (a hub id or a diffusers folder)

    @property
    def card_dir(self) -> Path | None:
        """The folder whose ``studio.json`` holds the model's defaults (None for hub ids)."""
        if self.is_hub:
            return None
        return self.files.config_dir if self.files is not None else Path(self.source)


def locate(name: str, settings: Settings) -> ModelLocation:
    """Resolve a model name: the configured model, a folder under the model roots, or a known hub id."""
    name = (name or settings.model).strip()
    if name in HUB_MODELS or name in FLUX2_HUB_MODELS or (name == settings.model and _looks_like_hub_id(name)):
        return ModelLocation(name, name, True)
    path = Path(name).expanduser()
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    path = path.resolve()
    trusted = name == settings.model  # the operator's own choice (flag or STUDIO_MODEL)
    roots = [r.resolve() for r in settings.model_roots]
    if not trusted and not any(path.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise ModelMissing(f"model {name!r} is outside the model folders — put it under {allowed} or set STUDIO_MODEL")
    if (path / "model_index.json").is_file():
        return ModelLocation(name, str(path), False)
    if not path.exists():
        fix = (
            "rebuild the embedded one with `python -m training.build`"
            if name == DEFAULT_MODEL
            else (
                f"set STUDIO_MODEL to a diffusers folder, a FLUX.1 .safetensors or .gguf file, a folder of ComfyUI split "
                f"files (transformer, ae, clip_l, t5xxl) or a hub id such as {HUB_MODELS[0]}"
            )
        )
        raise ModelMissing(f"no model at {path} — {fix}")
    return ModelLocation(name, str(path), False, resolve(path))  # ModelMissing naming what to add


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return (len(parts) == 2 and all(parts) and not Path(name).exists() and not name.startswith((".", "/", "~"))
            and not name.lower().endswith(WEIGHT_SUFFIXES))  # fmt: skip


def defaults_for(location: ModelLocation, guidance_embeds: bool) -> ModelDefaults:
    """Defaults from the folder's ``studio.json`` if present; else, for FLUX.2, [klein] (step-distilled or base) or
    [dev]; else schnell-like or dev-like by guidance embedding."""
    if location.card_dir is not None:
        card = location.card_dir / "studio.json"
        if card.is_file():
            data = json.loads(card.read_text())
            return ModelDefaults(
                int(data["width"]),
                int(data["height"]),
                int(data["steps"]),
                float(data["guidance"]),
                int(data.get("max_sequence_length", 512)),
                bool(data.get("guidance_distilled", True)),
            )
    family = families.family_of(location)
    if family == families.FLUX2_KLEIN:
        return KLEIN if _klein_distilled(location) else KLEIN_BASE
    if family == families.FLUX2:
        return FLUX2_DEV
    return DEV if guidance_embeds else SCHNELL


def _klein_distilled(location: ModelLocation) -> bool:
    """A step-distilled [klein]: ``is_distilled`` in the folder's model index; a hub id unless it names a base model."""
    if location.is_hub:
        return "base" not in location.source.lower()
    index = location.card_dir / "model_index.json" if location.card_dir is not None else None
    try:
        return bool(json.loads(index.read_text()).get("is_distilled", False)) if index else False
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class ModelCandidate:
    """A model found in a STUDIO_MODEL_DIRS folder, for a picker: ``name`` is what STUDIO_MODEL or a request takes,
    ``reason`` why it cannot load (or a note)."""

    name: str
    label: str
    format: str
    family: str
    kind: str
    dtype: str
    loadable: bool
    reason: str | None


def scan_model_dirs(settings: Settings) -> list[ModelCandidate]:
    """Every model in the STUDIO_MODEL_DIRS folders: diffusers folders, transformer files (also in ComfyUI's
    ``unet``/``diffusion_models``/``checkpoints``) and folders of split parts; unusable files with the reason.
    Headers only: nothing is loaded. VAE/CLIP/T5 files are parts, not models, and are not listed."""
    found = []
    for folder in settings.model_dirs:
        for path in _model_paths(folder):
            found.append(_candidate(path, folder))
    return found


def _model_paths(folder: Path) -> list[Path]:
    if (folder / "model_index.json").is_file():
        return [folder]
    paths = []
    for entry in _entries(folder):
        if not entry.is_dir():
            paths += [entry] if _is_model_file(entry) else []
        elif (entry / "model_index.json").is_file():
            paths.append(entry)
        else:
            files = [path for path in _entries(entry) if path.is_file() and _is_model_file(path)]
            split = len(files) == 1 and entry.name not in ("unet", "diffusion_models", "checkpoints")
            paths += [entry] if split else files  # one transformer: a folder of split parts; several: each file
    return paths


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())[:MAX_SCANNED]
    except OSError:
        return []


def _is_model_file(path: Path) -> bool:
    """A transformer file, or a weights/pickle file the studio cannot read (listed with the reason)."""
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return True
    if suffix not in WEIGHT_SUFFIXES:
        return False
    try:
        return any(piece.role == "transformer" for piece in pieces(read_header(path)))
    except UnreadableModel:
        return True


def _candidate(path: Path, folder: Path) -> ModelCandidate:
    label = str(path.relative_to(folder)) if path != folder else path.name
    try:
        found = report(path)
    except UnreadableModel as exc:
        return ModelCandidate(str(path), label, "unknown", "unknown", "unknown", "unknown", False, str(exc))
    return ModelCandidate(str(path), label, found["format"], found["family"], found["kind"], found["dtype"],
                          bool(found["loadable"]), found["reason"])  # fmt: skip
