"""Cancel at every phase — encode, denoise, decode, save: the job ends ``cancelled`` without images, nothing
half-saved stays on disk or in the history, and the engine serves the next request.

The cancel fires deterministically at the start of each phase: forward pre-hooks on the real text encoder (encode)
and VAE decoder (decode) of the resident pipeline, the step callback (denoise), and the Studio's phase listener
(save). Each test uses its own prompt so the text encoder really runs (encodings are cached by prompt).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from studio.core.request import GenerationRequest

PHASES = ("before-start", "encode", "denoise", "decode", "save")


def run_with_cancel_at(studio: Any, phase: str, prompt: str) -> tuple[dict[str, Any], list[str]]:
    """Generate with a cancel that fires when ``phase`` starts; return the record and the phases seen."""
    cancel = threading.Event()
    seen: list[str] = []
    pipe = studio.engine.pipe
    hooks = []

    def fire(name: str) -> Callable[..., None]:
        def hook(*_args: Any) -> None:
            seen.append(name)
            if name == phase:
                cancel.set()

        return hook

    hooks.append(pipe.text_encoder_2.register_forward_pre_hook(fire("encode")))
    hooks.append(pipe.vae.decoder.register_forward_pre_hook(fire("decode")))
    if phase == "before-start":
        cancel.set()
    on_step = (lambda update: fire("denoise")()) if phase == "denoise" else None
    try:
        record = studio.generate(
            GenerationRequest(prompt=prompt, seed=7, steps=3),
            on_step=on_step,
            cancel=cancel,
            on_phase=lambda name: fire(name)(),
        )
    finally:
        for handle in hooks:
            handle.remove()
    return record, seen


@pytest.mark.parametrize("phase", PHASES)
def test_cancel_at_each_phase_ends_cancelled_with_nothing_half_saved(studio, phase):
    prompt = f"a blue square in the center, cancelled at {phase}"
    record, seen = run_with_cancel_at(studio, phase, prompt)
    if phase != "before-start":
        assert phase in seen  # the cancel really fired inside that phase
    assert record["status"] == "cancelled" and record["images"] == [], record
    assert record["request"]["prompt"] == prompt and record["request"]["seed"] == 7  # the request is kept
    records, total = studio.store.list()
    assert total == 1 and records[0]["id"] == record["id"] and records[0]["status"] == "cancelled"
    assert not [p for p in studio.store.data_dir.rglob("*") if p.is_file() and p.suffix == ".png"]
    assert not studio.engine.busy
    after = studio.generate(GenerationRequest(prompt=prompt, seed=7, steps=3))  # the engine serves the next one
    assert after["status"] == "done" and len(after["images"]) == 1


def test_cancel_messages_name_the_phase(studio):
    reasons = {}
    for phase in ("decode", "save"):
        record, _ = run_with_cancel_at(studio, phase, f"a green triangle, {phase}")
        reasons[phase] = studio.store.get(record["id"])["error"]
    assert reasons == {"decode": "generation cancelled while decoding", "save": "generation cancelled while saving"}
