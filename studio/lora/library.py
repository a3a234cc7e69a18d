"""LoRAs on the resident pipeline: resolve a request's LoRAs, load each once (checked first), switch by weights.

Adapters stay loaded in the transformer keyed by sha256; a request switches them with ``set_adapters`` (or disables
them all when it has none) — the base model is never reloaded and never altered. When all ``max_loaded`` slots are
taken, a new LoRA is hot-swapped into the least recently used adapter's layers (``hotswap=True``: its weights are
replaced in place, no module is added, so a compiled transformer is not recompiled); when the two are not
compatible (other layers, rank or alpha without ``enable_lora_hotswap``) the old adapter is deleted and the new one
loaded fresh. Files are scanned and hashed by
``studio.lora.files``; ``studio.lora.inspection`` checks every module's shapes before anything is applied.

A file's CLIP text-encoder part is loaded into ``pipe.text_encoder`` under the same adapter name and switched with
it (``text_encoder_key`` tells the engine's prompt cache which CLIP adapters are active). LyCORIS LoKr/LoHa files
load as peft LoHa adapters (``studio.lora.lycoris``) and switch the same way; only plain LoRAs are hot-swapped.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.errors import StudioError
from studio.core.request import GenerationRequest, LoraSpec
from studio.lora.files import LoraFile, LoraFileError, LoraLibrary, LoraMeta, find_preview, parse_meta, read_header
from studio.lora.fit import is_control_file
from studio.lora.inspection import LoraInfo, PreparedLora, inspect, prepare

__all__ = [
    "AppliedLora",
    "LoraAdapters",
    "LoraFile",
    "LoraFileError",
    "LoraInfo",
    "LoraLibrary",
    "LoraMeta",
    "PreparedLora",
    "apply_request_loras",
    "find_preview",
    "inspect",
    "parse_meta",
    "prepare",
    "read_header",
    "resolve_specs",
]
log = logging.getLogger(__name__)
MAX_LOADED = 8


@dataclass(frozen=True)
class WantedLora:
    """A resolved LoRA of a request: its file, content hash, name and weight."""

    name: str
    sha256: str
    weight: float
    path: Path


@dataclass(frozen=True)
class AppliedLora:
    """A LoRA active in the last generation and how it applied."""

    name: str
    sha256: str
    weight: float
    adapter: str
    info: LoraInfo

    @property
    def summary(self) -> str:
        """``outlined @0.8: 24 of 24 modules applied``."""
        return f"{self.name} @{self.weight:g}: {self.info.summary}"


def resolve_specs(specs: Sequence[LoraSpec], library: LoraLibrary) -> list[WantedLora]:
    """Each spec's file (by sha256 when given, else by name); the same file twice is refused."""
    wanted: list[WantedLora] = []
    for spec in specs:
        file = library.locate(spec.name, spec.sha256)
        digest = library.sha256(file)
        if any(w.sha256 == digest for w in wanted):
            raise StudioError(f"LoRA {spec.name!r} is listed twice — give it once, with the weights added up")
        wanted.append(WantedLora(file.name, digest, float(spec.weight), file.path))
    return wanted


