"""LyCORIS LoKr and LoHa files on the FLUX transformer and the CLIP text encoder, as peft LoHa adapters.

A LyCORIS module adds ``ΔW = kron(W1, W2)·s`` (LoKr; each factor full or a low-rank ``_a @ _b``) or
``ΔW = (W1a W1b) ⊙ (W2a W2b)·s`` (LoHa) to one layer. Its name is resolved against the model:

- the model's own names (SimpleTuner/ai-toolkit ``lycoris_transformer_blocks_0_attn_to_q``,
  ``diffusion_model.transformer_blocks.0.attn.to_q``, kohya ``lora_te1_…`` for CLIP) map one to one;
- BFL names (kohya ``lora_unet_double_blocks_0_img_attn_qkv``, ``diffusion_model.double_blocks.0.img_attn.qkv``)
  go through diffusers' kohya converter, run on a probe LoRA whose rows carry their own index: what comes out says
  which rows of the fused layer feed which module (the q/k/v split, the final layer's scale/shift swap).

Every module is loaded as a peft LoHa layer (peft's ``LoHaConfig``), so adapters switch with ``set_adapters`` and
leave with ``delete_adapters`` like LoRAs and the base weights are never touched. Rows of a LoHa are a LoHa (rows of
W1a and W2a). A LoKr is one too: ``kron(W1, W2)[r, c] = W1[r // k, c // n] · W2[r % k, c % n]`` is the Hadamard
product of W1 spread over the blocks and W2 tiled over them, and each of those is a product of two thin matrices
(a factor and a 0/1 selector). Each entry of ΔW is the same single product as in the Kronecker product, so the
conversion is exact — which is what lets a fused qkv LoKr split into to_q/to_k/to_v at all. The price is memory:
a LoKr of two full factors becomes a LoHa of rank max(min(W1 dims), min(W2 dims)).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from studio.core.errors import StudioError
from studio.lora.formats import CLIP_PREFIXES, T5_PREFIXES, TE_PREFIX, TR_PREFIX, modules_by_name, strip_prefix

if TYPE_CHECKING:
    from peft import LoHaConfig

LOKR = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b")
LOHA = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
TRANSFORMER_PREFIXES = (
    "base_model.model.",
    "model.diffusion_model.",
    "diffusion_model.",
    TR_PREFIX,
    "lycoris_",
    "lora_transformer_",
    "lora_unet_",
)
_KEY = re.compile(r"^(.+)\.(lokr_w[12](?:_[ab])?|hada_w[12]_[ab]|alpha|[a-z_0-9]+)$")
Factor = tuple[torch.Tensor, torch.Tensor]  # (a, b): the factor is a @ b


@dataclass(frozen=True)
class Module:
    """One LyCORIS module of a file: its name there, its kind and tensors (suffix → tensor)."""

    name: str
    kind: str  # "lokr" or "loha"
    tensors: dict[str, torch.Tensor]

    @property
    def shape(self) -> tuple[int, int]:
        """(out, in) of the layer it changes."""
        t = self.tensors
        if self.kind == "loha":
            return t["hada_w1_a"].shape[0], t["hada_w1_b"].shape[1]
        (rows1, cols1), (rows2, cols2) = _factor_shape(t, 1), _factor_shape(t, 2)
        return rows1 * rows2, cols1 * cols2


@dataclass(frozen=True)
class Target:
    """Where (part of) a module goes: ``component`` ("transformer" or "text_encoder"), layer, and the module's rows
    that feed it (None: all, in order)."""

    component: str
    layer: str
    rows: torch.Tensor | None = None


@dataclass(frozen=True)
class PeftLoha:
    """A LyCORIS file as peft LoHa state dicts (``transformer.``/``text_encoder.`` keys) and what did not resolve."""

    state_dict: dict[str, torch.Tensor]
    unresolved: tuple[str, ...]
    t5: tuple[str, ...]


# ---- reading -------------------------------------------------------------------------------------------
def read_modules(tensors: Mapping[str, torch.Tensor], name: str) -> list[Module]:
    """The file's LyCORIS modules; a StudioError names any key that is not a Linear layer's LoKr/LoHa factor."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        match = _KEY.match(key)
        if match is None or match.group(2) not in (*LOKR, *LOHA, "alpha"):
            raise StudioError(
                f"{name} has the LyCORIS key {key!r}, which the studio cannot apply (only Linear layers' LoKr/LoHa "
                "factors and alpha; Tucker/conv factors, DoRA scales and full-weight diffs are not supported) — "
                "re-export it as a plain LoKr/LoHa or LoRA"
            )
        groups.setdefault(match.group(1), {})[match.group(2)] = value
    modules = []
    for module, parts in sorted(groups.items()):
        kind = "lokr" if any(k.startswith("lokr") for k in parts) else "loha"
        if kind == "loha" and not all(k in parts for k in LOHA) or kind == "lokr" and not _lokr_complete(parts):
            raise StudioError(
                f"{name}: the LyCORIS module {module} lacks some of its factors ({sorted(parts)}) — "
                "the file is incomplete; download it again"
            )
        modules.append(Module(module, kind, parts))
    return modules


