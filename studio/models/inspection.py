"""``python -m studio model inspect PATH``: what a model file or folder is and whether the studio loads it.

Headers and configs only, never the weights. The report: ``format`` (diffusers, single-file, comfy-split, gguf,
nf4, component), ``family`` (flux1, flux1-kontext, flux2, flux2-klein, chroma, unknown), ``kind`` (base, control, fill),
``variant`` (dev: guidance embedding, schnell: none), ``dtype``, ``loadable``, ``reason`` (why not, or a note) and
``parts`` (where each component comes from). A missing path or an unreadable named file is an error (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studio.core.errors import ModelMissing
from studio.models.files import find_transformer, has_weights, read_json, resolve
from studio.models.headers import Header, UnreadableModel, main_dtype, pieces, read_header, transformer_config_facts
from studio.models.kinds import KINDS_BY_WIDTH

FLUX2_FAMILIES = ("flux2", "flux2-klein")

PIPELINE_FAMILIES = {
    "FluxKontextPipeline": "flux1-kontext",
    "Flux2Pipeline": "flux2",
    "Flux2KleinPipeline": "flux2-klein",
}
TRANSFORMER_FAMILIES = {"FluxTransformer2DModel": "flux1", "Flux2Transformer2DModel": "flux2",
                        "ChromaTransformer2DModel": "chroma"}  # fmt: skip
WEIGHTED = ("transformer", "vae", "text_encoder", "text_encoder_2")


def report(path: Path | str) -> dict[str, Any]:
    """The inspection report of a model file or folder; UnreadableModel (exit 2) for a missing or unreadable path."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UnreadableModel(
            f"no such file or folder: {path} — give the path of a model file or folder (hub ids "
            "load with STUDIO_MODEL=org/name and need no inspecting)"
        )
    if path.is_dir() and (path / "model_index.json").is_file():
        return diffusers_report(path)
    described = _describe_file(read_header(path)) if path.is_file() else _describe_folder(path)
    try:
        files = resolve(path)
    except UnreadableModel:
        raise
    except ModelMissing as exc:
        return {"path": str(path), **described, "loadable": False, "reason": str(exc), "parts": {}}
    return {"path": str(path), "format": files.format, "family": _family(files.family, path), "kind": files.kind,
            "variant": files.variant, "dtype": files.dtype, "loadable": True, "reason": None,
            "parts": files.describe()}  # fmt: skip


