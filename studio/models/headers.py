"""What a weights file holds, from its header alone (safetensors header, GGUF metadata): never the weights.

A file holds one or more *pieces*: a FLUX transformer (BFL, ComfyUI or diffusers names; bf16, fp8, GGUF or a
Forge bnb-nf4 pack), FLUX's autoencoder (``ae.safetensors``), CLIP-L (``clip_l.safetensors``) or T5
(``t5xxl_fp16.safetensors``) — an all-in-one checkpoint bundles several under prefixes.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.errors import ModelMissing
from studio.core.limits import loads_json
from studio.models import layout as flux_layout

WEIGHT_SUFFIXES = (".safetensors", ".sft", ".gguf")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_HEADER_DEPTH = 8  # a real header nests 3 deep: {name: {"shape": [...]}}
SAFETENSORS_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64",
                      "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "U8": "uint8", "I8": "int8"}  # fmt: skip
GGUF_FLOAT_TYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
# The GGUF tensor types diffusers' GGUF loader dequantizes (tests compare with its SUPPORTED_GGUF_QUANT_TYPES)
GGUF_SUPPORTED = ("F32", "F16", "BF16", "Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0", "Q6_K", "Q5_K", "Q4_K", "Q3_K",
                  "Q2_K", "IQ4_NL", "IQ4_XS")  # fmt: skip
NF4_MARKERS = (".absmax", ".quant_map", "quant_state.bitsandbytes__nf4", "quant_state.bitsandbytes__fp4")
# prefixes under which an all-in-one checkpoint bundles each piece
VAE_PREFIXES = ("vae.", "first_stage_model.")
CLIP_PREFIXES = ("text_encoders.clip_l.transformer.", "cond_stage_model.transformer.")
T5_PREFIXES = ("text_encoders.t5xxl.transformer.",)


class UnreadableModel(ModelMissing):
    """A model file that cannot be read at all (missing, truncated, pickled, not safetensors/GGUF)."""


@dataclass(frozen=True)
class Tensor:
    """One tensor's dtype (torch's name, or the GGUF type such as ``Q4_K``) and logical shape."""

    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Header:
    """A weights file's tensors (name → Tensor) and its metadata strings."""

    path: Path
    container: str  # "safetensors" | "gguf"
    tensors: Mapping[str, Tensor]
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Piece:
    """One model inside a file: ``role`` transformer/vae/clip/t5, the key ``prefix`` it sits under, its names'
    ``layout`` (bfl, comfy, diffusers, ldm, transformers, nf4), main ``dtype`` and shape ``facts``."""

    role: str
    prefix: str
    layout: str
    dtype: str
    family: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)


