"""Widening the VAE (training.widen_vae) keeps its latent space: the wide copy encodes and decodes as the shipped one."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL

from tests.conftest import ROOT
from training.widen_vae import widen_vae

VAE = ROOT / "assets" / "models" / "flux-mini" / "vae"


@pytest.fixture(scope="module")
def narrow() -> AutoencoderKL:
    return AutoencoderKL.from_pretrained(VAE).eval()


def test_the_wide_vae_computes_what_the_narrow_one_does(narrow):
    channels = tuple(2 * c for c in narrow.config.block_out_channels)
    wide = widen_vae(narrow, channels, noise=0.05, seed=3)
    assert tuple(wide.config.block_out_channels) == channels
    assert sum(p.numel() for p in wide.parameters()) > 3 * sum(p.numel() for p in narrow.parameters())
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        a, b = narrow.encode(images).latent_dist, wide.encode(images).latent_dist
        assert torch.allclose(a.mean, b.mean, atol=1e-4) and torch.allclose(a.logvar, b.logvar, atol=1e-4)
        assert torch.allclose(narrow.decode(a.mean).sample, wide.decode(a.mean).sample, atol=1e-4)
    # the symmetry-breaking noise is really there: the decoder's tiled copies differ
    weight = wide.decoder.up_blocks[3].resnets[0].conv2.weight
    half = weight.shape[1] // 2
    assert not torch.allclose(weight[:, :half], weight[:, half:])


def test_mixed_factors_are_refused_because_a_learned_shortcut_would_be_lost(narrow):
    with pytest.raises(ValueError, match="one whole multiple"):
        widen_vae(narrow, (32, 64, 64, 64))