def _describe_file(header: Header, split: bool = False) -> dict[str, Any]:
    found = pieces(header)
    transformer = next((p for p in found if p.role == "transformer"), None)
    if transformer is None:
        piece = found[0] if found else None
        return {
            "format": "component" if piece else "unknown",
            "family": "unknown",
            "kind": piece.role if piece else "unknown",
            "variant": "",
            "dtype": piece.dtype if piece else "unknown",
        }
    if transformer.layout == "nf4":
        fmt = "nf4"
    else:
        fmt = "comfy-split" if split else "gguf" if header.container == "gguf" else "single-file"
    facts = transformer.facts
    kind = "unknown"
    if facts:
        kind = KINDS_BY_WIDTH.get(int(facts["in_channels"]) // max(1, int(facts["out_channels"])), "unknown")
    variant = ("dev" if facts["guidance_embeds"] else "schnell") if facts else ""
    return {
        "format": fmt,
        "family": _family(transformer.family, header.path),
        "kind": kind,
        "variant": variant,
        "dtype": transformer.dtype,
    }


def _describe_folder(folder: Path) -> dict[str, Any]:
    try:
        header, _piece = find_transformer(folder)
    except ModelMissing:
        return {"format": "comfy-split", "family": "unknown", "kind": "unknown", "variant": "", "dtype": "unknown"}
    return _describe_file(header, split=True)


def _family(family: str, path: Path) -> str:
    """``flux1-kontext`` for a FLUX.1 file named so (Kontext has dev's shapes: only the name tells)."""
    return "flux1-kontext" if family == "flux1" and "kontext" in path.name.lower() else family


def diffusers_report(folder: Path) -> dict[str, Any]:
    """The report of a diffusers folder, from ``model_index.json``, the configs and the transformer's header."""
    index = read_json(folder / "model_index.json")
    config = read_json(folder / "transformer" / "config.json")
    pipeline = str(index.get("_class_name", ""))
    family = PIPELINE_FAMILIES.get(pipeline) or TRANSFORMER_FAMILIES.get(str(config.get("_class_name")), "unknown")
    base = {"path": str(folder), "format": "diffusers", "family": family, "kind": "unknown", "variant": "",
            "dtype": _weights_dtype(folder / "transformer"), "parts": {}}  # fmt: skip
    if family in FLUX2_FAMILIES:
        return flux2_report(folder, index, config, base)
    if family not in ("flux1", "flux1-kontext"):
        return {
            **base,
            "loadable": False,
            "reason": f"a {family} model ({pipeline}) — the studio runs FLUX.1 and FLUX.2 models",
        }
    try:
        facts = transformer_config_facts(config)
    except (KeyError, TypeError, ValueError):
        return {
            **base,
            "loadable": False,
            "reason": f"{folder / 'transformer' / 'config.json'} is missing or no FLUX "
            "transformer config — re-download the model",
        }
    base.update(
        kind=KINDS_BY_WIDTH.get(facts["in_channels"] // max(1, facts["out_channels"]), "unknown"),
        variant="dev" if facts["guidance_embeds"] else "schnell",
        parts={
            name: str(folder / name)
            for name, value in index.items()
            if not name.startswith("_") and isinstance(value, list) and value and value[0]
        },
    )
    missing = [name for name in WEIGHTED if name in index and not has_weights(folder / name)]
    missing += [name for name in ("tokenizer", "tokenizer_2") if name in index and not (folder / name).is_dir()]
    if missing:
        return {
            **base,
            "loadable": False,
            "reason": f"{', '.join(missing)} missing in {folder} (no weights or no "
            "folder) — re-download the model, or put the parts beside a single transformer file instead",
        }
    note = (
        "loads; a reference image (--reference) conditions it as FluxKontextPipeline does"
        if family != "flux1"
        else None
    )
    return {**base, "loadable": True, "reason": note}


def flux2_report(folder: Path, index: dict[str, Any], config: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """A FLUX.2 [dev] / [klein] diffusers folder: loadable when its parts are there; the note says how it runs."""
    family = base["family"]
    distilled = bool(index.get("is_distilled", False))
    variant = ("distilled" if distilled else "base") if family == "flux2-klein" else "dev"
    parts = {name: str(folder / name) for name, value in index.items()
             if not name.startswith("_") and isinstance(value, list) and value and value[0]}  # fmt: skip
    base = {**base, "kind": "base" if config else "unknown", "variant": variant, "parts": parts}
    missing = [
        name for name in ("transformer", "vae", "text_encoder") if name in index and not has_weights(folder / name)
    ]
    missing += [name for name in ("tokenizer",) if name in index and not (folder / name).is_dir()]
    if missing:
        return {**base, "loadable": False, "reason": f"{', '.join(missing)} missing in {folder} (no weights or no "
                "folder) — re-download the model"}  # fmt: skip
    label = "FLUX.2 [klein]" if family == "flux2-klein" else "FLUX.2 [dev]"
    guidance = {"distilled": "step-distilled: guidance has no effect", "base": "guidance is its CFG scale",
                "dev": "guidance is its embedded guidance"}[variant]  # fmt: skip
    note = (f"loads; {label} runs through diffusers' {index.get('_class_name')} with the studio's progress, cancel "
            f"and records ({guidance}); reference images (up to 4) edit; FLUX.1 ControlNets, regions, prompt 2, "
            "schedules and First-Block Cache are refused")  # fmt: skip
    return {**base, "loadable": True, "reason": note}


def _weights_dtype(folder: Path) -> str:
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        return "unknown"
    try:
        return main_dtype(read_header(files[0]))
    except UnreadableModel:
        return "unreadable"
