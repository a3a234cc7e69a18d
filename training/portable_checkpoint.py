"""Training checkpoints that can be committed: safetensors weights plus a small JSON state, no pickle.

A long CPU training run spans sessions, and only what is committed survives a session (``runs/`` does not).
``save`` writes ``DIR/<name>.safetensors`` for each module (tied weights, e.g. T5's shared embedding, are stored
once — ``safetensors.torch.save_model``) and ``DIR/state.json`` (step, best score, anything JSON); ``load`` reads
them back into modules of the same architecture. The optimizer is deliberately not kept (it would triple the
size): a run resumed from here restarts AdamW with a fresh warmup.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

STATE = "state.json"


def exists(folder: Path) -> bool:
    """Whether ``folder`` holds a portable checkpoint."""
    return (folder / STATE).is_file()


def save(folder: Path, modules: dict[str, torch.nn.Module], state: dict) -> None:
    """Write ``modules`` (name → module) and ``state`` to ``folder``, replacing what was there atomically per file;
    ``state.json`` is written last, so a half-written checkpoint is never taken for a whole one."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, module in modules.items():
        tmp = folder / f"{name}.safetensors.tmp"
        save_model(module, str(tmp), metadata={"format": "pt"})
        tmp.replace(folder / f"{name}.safetensors")
    tmp = folder / f"{STATE}.tmp"
    tmp.write_text(json.dumps({**state, "modules": sorted(modules)}, indent=1) + "\n")
    tmp.replace(folder / STATE)


def load(folder: Path, modules: dict[str, torch.nn.Module]) -> dict:
    """Load each of ``modules`` from ``folder`` (strict: every weight must match) and return the saved state."""
    state = json.loads((folder / STATE).read_text())
    missing = sorted(set(modules) - set(state["modules"]))
    if missing:
        raise ValueError(f"{folder} has no weights for {missing}; it holds {state['modules']}")
    for name, module in modules.items():
        load_model(module, str(folder / f"{name}.safetensors"), strict=True)
    return state


def resume(folder: Path | None, modules: dict[str, torch.nn.Module], warmup: int) -> dict | None:
    """A run's start from its kept checkpoint: load ``modules`` and return the saved state, or None when ``folder``
    is unset or holds no checkpoint yet. The optimizer restarts, with ``warmup`` steps from the saved step."""
    if folder is None or not exists(folder):
        return None
    state = load(folder, modules)
    print(
        f"resumed at step {state['step']} from the kept checkpoint {folder}; fresh optimizer, {warmup} warmup steps",
        flush=True,
    )
    return state
