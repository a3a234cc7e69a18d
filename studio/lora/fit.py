"""Does a LoRA fit the loaded model? Every module's shapes checked against the model before anything is applied,
so nothing is ever applied partially; Control LoRAs told by their input width."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from studio.core.errors import StudioError
from studio.lora.detect import is_control_lora
from studio.lora.formats import TR_PREFIX
from studio.models.kinds import image_channels

_MODULE_KEY = re.compile(r"^(.+)\.(lora_A\.weight|lora_B\.weight|lora_magnitude_vector|hada_w[12]_[ab])$")


@dataclass(frozen=True)
class Fit:
    """How the converted modules fit the transformer."""

    matched: tuple[str, ...]
    missing: tuple[str, ...]
    wrong: tuple[tuple[str, str], ...]
    norms: tuple[str, ...] = ()  # Flux Control LoRAs also replace the q/k RMSNorm scales
    control_channels: int | None = None


# ---- reading -------------------------------------------------------------------------------------------


def check_fit(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module, prefix: str = TR_PREFIX) -> Fit:
    """Which converted modules exist in ``model`` (the transformer, or the text encoder with ``prefix``
    ``text_encoder.``) with matching in/out features.

    A Flux Control LoRA (BFL's Canny/Depth-dev LoRAs, diffusers' ``train_control_lora_flux.py``) is recognised by its
    ``x_embedder`` taking twice the model's image channels (diffusers widens the layer when loading it); its q/k norm
    scales must match the transformer's norms.
    """
    modules, others = _modules(state_dict, prefix)
    control = control_channels(state_dict, model) if prefix == TR_PREFIX else None
    checks = [(name, _shape_problem(name, state_dict, model, prefix, control)) for name in modules]
    norm_keys = [k for k in others if k.startswith(TR_PREFIX) and k.rsplit(".", 2)[-2] in NORM_KEYS]
    checks += [(key, _norm_problem(key, state_dict[key], model)) for key in norm_keys]
    matched, norms, missing, wrong = [], [], [], []
    for name, problem in checks:
        if problem is None:
            (norms if name in norm_keys else matched).append(name)
        elif problem == "missing":
            missing.append(name)
        else:
            wrong.append((name, problem))
    missing += sorted({module_of(k) for k in others if k not in norm_keys})
    return Fit(tuple(matched), tuple(missing), tuple(wrong), tuple(norms), control)


NORM_KEYS = ("norm_q", "norm_k", "norm_added_q", "norm_added_k")  # what diffusers loads from a Control LoRA


def control_channels(state_dict: Mapping[str, torch.Tensor], transformer: torch.nn.Module) -> int | None:
    """The widened input of a Flux Control LoRA (``x_embedder`` lora_A twice the image channels), else None."""
    shapes = {key: tuple(value.shape) for key, value in state_dict.items() if key.endswith("x_embedder.lora_A.weight")}
    return 2 * image_channels(transformer) if is_control_file(shapes, transformer) else None


def is_control_file(shapes: Mapping[str, tuple[int, ...]], transformer: torch.nn.Module) -> bool:
    """Whether a file's header (tensor shapes) is a Flux Control LoRA for ``transformer`` (cheap: reads no weights)."""
    return is_control_lora(shapes, image_channels(transformer))


def _norm_problem(key: str, value: torch.Tensor, transformer: torch.nn.Module) -> str | None:
    name = key.removeprefix(TR_PREFIX).removesuffix(".weight")
    try:
        module = transformer.get_submodule(name)
    except AttributeError:
        return "missing"
    weight = getattr(module, "weight", None)
    if weight is None or tuple(weight.shape) != tuple(value.shape):
        shape = None if weight is None else tuple(weight.shape)
        return f"{name} expects a norm scale of shape {shape}, file has {tuple(value.shape)}"
    return None


def module_of(key: str) -> str:
    match = _MODULE_KEY.match(key)
    return match.group(1) if match else re.sub(r"\.(?:weight|bias|alpha)$", "", key)


