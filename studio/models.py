"""Which model a name means, where it loads from, and its defaults (steps, guidance, size)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from studio.errors import ModelMissing
from studio.settings import PROJECT_ROOT, Settings

HUB_MODELS = ("black-forest-labs/FLUX.1-schnell", "black-forest-labs/FLUX.1-dev")


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


@dataclass(frozen=True)
class ModelLocation:
    """A resolved model: the string to hand to ``from_pretrained`` and whether it is a hub id."""

    name: str
    source: str
    is_hub: bool


def locate(name: str, settings: Settings) -> ModelLocation:
    """Resolve a model name: the configured model, a folder under the model roots, or a known hub id."""
    name = (name or settings.model).strip()
    if name in HUB_MODELS or (name == settings.model and _looks_like_hub_id(name)):
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
    if not (path / "model_index.json").is_file():
        raise ModelMissing(
            f"no diffusers Flux model at {path} (model_index.json missing) — set STUDIO_MODEL to a model folder, "
            f"to {HUB_MODELS[0]}, or rebuild the embedded one with `python -m training.build`"
        )
    return ModelLocation(name, str(path), False)


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not Path(name).exists() and not name.startswith((".", "/", "~"))


def defaults_for(location: ModelLocation, guidance_embeds: bool) -> ModelDefaults:
    """Defaults from the folder's ``studio.json`` if present, else schnell-like or dev-like by guidance embedding."""
    if not location.is_hub:
        card = Path(location.source) / "studio.json"
        if card.is_file():
            data = json.loads(card.read_text())
            return ModelDefaults(
                int(data["width"]), int(data["height"]), int(data["steps"]), float(data["guidance"]),
                int(data.get("max_sequence_length", 512)), bool(data.get("guidance_distilled", True)),
            )
    return DEV if guidance_embeds else SCHNELL
