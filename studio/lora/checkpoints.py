"""A LoRA training run's files: its resumable checkpoint (tensors only, loaded with ``weights_only=True``) and the
finished adapter, written atomically."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from studio.lora.training_inputs import TrainingConfig

log = logging.getLogger(__name__)
ADAPTER = "studio-training"
CHECKPOINT_EVERY = 50


def fingerprint(config: TrainingConfig, size: int, captions: Sequence[str], latents: torch.Tensor, model: str) -> str:
    """What must match for a checkpoint to be resumed (all settings but the step count, the data, the model)."""
    digest = hashlib.sha256()
    settings = {k: v for k, v in asdict(config).items() if k != "steps"} | {"resolution": size, "model": model}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update("\n".join(captions).encode())
    digest.update(latents.float().cpu().numpy().round(3).tobytes())
    return digest.hexdigest()


def checkpoint_path(out_dir: Path, name: str) -> Path:
    """Where a run's resumable checkpoint lives (outside the LoRA folder, whose scan lists pickles)."""
    return Path(out_dir).parent / ".lora-training" / f"{name}.pt"


def load_checkpoint(path: Path, fingerprint: str, steps: int) -> dict[str, Any] | None:
    """The saved state to resume from, or None: no file, another run's, already finished, or not loadable safely.

    Loaded with ``weights_only=True`` (tensors and plain containers only), so a planted pickle runs no code; a file
    that fails to load is reported in one warning line and ignored (training starts fresh, then overwrites it).
    """
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        usable = (
            isinstance(state, dict)
            and state.get("fingerprint") == fingerprint
            and isinstance(state.get("step"), int)
            and 0 <= state["step"] < steps
        )
    except Exception as exc:  # noqa: BLE001 - any unreadable/unsafe file: start fresh (and say so)
        reason = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()[0][:160] if str(exc).strip() else ""
        log.warning(
            "ignoring the training checkpoint %s: it cannot be loaded safely (%s: %s) — training starts fresh",
            path,
            type(exc).__name__,
            reason,
        )
        return None
    return state if usable else None


def save_checkpoint(
    path: Path, transformer: Any, optimizer: Any, gen: torch.Generator, step: int, losses: list[float], fingerprint: str
) -> None:
    from peft import get_peft_model_state_dict

    path.parent.mkdir(parents=True, exist_ok=True)
    lora = {
        k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(transformer, adapter_name=ADAPTER).items()
    }
    state = {
        "fingerprint": fingerprint,
        "step": step,
        "lora": lora,
        "optimizer": optimizer.state_dict(),
        "generator": gen.get_state(),
        "losses": torch.tensor(losses, dtype=torch.float64),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def write_atomically(final: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
