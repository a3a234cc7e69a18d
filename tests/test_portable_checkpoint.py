"""Committed training checkpoints: safetensors round trip (tied T5 weights included) and starting from a model folder."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT
from training import portable_checkpoint
from training.spec import MiniSpec
from training.train_base import Models, init_weights

FLUX_MINI = ROOT / "assets" / "models" / "flux-mini"


def models() -> Models:
    return Models(MiniSpec(), FLUX_MINI)


def test_a_kept_checkpoint_loads_back_every_weight_and_its_state(tmp_path):
    torch.manual_seed(0)
    trained, ema = models(), models()
    portable_checkpoint.save(tmp_path, {"models": trained, "ema": ema}, {"step": 1234, "best": 0.5})
    assert portable_checkpoint.exists(tmp_path)
    assert not list(tmp_path.glob("*.tmp"))

    torch.manual_seed(1)
    fresh, fresh_ema = models(), models()
    assert not torch.equal(fresh.transformer.proj_out.weight, trained.transformer.proj_out.weight)
    state = portable_checkpoint.load(tmp_path, {"models": fresh, "ema": fresh_ema})
    assert state["step"] == 1234 and state["best"] == 0.5
    for ours, theirs in ((fresh, trained), (fresh_ema, ema)):
        mine, saved = ours.state_dict(), theirs.state_dict()
        assert mine.keys() == saved.keys()
        assert all(torch.equal(mine[k], saved[k]) for k in saved)
    # T5's embedding is tied (shared / encoder.embed_tokens): still one tensor after loading
    assert fresh.t5.shared.weight.data_ptr() == fresh.t5.encoder.embed_tokens.weight.data_ptr()

    teacher = models()  # what distill_guidance --teacher / train_base --init take from a kept folder: its EMA
    init_weights(teacher, tmp_path)
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in ema.state_dict().items())


def test_a_kept_checkpoint_refuses_modules_it_does_not_hold(tmp_path):
    portable_checkpoint.save(tmp_path, {"models": models()}, {"step": 1})
    with pytest.raises(ValueError, match="no weights for \\['ema'\\]"):
        portable_checkpoint.load(tmp_path, {"models": models(), "ema": models()})
    assert not portable_checkpoint.exists(tmp_path / "elsewhere")


def test_a_run_can_start_from_the_shipped_model_folder():
    torch.manual_seed(2)
    started = models()
    init_weights(started, FLUX_MINI)
    shipped = load_file(FLUX_MINI / "transformer" / "diffusion_pytorch_model.safetensors")
    ours = started.transformer.state_dict()
    assert shipped.keys() == ours.keys()
    assert all(torch.equal(ours[k], shipped[k]) for k in shipped)
    clip = load_file(FLUX_MINI / "text_encoder" / "model.safetensors")
    assert all(torch.equal(started.clip.state_dict()[k], v) for k, v in clip.items())