class LoraAdapters:
    """The adapters loaded into one pipeline's transformer, and which are active at which weights."""

    def __init__(self, max_loaded: int = MAX_LOADED) -> None:
        self.max_loaded = max_loaded
        self._pipe: Any = None
        self._loaded: OrderedDict[str, tuple[str, LoraInfo]] = OrderedDict()
        self._state: tuple[tuple[str, float], ...] | None = None
        self.active: tuple[AppliedLora, ...] = ()
        self.last_switch_s = 0.0
        self.hotswaps = 0
        self.text_encoder_key: tuple[tuple[str, float], ...] = ()  # active CLIP adapters: part of the prompt cache key

    @property
    def loaded(self) -> dict[str, str]:
        """sha256 → adapter name of every adapter in the transformer."""
        return {sha: adapter for sha, (adapter, _) in self._loaded.items()}

    def activate(self, pipe: Any, wanted: Sequence[WantedLora]) -> tuple[AppliedLora, ...]:
        """Make exactly ``wanted`` active at their weights (loading new ones after checking them)."""
        started = time.perf_counter()
        if pipe is not self._pipe:
            self._pipe, self._state = pipe, None
            self._loaded.clear()
        control = self._wanted_control(pipe, wanted)
        if control != self._control_sha():
            self.clear()  # a Flux Control LoRA comes or goes: the model's own input layer and norms come back first
        keep = {lora.sha256 for lora in wanted}
        for lora in sorted(wanted, key=lambda w: w.sha256 != control):  # the Control LoRA widens the model first
            if lora.sha256 in self._loaded:
                self._loaded.move_to_end(lora.sha256)
                continue
            victim = self._victim(keep) if len(self._loaded) >= self.max_loaded else None
            swapped = self._hotswap(pipe, victim, lora) if victim else None
            self._loaded[lora.sha256] = swapped or self._load(pipe, lora)
            self._state = None
        self._evict(pipe, keep)
        state = tuple((self._loaded[lora.sha256][0], lora.weight) for lora in wanted)
        if state != self._state:
            transformer = pipe.transformer
            if state:
                transformer.enable_lora()
                transformer.set_adapters([a for a, _ in state], [w for _, w in state])
            elif self._loaded:
                transformer.disable_lora()
            self._switch_text_encoder(pipe, [(self._loaded[w.sha256], w.weight) for w in wanted])
            self._state = state
        self.active = tuple(AppliedLora(w.name, w.sha256, w.weight, *self._loaded[w.sha256]) for w in wanted)
        self.last_switch_s = time.perf_counter() - started
        for applied in self.active:
            log.info("LoRA %s", applied.summary)
        return self.active

    def _switch_text_encoder(self, pipe: Any, wanted: list[tuple[tuple[str, LoraInfo], float]]) -> None:
        """Activate the wanted LoRAs' CLIP parts at their weights (or turn CLIP LoRA layers off when none has one)."""
        from diffusers.loaders.lora_base import (
            disable_lora_for_text_encoder,
            enable_lora_for_text_encoder,
            set_adapters_for_text_encoder,
        )

        state = tuple((adapter, weight) for (adapter, info), weight in wanted if info.text_encoder)
        if state:
            enable_lora_for_text_encoder(pipe.text_encoder)
            set_adapters_for_text_encoder([a for a, _ in state], pipe.text_encoder, [w for _, w in state])
        elif any(info.text_encoder for _, info in self._loaded.values()):
            disable_lora_for_text_encoder(pipe.text_encoder)
        self.text_encoder_key = state

    def _wanted_control(self, pipe: Any, wanted: Sequence[WantedLora]) -> str | None:
        """The sha256 of the request's Flux Control LoRA (at most one), else None — told from loaded info or header."""
        controls = [lora for lora in wanted if self._is_control(pipe, lora)]
        if len(controls) > 1:
            raise StudioError(
                f"{controls[0].name} and {controls[1].name} are both Flux Control LoRAs — the model "
                "takes one control input; keep one of them"
            )
        return controls[0].sha256 if controls else None

    def _is_control(self, pipe: Any, lora: WantedLora) -> bool:
        if lora.sha256 in self._loaded:
            return self._loaded[lora.sha256][1].is_control
        return is_control_file(read_header(lora.path).shapes, pipe.transformer)

    def _control_sha(self) -> str | None:
        return next((sha for sha, (_, info) in self._loaded.items() if info.is_control), None)

    def _load(self, pipe: Any, lora: WantedLora) -> tuple[str, LoraInfo]:
        text_encoder = getattr(pipe, "text_encoder", None)
        prepared = prepare(lora.path, pipe.transformer, lora.sha256, text_encoder)  # raises before anything is touched
        adapter = f"lora_{lora.sha256[:16]}"
        try:
            with warnings.catch_warnings():
                # peft warns about target modules the state dict lacks; count_applied below is the real check
                warnings.filterwarnings("ignore", message=".*(inconsistency was discovered|peft_config)")
                load_prepared(pipe, prepared, adapter)
        except (ValueError, RuntimeError, KeyError, TypeError) as exc:
            _delete(pipe, adapter)
            raise StudioError(
                f"LoRA {lora.name} could not be applied ({exc}) — check the file with "
                f"`python -m studio lora inspect {lora.path}`"
            ) from None
        applied = count_applied(pipe.transformer, adapter) + count_applied(text_encoder, adapter)
        if applied != prepared.info.matched:
            _delete(pipe, adapter)
            raise StudioError(
                f"LoRA {lora.name}: only {applied} of {prepared.info.matched} checked modules took the weights — it "
                "was removed again; report this file"
            )
        log.info(
            "loaded LoRA %s (%s, rank %s): %s",
            lora.name,
            prepared.info.format,
            prepared.info.rank,
            prepared.info.summary,
        )
        return adapter, prepared.info

    def _victim(self, keep: set[str]) -> str | None:
        """The least recently used loaded LoRA that is not wanted now (sha256), if any."""
        return next((sha for sha in self._loaded if sha not in keep), None)

    def _hotswap(self, pipe: Any, victim: str, lora: WantedLora) -> tuple[str, LoraInfo] | None:
        """Replace ``victim``'s weights in place by ``lora``'s; None (victim deleted) when they are incompatible."""
        prepared = prepare(lora.path, pipe.transformer, lora.sha256, getattr(pipe, "text_encoder", None))
        adapter, old = self._loaded.pop(victim)
        if not (swappable(old) and swappable(prepared.info)):
            _delete(pipe, adapter)  # LoHa, DoRA and CLIP adapters are replaced by a fresh load
            return None
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*(inconsistency was discovered|peft_config)")
                _load_into_transformer(pipe, prepared, adapter, hotswap=True)
        except (ValueError, RuntimeError, KeyError, TypeError) as exc:
            log.info("LoRA %s cannot be hot-swapped into %s (%s); loading it fresh", lora.name, adapter, exc)
            _delete(pipe, adapter)
            return None
        if count_applied(pipe.transformer, adapter) < prepared.info.matched:
            pipe.transformer.delete_adapters([adapter])
            raise StudioError(
                f"LoRA {lora.name}: hot-swapping left layers without its weights — it was removed "
                "again; report this file"
            )
        self.hotswaps += 1
        log.info("hot-swapped LoRA %s into %s (%s)", lora.name, adapter, prepared.info.summary)
        return adapter, prepared.info

    def _evict(self, pipe: Any, keep: set[str]) -> None:
        while len(self._loaded) > self.max_loaded:
            victim = self._victim(keep)
            if victim is None:
                return
            adapter, _ = self._loaded.pop(victim)
            _delete(pipe, adapter)
            self._state = None

    def clear(self) -> None:
        """Remove every adapter (the transformer gets its original layers back)."""
        if self._pipe is not None and self._loaded:
            self._pipe.unload_lora_weights(reset_to_overwritten_params=True)  # also restores a Control LoRA's layers
            self._pipe.transformer._overwritten_params = None
        self._loaded.clear()
        self._state, self.active, self.text_encoder_key = None, (), ()


