"""The decoder fine-tune learns from what FluxPipeline's last Euler step hands the VAE: x_σ − σ·v at the last σ."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import calculate_shift

from tests.conftest import ROOT
from training import train_base
from training.finetune_decoder import adaptive_weight, patch_discriminator

SCHEDULER = ROOT / "assets" / "models" / "flux-mini" / "scheduler"


def test_the_last_euler_step_returns_the_x0_estimate_at_the_last_sigma():
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(SCHEDULER)
    tokens = 16  # 64 px: 8x8 latents packed 2x2
    last = float(train_base.sampler_sigmas(scheduler, 4, tokens)[-1])
    cfg = scheduler.config
    mu = calculate_shift(tokens, cfg.base_image_seq_len, cfg.max_image_seq_len, cfg.base_shift, cfg.max_shift)
    pipeline_scheduler = copy.deepcopy(scheduler)
    pipeline_scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / 4, 4), mu=mu)  # as FluxPipeline does at 4 steps
    x = torch.randn(2, tokens, 64, generator=torch.Generator().manual_seed(0))
    v = torch.randn(2, tokens, 64, generator=torch.Generator().manual_seed(1))
    for t in pipeline_scheduler.timesteps[:-1]:
        x = pipeline_scheduler.step(v, t, x, return_dict=False)[0]
    final = pipeline_scheduler.step(v, pipeline_scheduler.timesteps[-1], x, return_dict=False)[0]
    assert abs(last - 0.345) < 0.01  # the σ the model card names
    torch.testing.assert_close(final, x - last * v)


def test_the_adversarial_term_is_balanced_at_the_decoders_last_layer():
    torch.manual_seed(0)
    last = torch.nn.Conv2d(4, 3, 3, padding=1)
    images = last(torch.randn(2, 4, 64, 64))
    disc = patch_discriminator()
    assert disc(images).shape == (2, 1, 14, 14)  # one logit per overlapping patch
    rec = images.abs().mean()
    adv = -disc(images).mean()
    weight = adaptive_weight(rec, adv, last.weight, scale=0.5)
    rec_norm = torch.autograd.grad(rec, last.weight, retain_graph=True)[0].norm()
    adv_norm = torch.autograd.grad(adv, last.weight, retain_graph=True)[0].norm()
    torch.testing.assert_close(weight, 0.5 * rec_norm / (adv_norm + 1e-4))
    assert not weight.requires_grad


def test_checkpoint_averaging_takes_the_elementwise_mean_and_refuses_mixed_models():
    from training.average_vae import average_states

    a = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.0])}
    b = {"w": torch.tensor([3.0, 6.0]), "b": torch.tensor([1.0])}
    mean = average_states([a, b])
    assert torch.equal(mean["w"], torch.tensor([2.0, 4.0])) and torch.equal(mean["b"], torch.tensor([0.5]))
    with pytest.raises(ValueError, match="different models"):
        average_states([a, {"w": torch.tensor([1.0, 2.0])}])


def test_outlined_training_scenes_are_hollow_one_object_training_split_scenes():
    from studio.toyworld import is_held_out
    from studio.toyworld.evaluate import evaluate_image, is_hollow
    from studio.toyworld.grammar import STICK_FIGURE, Scene
    from training.data import outlined_images, outlined_scenes

    scenes = outlined_scenes(12, 1000, "train")
    images = outlined_images(12, 0)
    assert images.shape == (12, 3, 128, 128) and images.min() >= -1 and images.max() <= 1
    for scene, image in zip(scenes, images, strict=True):
        assert scene.style == "outlined" and scene.objects[0].shape != STICK_FIGURE
        assert not any(is_held_out(obj) for obj in scene.objects)
        pixels = ((image.permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
        found = evaluate_image(pixels, Scene(scene.objects, scene.background, None)).objects[0]
        assert found.colour_ok and found.position_ok and is_hollow(found.mask)


def test_the_denoiser_estimates_the_scene_it_is_given_at_the_models_native_size():
    """The estimate is of the batch's own posterior mean: at a tiny σ it is that latent; at the sampler's last σ
    it is still far closer to the scene's latent than to another scene's."""
    from diffusers import AutoencoderKL

    from studio.toyworld import render_scene
    from studio.toyworld.grammar import scene_prompt, scene_set
    from training.finetune_decoder import Denoiser

    model = ROOT / "assets" / "models" / "flux-mini"
    scenes = scene_set("one", 2, seed=3, split="train")
    prompts = [scene_prompt(s) for s in scenes]
    denoiser = Denoiser(model, prompts, 128, guidance=2.0)
    assert (
        abs(
            denoiser.last_sigma
            - float(train_base.sampler_sigmas(FlowMatchEulerDiscreteScheduler.from_pretrained(SCHEDULER), 4, 64)[-1])
        )
        < 1e-6
    )
    vae = AutoencoderKL.from_pretrained(model / "vae").eval()
    x = torch.stack(
        [
            torch.from_numpy(render_scene(s, 128, k).image).permute(2, 0, 1).float() / 127.5 - 1
            for k, s in enumerate(scenes)
        ]
    )
    with torch.no_grad():
        mean = vae.encode(x).latent_dist.mean
    denoiser.last_sigma = 1e-4  # σ is clamped to 0.02 below: x0 ≈ x_σ − σ v stays near the clean latent
    estimate = denoiser.estimate(np.arange(2), mean, vae, torch.Generator().manual_seed(0))
    assert estimate.shape == mean.shape == (2, 16, 16, 16)
    own = (estimate - mean).abs().mean(dim=(1, 2, 3))
    other = (estimate - mean.flip(0)).abs().mean(dim=(1, 2, 3))
    assert (own < 0.25 * other).all(), (own, other)
