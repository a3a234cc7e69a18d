"""Which files make a FLUX.1 pipeline when the model is not a diffusers folder, read from headers alone.

The model is a transformer file (BFL/ComfyUI/diffusers names; bf16, fp8 or GGUF) or a folder of ComfyUI split parts
(transformer + ``ae`` + ``clip_l`` + ``t5xxl``, flat or in ComfyUI's ``unet``/``vae``/``clip`` subfolders). What it
lacks comes, in this order, from the file itself (an all-in-one checkpoint), split files beside it, or a diffusers
folder beside it (the folder itself, or one of its subfolders, with ``model_index.json``). Configs come from a
diffusers folder beside it whose transformer has the same shapes, else from the FLUX.1-dev/-schnell configs shipped
in ``studio/models/configs`` (configs only, no weights, no tokenizers). Anything missing is a ModelMissing naming
what to add.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.errors import ModelMissing
from studio.models.families import read_json
from studio.models.headers import (
    WEIGHT_SUFFIXES,
    Header,
    Piece,
    UnreadableModel,
    pieces,
    read_header,
    transformer_config_facts,
    unsupported_gguf_types,
)
from studio.models.kinds import KINDS_BY_WIDTH

SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"
COMFY_SUBFOLDERS = ("unet", "diffusion_models", "checkpoints", "vae", "clip", "text_encoders")
COMPONENTS = {"vae": "vae", "clip": "text_encoder", "t5": "text_encoder_2"}  # piece role → pipeline component
TOKENIZERS = {"tokenizer": "text_encoder", "tokenizer_2": "text_encoder_2"}
ADD = {"vae": "ae.safetensors (FLUX.1's autoencoder)", "clip": "clip_l.safetensors",
       "t5": "t5xxl_fp16.safetensors (or t5xxl_fp8_e4m3fn.safetensors)"}  # fmt: skip
MAX_ENTRIES = 500  # entries looked at in one folder


@dataclass(frozen=True)
class Part:
    """Where a component loads from: a weights ``file`` (``prefix``: its place in an all-in-one file) or a
    diffusers ``folder`` (the component's subfolder of it)."""

    kind: str
    path: Path
    prefix: str = ""
    layout: str = ""
    dtype: str = ""

    def describe(self, component: str) -> str:
        """Where it comes from, for people."""
        if self.kind == "folder":
            return str(self.path / component)
        return f"{self.path} [{self.prefix}*]" if self.prefix else str(self.path)


@dataclass(frozen=True)
class ModelFiles:
    """A loadable model made of files: its format, what it is, its config folder and each component's source."""

    path: Path
    format: str  # single-file | comfy-split | gguf
    family: str
    kind: str  # base | control | fill
    variant: str  # dev | schnell (whether the guidance embedding is there)
    dtype: str
    config_dir: Path
    parts: Mapping[str, Part]  # transformer, vae, text_encoder(_2), tokenizer(_2)
    overrides: Mapping[str, Any] = field(default_factory=dict)  # transformer config values the file changes

    def describe(self) -> dict[str, str]:
        """Component → where it loads from, config included."""
        return {"config": str(self.config_dir), **{name: part.describe(name) for name, part in self.parts.items()}}


def resolve(path: Path) -> ModelFiles:
    """The files that make the model at ``path`` (a file, or a folder without ``model_index.json``)."""
    path = Path(path)
    if path.is_dir():
        search = _folder_search_dirs(path)
        header, piece = _only_transformer(path, search)
        fmt = "comfy-split"
    elif path.is_file():
        header = read_header(path)
        piece = _transformer_piece(header)
        search = _file_search_dirs(path)
        fmt = "gguf" if header.container == "gguf" else "single-file"
    else:
        raise ModelMissing(
            f"no model at {path} — set STUDIO_MODEL to a diffusers folder, a FLUX.1 .safetensors or "
            ".gguf file, or a folder of ComfyUI split files"
        )
    _check_transformer(header, piece)
    facts = dict(piece.facts)
    donors = _diffusers_folders(search)
    config_dir = _config_dir(header.path, facts, donors)
    config = read_json(config_dir / "transformer" / "config.json")
    widened = any(facts[key] != transformer_config_facts(config)[key] for key in ("in_channels", "out_channels"))
    overrides = {key: facts[key] for key in ("in_channels", "out_channels")} if widened else {}  # Fill, Canny/Depth
    parts = {"transformer": Part("file", header.path, piece.prefix, piece.layout, piece.dtype)}
    weights = _weight_pieces(search, header.path)
    bundled = {p.role: p for p in pieces(header) if p.role != "transformer"}
    for role, component in COMPONENTS.items():
        parts[component] = _component(role, component, header.path, bundled.get(role), weights, donors, config_dir)
    for tokenizer, encoder in TOKENIZERS.items():
        parts[tokenizer] = _tokenizer(tokenizer, encoder, header.path, donors, config_dir)
    ratio = facts["in_channels"] // max(1, facts["out_channels"])
    return ModelFiles(
        path,
        fmt,
        piece.family,
        KINDS_BY_WIDTH.get(ratio, "unknown"),
        "dev" if facts["guidance_embeds"] else "schnell",
        piece.dtype,
        config_dir,
        parts,
        overrides,
    )


# ---- the transformer ---------------------------------------------------------------------------------
def _transformer_piece(header: Header) -> Piece:
    found = pieces(header)
    transformer = next((p for p in found if p.role == "transformer"), None)
    if transformer is not None:
        return transformer
    name = header.path.name
    roles = {"vae": "FLUX's autoencoder (a VAE)", "clip": "a CLIP text encoder", "t5": "a T5 text encoder"}
    if found:
        raise ModelMissing(
            f"{name} is {roles[found[0].role]}, not a model — point STUDIO_MODEL at the transformer "
            "file (flux1-dev.safetensors or a .gguf) or at the folder holding all the parts"
        )
    raise ModelMissing(
        f"{name} holds no FLUX transformer the studio knows (no double_blocks/transformer_blocks "
        "tensors) — use a FLUX.1 .safetensors or .gguf file, or a diffusers folder"
    )


def _check_transformer(header: Header, piece: Piece) -> None:
    """Refuse, naming what to use instead, a transformer the studio cannot run."""
    name = header.path.name
    if piece.layout == "nf4":
        raise ModelMissing(
            f"{name} is a Forge bnb-nf4 checkpoint: its 4-bit weights are packed in Forge's own layout, which "
            "diffusers cannot load — use the GGUF file instead (e.g. flux1-dev-Q4_K_S.gguf; CPU and GPU), or the "
            "fp8/bf16 file with STUDIO_QUANT=nf4 on a CUDA GPU (STUDIO_QUANT=int8 on CPU)"
        )
    if piece.family != "flux1":
        label = {"flux2": "FLUX.2", "chroma": "Chroma"}.get(piece.family, piece.family)
        raise ModelMissing(
            f"{name} is a {label} transformer — the studio runs FLUX.1 models (dev, schnell, Fill, "
            "Canny/Depth); use a FLUX.1 file"
        )
    bad = unsupported_gguf_types(header) if header.container == "gguf" else []
    if bad:
        raise ModelMissing(
            f"{name} uses GGUF types diffusers cannot dequantize ({', '.join(bad)}) — use a Q8_0, "
            "Q6_K, Q5_K, Q4_K or Q4_0 file"
        )
    ratio, rest = divmod(int(piece.facts["in_channels"]), max(1, int(piece.facts["out_channels"])))
    if rest or ratio not in KINDS_BY_WIDTH:
        raise ModelMissing(
            f"{name} has {piece.facts['in_channels']} input channels: no FLUX.1 kind the studio knows "
            "(base, Control or Fill)"
        )


def find_transformer(folder: Path) -> tuple[Header, Piece]:
    """The one transformer file of a split-parts folder (ModelMissing when there is none or several)."""
    return _only_transformer(folder, _folder_search_dirs(folder))


def _only_transformer(folder: Path, search: list[Path]) -> tuple[Header, Piece]:
    found = [(h, p) for h, p in _weight_pieces(search, None) if p.role == "transformer"]
    if not found:
        raise ModelMissing(
            f"no FLUX transformer in {folder} (no model_index.json and no .safetensors/.gguf "
            "transformer file) — add flux1-dev.safetensors or a .gguf beside ae/clip_l/t5xxl, or set "
            "STUDIO_MODEL to a diffusers folder"
        )
    if len(found) > 1:
        names = ", ".join(sorted(h.path.name for h, _ in found))
        raise ModelMissing(f"{folder} holds several transformers ({names}) — set STUDIO_MODEL to one of the files")
    return found[0]


# ---- where the rest comes from ---------------------------------------------------------------------------
def _file_search_dirs(path: Path) -> list[Path]:
    """The transformer file's folder, and ComfyUI's sibling folders when it sits in ``models/unet`` or alike."""
    parent = path.resolve().parent
    dirs = [parent]
    if parent.name in COMFY_SUBFOLDERS:
        dirs += [parent.parent / sub for sub in COMFY_SUBFOLDERS if (parent.parent / sub).is_dir()]
    return list(dict.fromkeys(dirs))


def _folder_search_dirs(folder: Path) -> list[Path]:
    folder = folder.resolve()
    return [folder] + [folder / sub for sub in COMFY_SUBFOLDERS if (folder / sub).is_dir()]


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())[:MAX_ENTRIES]
    except OSError:
        return []