def _lokr_complete(parts: Mapping[str, torch.Tensor]) -> bool:
    return all(f"lokr_w{i}" in parts or (f"lokr_w{i}_a" in parts and f"lokr_w{i}_b" in parts) for i in (1, 2))


def _factor_shape(parts: Mapping[str, torch.Tensor], i: int) -> tuple[int, int]:
    full = parts.get(f"lokr_w{i}")
    if full is not None:
        return full.shape[0], full.shape[1]
    return parts[f"lokr_w{i}_a"].shape[0], parts[f"lokr_w{i}_b"].shape[1]


# ---- where each module goes ------------------------------------------------------------------------------
def resolve(
    modules: list[Module], transformer: torch.nn.Module, text_encoder: torch.nn.Module | None
) -> tuple[dict[str, list[Target]], list[str], list[str]]:
    """Targets of each module (by its file name), the unresolved module names, and the T5 ones."""
    layers = modules_by_name(transformer)
    clip = modules_by_name(text_encoder) if text_encoder is not None else {}
    targets: dict[str, list[Target]] = {}
    bfl: dict[str, Module] = {}
    unresolved, t5 = [], []
    for module in modules:
        if module.name.startswith(T5_PREFIXES):
            t5.append(module.name)
        elif module.name.startswith(CLIP_PREFIXES):
            layer = clip.get(strip_prefix(module.name, CLIP_PREFIXES))
            (
                targets.setdefault(module.name, []).append(Target("text_encoder", layer))
                if layer
                else unresolved.append(module.name)
            )
        else:
            bare = strip_prefix(module.name, TRANSFORMER_PREFIXES)
            layer = layers.get(bare)
            if layer is not None:
                targets[module.name] = [Target("transformer", layer)]
            else:
                bfl[bare] = module
    if bfl:
        routed = bfl_rows({bare: m.shape for bare, m in bfl.items()})
        for bare, module in bfl.items():
            if bare in routed:
                targets[module.name] = routed[bare]
            else:
                unresolved.append(module.name)
    return targets, unresolved, t5


def bfl_rows(shapes: Mapping[str, tuple[int, int]]) -> dict[str, list[Target]]:
    """Which rows of each BFL-named layer feed which diffusers module, as diffusers' kohya converter splits them.

    The probe gives each layer a rank-1 LoRA whose A holds the layer's number and whose B holds the row numbers;
    the converter copies A to every module it splits the layer into and hands each its rows of B (float64: exact).
    """
    from diffusers import FluxPipeline

    names = sorted(shapes)
    probe = {}
    for number, bare in enumerate(names):
        out_features, in_features = shapes[bare]
        key = "lora_unet_" + bare.replace(".", "_")
        probe[f"{key}.lora_down.weight"] = torch.full((1, in_features), float(number), dtype=torch.float64)
        probe[f"{key}.lora_up.weight"] = torch.arange(out_features, dtype=torch.float64).unsqueeze(1)
    try:
        converted = FluxPipeline.lora_state_dict(probe)
    except (ValueError, AssertionError, KeyError, NotImplementedError, RuntimeError) as exc:
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise StudioError(
            f"diffusers' converter cannot map these LyCORIS layers ({detail}) — the file was probably trained for a "
            "model of another size; use one trained for this model"
        ) from None
    routed: dict[str, list[Target]] = {}
    for key, value in converted.items():  # the converter leaves the embedders and final layer unprefixed
        if key.startswith(TE_PREFIX) or not key.endswith(".lora_A.weight"):
            continue
        layer = key.removeprefix(TR_PREFIX)[: -len(".lora_A.weight")]
        rows = converted[key.replace(".lora_A.weight", ".lora_B.weight")][:, 0].round().long()
        routed.setdefault(names[int(value[0, 0])], []).append(Target("transformer", layer, rows))
    return routed