def swappable(info: LoraInfo) -> bool:
    """Whether an adapter can take part in a hot-swap: a plain LoRA on the transformer only (peft hot-swaps LoRA
    weights; LoHa, DoRA magnitudes and the text encoder are not covered)."""
    return info.kind == "lora" and info.format != "dora" and not info.text_encoder


def load_prepared(pipe: Any, prepared: PreparedLora, adapter: str) -> None:
    """Load a checked LoRA into the transformer (and its CLIP part into ``pipe.text_encoder``) as ``adapter``."""
    if prepared.info.kind == "loha":
        from studio.lora.lycoris import load_loha

        load_loha(pipe.transformer, _unprefixed(prepared.state_dict, "transformer."), adapter)
        if prepared.text_encoder_state_dict:
            load_loha(pipe.text_encoder, _unprefixed(prepared.text_encoder_state_dict, "text_encoder."), adapter)
        return
    if prepared.info.is_control:
        load_control_lora(pipe, prepared, adapter)
    else:
        _load_into_transformer(pipe, prepared, adapter)
    if prepared.text_encoder_state_dict:
        metadata = prepared.metadata if any(k.startswith("text_encoder.") for k in prepared.metadata or {}) else None
        pipe.load_lora_into_text_encoder(
            dict(prepared.text_encoder_state_dict),
            network_alphas=None,
            text_encoder=pipe.text_encoder,
            prefix="text_encoder",
            adapter_name=adapter,
            metadata=metadata,
            _pipeline=pipe,
        )