def _weight_pieces(search: list[Path], skip: Path | None) -> list[tuple[Header, Piece]]:
    """Every readable weights file in the folders (not recursive) with each piece it holds unprefixed."""
    found = []
    for folder in search:
        for entry in _entries(folder):
            if entry.suffix.lower() not in WEIGHT_SUFFIXES or not entry.is_file() or entry.resolve() == skip:
                continue
            try:
                header = read_header(entry)
            except UnreadableModel:
                continue  # a broken neighbour is not this model's part; inspect it on its own to see why
            found += [(header, piece) for piece in pieces(header) if not piece.prefix or piece.role == "transformer"]
    return found


def _diffusers_folders(search: list[Path]) -> list[Path]:
    """Folders with ``model_index.json``: each search folder itself, then its subfolders."""
    found = []
    for folder in search:
        for candidate in [folder, *(e for e in _entries(folder) if e.is_dir())]:
            if (candidate / "model_index.json").is_file():
                found.append(candidate.resolve())
    return list(dict.fromkeys(found))


def _config_dir(path: Path, facts: Mapping[str, Any], donors: list[Path]) -> Path:
    """A diffusers folder beside the file whose transformer has these shapes, else the shipped FLUX.1 config."""
    shipped = [SHIPPED_CONFIGS / ("flux1-dev" if facts["guidance_embeds"] else "flux1-schnell")]
    for folder in [*donors, *shipped]:
        try:
            if _same_shapes(transformer_config_facts(read_json(folder / "transformer" / "config.json")), facts):
                return folder
        except (KeyError, TypeError, ValueError):
            continue  # no FLUX transformer config there
    raise ModelMissing(
        f"no configuration fits {path.name}: a FLUX transformer {facts['width']} wide with {facts['num_layers']} "
        f"double and {facts['num_single_layers']} single blocks is not FLUX.1-dev/-schnell — put the model's diffusers "
        "folder (model_index.json and each component's config.json) beside it"
    )