# ---- factors -------------------------------------------------------------------------------------------
def loha_factors(module: Module, rows: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """(w1_a, w1_b, w2_a, w2_b) of the LoHa equal to ``module``'s scaled delta on ``rows`` (the scale is in w1_a)."""
    t = module.tensors
    out_features, in_features = module.shape
    rows = torch.arange(out_features) if rows is None else rows
    if module.kind == "loha":
        rank = t["hada_w1_b"].shape[0]
        scale = float(t["alpha"]) / rank if "alpha" in t else 1.0
        first = (t["hada_w1_a"][rows] * scale, t["hada_w1_b"])
        second = (t["hada_w2_a"][rows], t["hada_w2_b"])
    else:
        parts = _baked_lokr(t)
        k, n = _factor_shape(parts, 2)
        cols = torch.arange(in_features)
        first = _selected(parts, 1, rows // k, cols // n)
        second = _selected(parts, 2, rows % k, cols % n)
    rank = max(first[0].shape[1], second[0].shape[1])
    return (*_padded(first, rank), *_padded(second, rank))


def _baked_lokr(parts: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The factors with LyCORIS' ``alpha / rank`` scale baked into W1, as diffusers bakes them."""
    from diffusers.loaders.lora_conversion_utils import _bake_lokr_alpha_

    baked = {f"m.{k}": v for k, v in parts.items()}
    _bake_lokr_alpha_(baked)
    return {k[2:]: v for k, v in baked.items()}


def _selected(parts: Mapping[str, torch.Tensor], i: int, row_index: torch.Tensor, col_index: torch.Tensor) -> Factor:
    """(a, b) with ``(a @ b)[r, c] = W_i[row_index[r], col_index[c]]``: the factor's thin form, or a 0/1 selector."""
    full = parts.get(f"lokr_w{i}")
    if full is None:
        return parts[f"lokr_w{i}_a"][row_index], parts[f"lokr_w{i}_b"][:, col_index]
    rows, cols = full.shape
    if rows <= cols:
        return _one_hot(row_index, rows, full.dtype), full[:, col_index]
    return full[row_index], _one_hot(col_index, cols, full.dtype).T


def _one_hot(index: torch.Tensor, size: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.nn.functional.one_hot(index, size).to(dtype)


def _padded(factor: Factor, rank: int) -> Factor:
    """Zero columns of a / zero rows of b up to ``rank`` (peft's LoHa has one rank for both halves)."""
    a, b = factor
    extra = rank - a.shape[1]
    if extra == 0:
        return a.contiguous(), b.contiguous()
    return (torch.cat([a, a.new_zeros(a.shape[0], extra)], 1), torch.cat([b, b.new_zeros(extra, b.shape[1])], 0))


# ---- the whole file ------------------------------------------------------------------------------------
def to_peft(
    tensors: Mapping[str, torch.Tensor], transformer: torch.nn.Module, text_encoder: torch.nn.Module | None, name: str
) -> PeftLoha:
    """The file as peft LoHa keys (``transformer.<layer>.hada_w1_a`` …); every fused layer split as diffusers splits
    it. A layer two modules write to (never in a real file) is refused."""
    modules = read_modules(tensors, name)
    targets, unresolved, t5 = resolve(modules, transformer, text_encoder)
    state_dict: dict[str, torch.Tensor] = {}
    for module in modules:
        for target in targets.get(module.name, ()):
            prefix = f"{TR_PREFIX if target.component == 'transformer' else TE_PREFIX}{target.layer}."
            if prefix + "hada_w1_a" in state_dict:
                raise StudioError(f"{name}: two LyCORIS modules change {target.layer} — the file is broken")
            for suffix, value in zip(LOHA, loha_factors(module, target.rows)):
                state_dict[prefix + suffix] = value
    return PeftLoha(state_dict, tuple(unresolved), tuple(t5))


def loha_config(state_dict: Mapping[str, torch.Tensor]) -> LoHaConfig:
    """The peft ``LoHaConfig`` for a state dict of one model's layers (keys ``<layer>.hada_w1_a`` …): each layer's
    rank from its factors, ``alpha`` equal to it (the scale is baked in, so a set_adapters weight is the scale)."""
    from peft import LoHaConfig

    ranks = {
        key[: -len(".hada_w1_a")]: value.shape[1] for key, value in state_dict.items() if key.endswith(".hada_w1_a")
    }
    common = Counter(ranks.values()).most_common(1)[0][0]
    pattern = {f"^{re.escape(layer)}": rank for layer, rank in ranks.items() if rank != common}
    exact = "|".join(re.escape(layer) for layer in sorted(ranks))  # a list would also hit nested same-named layers
    return LoHaConfig(
        r=common, alpha=common, target_modules=f"^(?:{exact})$", rank_pattern=pattern, alpha_pattern=dict(pattern)
    )


def load_loha(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], adapter: str) -> None:
    """Add ``adapter`` to ``model`` as peft LoHa layers holding ``state_dict`` (keys without the component prefix)."""
    from peft import inject_adapter_in_model, set_peft_model_state_dict

    inject_adapter_in_model(loha_config(state_dict), model, adapter)
    model._hf_peft_config_loaded = True  # as diffusers' add_adapter: its delete/unload then see the adapter
    result = set_peft_model_state_dict(model, dict(state_dict), adapter)
    unexpected = [k for k in getattr(result, "unexpected_keys", ()) if adapter in k or "hada_" in k]
    if unexpected:
        raise ValueError(f"peft did not take {len(unexpected)} LoHa weights (e.g. {unexpected[0]})")