def _unprefixed(state_dict: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k.removeprefix(prefix): v for k, v in state_dict.items()}


def _delete(pipe: Any, adapter: str) -> None:
    """Remove ``adapter`` from the transformer and the text encoder (diffusers' delete_adapters does both)."""
    pipe.delete_adapters([adapter])


def load_control_lora(pipe: Any, prepared: PreparedLora, adapter: str) -> None:
    """Load a Flux Control LoRA the way diffusers' ``load_lora_weights`` does, keeping the checked peft metadata.

    diffusers widens ``x_embedder`` to the LoRA's input (the new columns start at zero; the old layer is kept in
    ``transformer._overwritten_params``), loads the adapter, and swaps in the LoRA's q/k norm scales (the originals
    kept in ``transformer._transformer_norm_layers``); ``unload_lora_weights(reset_to_overwritten_params=True)``
    undoes all three.
    """
    transformer = pipe.transformer
    lora_sd = {k: v for k, v in prepared.state_dict.items() if ".lora_" in k}
    norm_sd = {k: v for k, v in prepared.state_dict.items() if ".lora_" not in k}
    pipe._maybe_expand_transformer_param_shape_or_error_(transformer, lora_sd, dict(norm_sd))
    lora_sd = pipe._maybe_expand_lora_state_dict(transformer=transformer, lora_state_dict=lora_sd)
    pipe.load_lora_into_transformer(
        lora_sd,
        network_alphas=prepared.network_alphas,
        transformer=transformer,
        adapter_name=adapter,
        metadata=prepared.metadata,
        _pipeline=pipe,
    )
    if norm_sd:
        transformer._transformer_norm_layers = pipe._load_norm_into_transformer(
            dict(norm_sd), transformer=transformer, discard_original_layers=False
        )


def count_applied(model: Any, adapter: str) -> int:
    """How many of ``model``'s layers carry ``adapter`` (LoRA, DoRA or LoHa layers; 0 for no model)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    if model is None:
        return 0
    return sum(
        1
        for module in model.modules()
        if isinstance(module, BaseTunerLayer)
        and any(adapter in getattr(module, name, {}) for name in module.adapter_layer_names[:1])
    )


def apply_request_loras(
    pipe: Any, request: GenerationRequest, library: LoraLibrary, adapters: LoraAdapters
) -> GenerationRequest:
    """Activate the request's LoRAs on ``pipe`` and return the request with each LoRA's name and sha256 filled in."""
    wanted = resolve_specs(request.loras, library)
    adapters.activate(pipe, wanted)
    return request.replace(loras=tuple(LoraSpec(w.name, w.sha256, w.weight) for w in wanted))


def _load_into_transformer(pipe: Any, prepared: Any, adapter: str, hotswap: bool = False) -> None:
    """diffusers' ``load_lora_into_transformer`` with a prepared LoRA's state dict, alphas and metadata."""
    pipe.load_lora_into_transformer(
        dict(prepared.state_dict),
        network_alphas=prepared.network_alphas,
        transformer=pipe.transformer,
        adapter_name=adapter,
        metadata=prepared.metadata,
        _pipeline=pipe,
        hotswap=hotswap,
    )
