"""Reading a model's pipeline from where it lives (hub id, diffusers folder, single files), errors naming the fix."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from studio.core.errors import ModelMissing, StudioError
from studio.engine import flux2
from studio.models import families
from studio.models.catalog import ModelLocation

log = logging.getLogger(__name__)


def read(location: ModelLocation, quant: str, device: torch.device, dtype: torch.dtype) -> Any:
    """The model's pipeline (not yet on the device): ``from_pretrained`` for hub ids and diffusers folders (FLUX.2:
    the class its folder or hub id names, ``studio.engine.flux2``), diffusers' single-file loaders for model files
    (``studio.models.loading``); ModelMissing naming the fix."""
    from diffusers import FluxPipeline

    from studio.engine.quant import quantization_config, transformer_config
    from studio.models.loading import read_pipeline

    kwargs: dict[str, Any] = {"dtype": dtype}
    config = quantization_config(quant, device) if location.files is None else None
    if config is not None:
        kwargs["quantization_config"] = config
    started = time.perf_counter()
    try:
        if families.is_flux2(families.family_of(location)):
            pipe = flux2.read(location, kwargs)
        elif location.files is not None:
            pipe = read_pipeline(location.files, dtype, transformer_config(quant, device))
        else:
            pipe = FluxPipeline.from_pretrained(location.source, **kwargs)
    except StudioError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated into a message naming the fix
        raise load_error(location, exc) from exc
    log.info("read %s in %.1fs", location.name, time.perf_counter() - started)
    return pipe


def load_error(location: ModelLocation, exc: Exception) -> ModelMissing:
    """ModelMissing for a model that failed to load, naming the fix for where it comes from."""
    detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    if location.is_hub:
        return ModelMissing(
            f"could not load {location.name} from the Hugging Face Hub ({detail}) — check the network and, for "
            "FLUX.1-dev, accept its licence and run `hf auth login`; or download it and set STUDIO_MODEL to the folder"
        )
    if location.files is not None:
        return ModelMissing(
            f"the model files at {location.source} could not be loaded ({detail}) — check that the parts belong to "
            "one model and are complete (re-download a truncated file); `python -m studio model inspect "
            f"{location.source}` shows where each part comes from"
        )
    return ModelMissing(
        f"the model at {location.source} could not be loaded ({detail}) — its weights are missing or corrupt; "
        "re-download it, or rebuild the embedded model with `python -m training.build`"
    )