# ---- reading -----------------------------------------------------------------------------------------
def read_header(path: Path) -> Header:
    """The header of a .safetensors/.sft or .gguf file (cached by path, size and modification time)."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UnreadableModel(
            f"{path.name} is a pickled checkpoint: loading it could run arbitrary code, so the "
            "studio never opens it — use the .safetensors or .gguf version of the model"
        )
    try:
        stat = path.stat()
    except OSError as exc:
        raise UnreadableModel(f"cannot read {path} ({exc.strerror}) — check the path and its permissions") from None
    return _read_cached(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _read_cached(path: Path, size: int, _mtime_ns: int) -> Header:
    if size == 0:
        raise UnreadableModel(f"{path.name} is empty (0 bytes) — the download or copy did not finish")
    if path.suffix.lower() == ".gguf":
        return _gguf_header(path)
    return _safetensors_header(path, size)


def _safetensors_header(path: Path, size: int) -> Header:
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            raw = handle.read(length) if 0 < length <= min(size - 8, MAX_HEADER_BYTES) else b""
    except OSError as exc:
        raise UnreadableModel(f"cannot read {path} ({exc.strerror}) — check the file and its permissions") from None
    if not raw:
        raise UnreadableModel(
            f"{path.name} is not a safetensors file or is truncated (bad header length) — download it again"
        )
    try:
        header = loads_json(raw, MAX_HEADER_DEPTH)
        metadata = header.pop("__metadata__", None) or {}
        tensors = {str(name): Tensor(SAFETENSORS_DTYPES.get(info["dtype"], str(info["dtype"]).lower()),
                                     tuple(int(d) for d in info["shape"]))
                   for name, info in header.items()}  # fmt: skip
        end = max((int(info["data_offsets"][1]) for info in header.values()), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise UnreadableModel(
            f"{path.name} has a corrupt safetensors header ({str(exc)[:120] or type(exc).__name__})"
            " — download the file again"
        ) from None
    if 8 + length + end > size:
        raise UnreadableModel(
            f"{path.name} is truncated: its header promises {8 + length + end} bytes but the file "
            f"has {size} — the download did not finish; get the file again"
        )
    return Header(path, "safetensors", tensors, {str(k): str(v) for k, v in dict(metadata).items()})


def _gguf_header(path: Path) -> Header:
    try:
        from gguf import GGUFReader
    except ImportError:
        raise UnreadableModel("reading .gguf files needs the gguf package — pip install -r requirements.txt") from None
    try:
        reader = GGUFReader(path)  # memory-maps the file; only the tensor table and metadata are parsed
        tensors = {
            t.name: Tensor(GGUF_FLOAT_TYPES.get(t.tensor_type.name, t.tensor_type.name),
                           tuple(int(d) for d in reversed(list(t.shape))))
            for t in reader.tensors
        }  # fmt: skip
        metadata = {name: _gguf_text(f) for name, f in reader.fields.items() if name.startswith("general.")}
    except Exception as exc:  # noqa: BLE001 - gguf raises bare ValueErrors and more for broken files
        raise UnreadableModel(
            f"{path.name} is not a readable GGUF file ({str(exc)[:120] or type(exc).__name__}) — download it again"
        ) from None
    return Header(path, "gguf", tensors, {k: v for k, v in metadata.items() if v})


def _gguf_text(field_: Any) -> str:
    """A GGUF metadata value as text (strings and numbers; arrays are skipped)."""
    try:
        value = field_.contents()
    except (IndexError, AttributeError, TypeError, ValueError):
        return ""
    return value if isinstance(value, str) else str(value) if isinstance(value, (int, float)) else ""


# ---- what is inside --------------------------------------------------------------------------------
def pieces(header: Header) -> list[Piece]:
    """The models a file holds (an empty list: nothing the studio knows)."""
    return [piece for piece in (_transformer(header), _vae(header), _clip(header), _t5(header)) if piece is not None]


def _vae(header: Header) -> Piece | None:
    keys = header.tensors
    for prefix in ("", *VAE_PREFIXES):
        if f"{prefix}decoder.conv_in.weight" in keys and f"{prefix}encoder.conv_in.weight" in keys:
            layout = "ldm" if f"{prefix}encoder.down.0.block.0.conv1.weight" in keys else "diffusers"
            facts = {
                "latent_channels": keys[f"{prefix}decoder.conv_in.weight"].shape[1],
                "first_channels": keys[f"{prefix}encoder.conv_in.weight"].shape[0],
            }
            return Piece("vae", prefix, layout, main_dtype(header, prefix), facts=facts)
    return None


def _clip(header: Header) -> Piece | None:
    keys = header.tensors
    for prefix in ("", *CLIP_PREFIXES):
        for inner in ("text_model.", ""):  # transformers ≥ 5.6 saves CLIPTextModel without ``text_model.``
            name = f"{prefix}{inner}embeddings.position_embedding.weight"
            if name in keys and f"{prefix}{inner}encoder.layers.0.self_attn.q_proj.weight" in keys:
                facts = {"hidden": keys[name].shape[1]}
                return Piece("clip", prefix, "transformers", main_dtype(header, prefix), facts=facts)
    return None


def _t5(header: Header) -> Piece | None:
    keys = header.tensors
    for prefix in ("", *T5_PREFIXES):
        name = f"{prefix}encoder.block.0.layer.0.SelfAttention.q.weight"
        if name in keys:
            return Piece(
                "t5", prefix, "transformers", main_dtype(header, prefix), facts={"d_model": keys[name].shape[1]}
            )
    return None


def _transformer(header: Header) -> Piece | None:
    try:
        return _transformer_piece(header)
    except (KeyError, IndexError):  # a FLUX-like file without a transformer's parts (a ControlNet, a broken file)
        return None


def _transformer_piece(header: Header) -> Piece | None:
    keys = header.tensors
    comfy = any(k.startswith(flux_layout.COMFY_PREFIX) for k in keys)
    prefix = flux_layout.COMFY_PREFIX if comfy else ""
    dtype = main_dtype(header, prefix)
    if any(k.startswith(prefix + "single_stream_modulation.") for k in keys):
        return Piece("transformer", prefix, "comfy" if comfy else "bfl", dtype, "flux2")
    if any(k.startswith(prefix + "distilled_guidance_layer.") for k in keys):
        return Piece("transformer", prefix, "comfy" if comfy else "bfl", dtype, "chroma")
    if flux_layout.is_bfl(keys):
        if any(k.endswith(NF4_MARKERS) for k in keys):
            return Piece("transformer", prefix, "nf4", "nf4", "flux1")
        return Piece("transformer", prefix, "comfy" if comfy else "bfl", dtype, "flux1", _bfl_facts(header, prefix))
    if flux_layout.is_diffusers(keys) and "x_embedder.weight" in keys:
        return Piece("transformer", "", "diffusers", main_dtype(header, ""), "flux1", _diffusers_facts(header))
    return None


def _bfl_facts(header: Header, prefix: str) -> dict[str, Any]:
    t = {k.removeprefix(prefix): v for k, v in header.tensors.items() if k.startswith(prefix)}
    double, single = flux_layout.block_counts(t)
    return {"width": t["img_in.weight"].shape[0], "in_channels": t["img_in.weight"].shape[1],
            "out_channels": t["final_layer.linear.weight"].shape[0], "joint_attention_dim": t["txt_in.weight"].shape[1],
            "pooled_projection_dim": t["vector_in.in_layer.weight"].shape[1], "num_layers": double,
            "num_single_layers": single, "guidance_embeds": "guidance_in.in_layer.weight" in t,
            "scaled_fp8": "scaled_fp8" in t or any(k.endswith(".scale_weight") for k in t)}  # fmt: skip


def _diffusers_facts(header: Header) -> dict[str, Any]:
    t = header.tensors
    blocks = {int(k.split(".")[1]) for k in t if k.startswith("transformer_blocks.")}
    singles = {int(k.split(".")[1]) for k in t if k.startswith("single_transformer_blocks.")}
    return {
        "width": t["x_embedder.weight"].shape[0],
        "in_channels": t["x_embedder.weight"].shape[1],
        "out_channels": t["proj_out.weight"].shape[0],
        "joint_attention_dim": t["context_embedder.weight"].shape[1],
        "pooled_projection_dim": t["time_text_embed.text_embedder.linear_1.weight"].shape[1],
        "num_layers": len(blocks),
        "num_single_layers": len(singles),
        "guidance_embeds": "time_text_embed.guidance_embedder.linear_1.weight" in t,
        "scaled_fp8": False,
    }


def main_dtype(header: Header, prefix: str = "") -> str:
    """The dtype holding most of the matrices' elements under ``prefix``."""
    counts: Counter[str] = Counter()
    for name, tensor in header.tensors.items():
        if name.startswith(prefix) and len(tensor.shape) >= 2:
            size = 1
            for dim in tensor.shape:
                size *= dim
            counts[tensor.dtype] += size
    return counts.most_common(1)[0][0] if counts else "unknown"


def unsupported_gguf_types(header: Header) -> list[str]:
    """GGUF tensor types in the file that diffusers cannot dequantize."""
    known = {*GGUF_SUPPORTED, *GGUF_FLOAT_TYPES.values()}
    return sorted({t.dtype for t in header.tensors.values() if t.dtype not in known})


def transformer_config_facts(config: Mapping[str, Any]) -> dict[str, Any]:
    """The same facts as a header's, from a FluxTransformer2DModel ``config.json``."""
    return {"width": int(config["num_attention_heads"]) * int(config["attention_head_dim"]),
            "in_channels": int(config["in_channels"]),
            "out_channels": int(config.get("out_channels") or config["in_channels"]),
            "joint_attention_dim": int(config["joint_attention_dim"]),
            "pooled_projection_dim": int(config["pooled_projection_dim"]), "num_layers": int(config["num_layers"]),
            "num_single_layers": int(config["num_single_layers"]),
            "guidance_embeds": bool(config.get("guidance_embeds", False))}  # fmt: skip
