"""What the operator's model picker offers, and each model's defaults — from configs and headers, never the weights.

``model_choices`` lists the models this studio serves: ``Settings.allowed_models`` (the resident one first), then
the models found in the STUDIO_MODEL_DIRS folders (``catalog.scan_model_dirs``); a model that cannot load is listed
with the reason and marked not ``loadable``. ``model_defaults`` reads a model's size/steps/guidance from its
``studio.json`` (``catalog.defaults_for``), telling dev-like from schnell-like by the transformer config's
``guidance_embeds`` (or the file header). Torch-free: the UI imports it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from studio.core.errors import StudioError
from studio.core.settings import Settings, model_key
from studio.models import families, kinds
from studio.models.catalog import ModelDefaults, ModelLocation, defaults_for, locate, scan_model_dirs


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the picker: ``name`` is what a request's ``model`` takes, ``label`` what a person reads."""

    name: str
    label: str
    loadable: bool = True
    reason: str | None = None  # why it cannot load (None when it can)
    kontext: bool = False  # takes reference images (FLUX.1 Kontext, FLUX.2)
    resident: bool = False  # the model loaded now (or STUDIO_MODEL before the first load)
    family: str = ""  # flux1, flux1-kontext, flux2, flux2-klein (empty when it is not known without loading)


def model_choices(settings: Settings, resident: str = "") -> list[ModelChoice]:
    """The models this studio serves, the resident one first; unloadable ones carry the reason."""
    resident_key = model_key(resident or settings.model)
    names = sorted(settings.allowed_models, key=lambda name: model_key(name) != resident_key)  # stable: resident first
    choices = [_allowed_choice(name, settings, model_key(name) == resident_key) for name in names]
    seen = {model_key(choice.name) for choice in choices}
    for candidate in scan_model_dirs(settings):
        key = model_key(candidate.name)
        if key in seen:
            continue
        seen.add(key)
        reason = candidate.reason if not candidate.loadable else None
        kontext = candidate.family in ("flux1-kontext", *families.FLUX2_FAMILIES) or _kontext_folder(
            Path(candidate.name)
        )
        choices.append(
            ModelChoice(
                candidate.name, candidate.label, reason is None, reason, kontext, key == resident_key, candidate.family
            )
        )
    return _unique_labels(choices)


def model_defaults(name: str, settings: Settings) -> ModelDefaults:
    """The defaults of a served model (``check_model`` refuses any other), read without loading it."""
    name = (name or settings.model).strip()
    settings.check_model(name)
    location = locate(name, settings.with_overrides(model=name))
    return defaults_for(location, guidance_embeds(location))


def find_choice(choices: list[ModelChoice], name: str) -> ModelChoice | None:
    """The entry whose model is ``name`` (same folder or hub id), None when the studio does not serve it."""
    key = model_key(name)
    return next((choice for choice in choices if choice.name == name or model_key(choice.name) == key), None)


def guidance_embeds(location: ModelLocation) -> bool:
    """Whether the model has a guidance embedding (dev-like): the transformer config, the file header, or the hub
    id's name (schnell has none)."""
    if location.is_hub:
        return "schnell" not in location.source.lower()
    if location.files is not None:
        if "guidance_embeds" in location.files.overrides:
            return bool(location.files.overrides["guidance_embeds"])
        return location.files.variant != "schnell"
    config = _json(Path(location.source) / "transformer" / "config.json")
    return bool(config.get("guidance_embeds", False))


def _allowed_choice(name: str, settings: Settings, resident: bool) -> ModelChoice:
    label = Path(name).name or name
    try:
        location = locate(name, settings.with_overrides(model=name))
    except StudioError as exc:
        return ModelChoice(name, label, False, str(exc), False, resident)
    family = families.family_of(location) or ""
    takes_references = kinds.is_kontext(location.card_dir) or family in families.FLUX2_FAMILIES
    return ModelChoice(name, label, True, None, takes_references, resident, family)


def _kontext_folder(path: Path) -> bool:
    return path.is_dir() and kinds.is_kontext(path)


def _unique_labels(choices: list[ModelChoice]) -> list[ModelChoice]:
    """Two models with the same folder name are told apart by the full name."""
    labels = [choice.label for choice in choices]
    return [
        choice if labels.count(choice.label) == 1 else ModelChoice(**{**choice.__dict__, "label": choice.name})
        for choice in choices
    ]


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
