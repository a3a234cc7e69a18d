"""Which FLUX family a model belongs to, told without loading it.

- ``flux1`` (``FluxPipeline``, FLUX.1-dev/schnell, flux-mini): our own sampling loop.
- ``flux1-kontext`` (``FluxKontextPipeline``): our loop with reference tokens.
- ``flux2`` (``Flux2Pipeline``, FLUX.2 [dev]: Mistral text encoder, embedded guidance).
- ``flux2-klein`` (``Flux2KleinPipeline``, FLUX.2 [klein]: Qwen3 text encoder; ``is_distilled`` models ignore
  guidance, base models take it as classifier-free guidance).

A diffusers folder says it in ``model_index.json`` ``_class_name`` (or its transformer config's); a hub id by its
name (``…FLUX.2…``, ``…klein…``), since nothing is downloaded before loading. Single-file FLUX.2 transformers are
told by their header (``studio.models.files``) and are refused there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FLUX1, FLUX1_KONTEXT, FLUX2, FLUX2_KLEIN = "flux1", "flux1-kontext", "flux2", "flux2-klein"
FLUX2_FAMILIES = (FLUX2, FLUX2_KLEIN)
PIPELINES = {
    "FluxPipeline": FLUX1,
    "FluxImg2ImgPipeline": FLUX1,
    "FluxInpaintPipeline": FLUX1,
    "FluxKontextPipeline": FLUX1_KONTEXT,
    "Flux2Pipeline": FLUX2,
    "Flux2KleinPipeline": FLUX2_KLEIN,
}
PIPELINE_CLASSES = {FLUX2: "Flux2Pipeline", FLUX2_KLEIN: "Flux2KleinPipeline"}
LABELS = {FLUX1: "FLUX.1", FLUX1_KONTEXT: "FLUX.1 Kontext", FLUX2: "FLUX.2 [dev]", FLUX2_KLEIN: "FLUX.2 [klein]"}


def folder_family(folder: Path | str | None) -> str | None:
    """The family of a diffusers folder from ``model_index.json`` (or the transformer config); None when unknown."""
    if folder is None:
        return None
    folder = Path(folder)
    index = read_json(folder / "model_index.json")
    pipeline = str(index.get("_class_name", ""))
    if pipeline in PIPELINES:
        return PIPELINES[pipeline]
    if pipeline.startswith("Flux2"):
        return FLUX2
    transformer = str(read_json(folder / "transformer" / "config.json").get("_class_name", ""))
    if transformer.startswith("Flux2"):
        return FLUX2_KLEIN if "Qwen" in str(index.get("text_encoder", "")) else FLUX2
    if transformer == "FluxTransformer2DModel" or pipeline.startswith("Flux"):
        return FLUX1
    return None


def hub_family(repo_id: str) -> str:
    """The family a hub id names: ``…FLUX.2…klein…`` → flux2-klein, ``…FLUX.2…`` → flux2, else flux1."""
    name = repo_id.lower().replace("_", ".").replace("-", ".")
    if "flux.2" in name or "flux2" in name:
        return FLUX2_KLEIN if "klein" in name else FLUX2
    return FLUX1_KONTEXT if "kontext" in name else FLUX1


def family_of(location: Any) -> str:
    """The family of a ``ModelLocation`` (hub id, diffusers folder or model files); flux1 when nothing says more."""
    if getattr(location, "is_hub", False):
        return hub_family(location.source)
    if getattr(location, "files", None) is not None:
        return FLUX1  # single files and split parts: FLUX.1 only (FLUX.2 files are refused by studio.models.files)
    return folder_family(location.source) or FLUX1


def is_flux2(family: str | None) -> bool:
    """True for the FLUX.2 families (run through ``studio.engine.flux2``)."""
    return family in FLUX2_FAMILIES


def pipeline_family(pipe: Any) -> str | None:
    """The family of a loaded pipeline, from its class name (None for anything else)."""
    return PIPELINES.get(type(pipe).__name__) if pipe is not None else None


def is_distilled(pipe: Any) -> bool:
    """A step-distilled FLUX.2 [klein] pipeline (``is_distilled`` in its config): guidance has no effect."""
    return bool(getattr(getattr(pipe, "config", None), "is_distilled", False))


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, or {} when missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