def _same_shapes(config: Mapping[str, Any], facts: Mapping[str, Any]) -> bool:
    """Whether a transformer config fits a file's shapes (input/output channels may differ: Fill, Canny/Depth)."""
    keys = ("width", "joint_attention_dim", "pooled_projection_dim", "num_layers", "num_single_layers",
            "guidance_embeds")  # fmt: skip
    return all(config[key] == facts[key] for key in keys)


def _component(
    role: str,
    component: str,
    path: Path,
    bundled: Piece | None,
    weights: list[tuple[Header, Piece]],
    donors: list[Path],
    config_dir: Path,
) -> Part:
    """Where the VAE or a text encoder comes from: the file itself, a split file beside it, or a diffusers folder."""
    config = read_json(config_dir / component / "config.json")
    if bundled is not None and _fits(role, bundled, config):
        return Part("file", path, bundled.prefix, bundled.layout, bundled.dtype)
    split = [(h, p) for h, p in weights if p.role == role and _fits(role, p, config)]
    split.sort(key=lambda hp: (hp[1].dtype.startswith("float8"), hp[0].path.name))  # full precision first
    if split:
        header, piece = split[0]
        return Part("file", header.path, "", piece.layout, piece.dtype)
    for folder in [config_dir, *donors]:
        if has_weights(folder / component) and _same_config(
            role, read_json(folder / component / "config.json"), config
        ):
            return Part("folder", folder)
    raise ModelMissing(
        f"{path.name} needs {component} ({_what(role, config)}) and none fits beside it — add "
        f"{ADD[role]} next to it, or a diffusers folder of the same model with {component}/"
    )


def _tokenizer(tokenizer: str, encoder: str, path: Path, donors: list[Path], config_dir: Path) -> Part:
    vocab = read_json(config_dir / encoder / "config.json").get("vocab_size")
    for folder in [config_dir, *donors]:
        if (folder / tokenizer).is_dir() and read_json(folder / encoder / "config.json").get("vocab_size") == vocab:
            return Part("folder", folder)
    raise ModelMissing(
        f"{path.name} needs the {tokenizer} of its text encoder (vocabulary {vocab}), and no diffusers folder beside "
        f"it has one — put a diffusers FLUX.1 folder with {tokenizer}/ next to it (the tokenizers, model_index.json and "
        "*/config.json files of black-forest-labs/FLUX.1-schnell are enough: no weights)"
    )


def _fits(role: str, piece: Piece, config: Mapping[str, Any]) -> bool:
    """Whether a VAE/CLIP/T5 piece has the shapes the config's component has."""
    if role == "vae":
        first = (config.get("block_out_channels") or [None])[0]
        return (piece.facts.get("latent_channels"), piece.facts.get("first_channels")) == (
            config.get("latent_channels"),
            first,
        )
    if role == "clip":
        return piece.facts.get("hidden") == config.get("hidden_size")
    return piece.facts.get("d_model") == config.get("d_model")


def _same_config(role: str, donor: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    keys = {"vae": ("latent_channels", "block_out_channels", "layers_per_block"),
            "clip": ("hidden_size", "num_hidden_layers", "vocab_size"),
            "t5": ("d_model", "num_layers", "vocab_size")}[role]  # fmt: skip
    return bool(donor) and all(donor.get(key) == config.get(key) for key in keys)


def _what(role: str, config: Mapping[str, Any]) -> str:
    if role == "vae":
        return f"a VAE with {config.get('latent_channels')} latent channels"
    if role == "clip":
        return f"CLIP {config.get('hidden_size')} wide"
    return f"T5 {config.get('d_model')} wide"


def has_weights(folder: Path) -> bool:
    """Whether ``folder`` holds safetensors weights."""
    return folder.is_dir() and any(entry.suffix == ".safetensors" for entry in _entries(folder))