def _modules(state_dict: Mapping[str, torch.Tensor], prefix: str) -> tuple[list[str], list[str]]:
    """(modules under ``prefix`` with LoRA/DoRA/LoHa weights, every other key)."""
    modules, others = set(), []
    for key in state_dict:
        match = _MODULE_KEY.match(key)
        if match and key.startswith(prefix):
            modules.add(match.group(1)[len(prefix) :])
        else:
            others.append(key)
    return sorted(modules), others


def _shape_problem(
    module_name: str,
    sd: Mapping[str, torch.Tensor],
    model: torch.nn.Module,
    prefix: str = TR_PREFIX,
    control: int | None = None,
) -> str | None:
    try:
        module = model.get_submodule(module_name)
    except AttributeError:
        return "missing"
    base = getattr(module, "base_layer", module)
    in_features, out_features = getattr(base, "in_features", None), getattr(base, "out_features", None)
    if in_features is None or out_features is None:
        return f"{module_name} is a {type(base).__name__}, not a linear layer"
    if module_name == "x_embedder" and control is not None:
        in_features = control  # diffusers widens the layer to the Control LoRA's input when loading it
    key = f"{prefix}{module_name}."
    if f"{key}hada_w1_a" in sd:
        return _loha_problem(
            module_name, [sd.get(f"{key}hada_w{i}_{ab}") for i in (1, 2) for ab in "ab"], in_features, out_features
        )
    lora_a, lora_b = sd.get(f"{key}lora_A.weight"), sd.get(f"{key}lora_B.weight")
    if lora_a is None or lora_b is None or lora_a.ndim != 2 or lora_b.ndim != 2:
        return f"{module_name} lacks a 2-D lora_A/lora_B pair"
    if lora_a.shape[1] != in_features:
        return f"{module_name} expects in {in_features}, file has {lora_a.shape[1]}"
    if lora_b.shape[0] != out_features:
        return f"{module_name} expects out {out_features}, file has {lora_b.shape[0]}"
    if lora_a.shape[0] != lora_b.shape[1]:
        return f"{module_name} has rank {lora_a.shape[0]} in lora_A but {lora_b.shape[1]} in lora_B"
    magnitude = sd.get(f"{key}lora_magnitude_vector")
    if magnitude is not None and tuple(magnitude.shape) != (out_features,):
        return f"{module_name} expects a DoRA magnitude of {out_features}, file has {tuple(magnitude.shape)}"
    return None


def _loha_problem(
    module_name: str, factors: list[torch.Tensor | None], in_features: int, out_features: int
) -> str | None:
    """w1_a, w2_a: (out, r); w1_b, w2_b: (r, in)."""
    if any(f is None or f.ndim != 2 for f in factors):
        return f"{module_name} lacks 2-D LoHa factors"
    w1a, w1b, w2a, w2b = factors
    if w1b.shape[1] != in_features or w2b.shape[1] != in_features:
        return f"{module_name} expects in {in_features}, file has {w1b.shape[1]}"
    if w1a.shape[0] != out_features or w2a.shape[0] != out_features:
        return f"{module_name} expects out {out_features}, file has {w1a.shape[0]}"
    if not w1a.shape[1] == w1b.shape[0] == w2a.shape[1] == w2b.shape[0]:
        return f"{module_name} has LoHa factors of different ranks"
    return None


def refuse_misfit(fit: Fit, name: str, transformer: torch.nn.Module) -> None:
    total = len(fit.matched) + len(fit.missing) + len(fit.wrong)
    if fit.wrong:
        raise StudioError(
            f"{name}: {len(fit.wrong)} of {total} modules have wrong shapes: e.g. {fit.wrong[0][1]} — it was "
            "trained for another model; use a LoRA trained for this one"
        )
    if fit.missing:
        config = getattr(transformer, "config", {})
        size = f"{config.get('num_layers', '?')} double and {config.get('num_single_layers', '?')} single blocks"
        raise StudioError(
            f"{name}: {len(fit.missing)} of {total} modules are not in this model (e.g. {fit.missing[0]}; this model "
            f"has {size}) — it was trained for another model; use a LoRA trained for this one"
        )
    if not fit.matched:
        raise StudioError(f"{name} has no modules for the transformer — nothing would apply; use a Flux LoRA")


# ---- the whole check -----------------------------------------------------------------------------------
