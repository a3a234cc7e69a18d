"""Our sampling loop on the embedded model: bit-identical to FluxPipeline in the plain case; per-step CFG."""

from __future__ import annotations

import torch

from studio.engine import sampling

PROMPT = "a red circle in the top left on a white background"


def run_loop(pipe, seeds, plan, negative=None, size=64, steps=4, max_seq=32):
    cond = sampling.encode_prompt(pipe, PROMPT, None, max_seq).repeat(len(seeds))
    neg = sampling.encode_prompt(pipe, negative, None, max_seq).repeat(len(seeds)) if negative is not None else None
    latents, ids = sampling.prepare_noise(pipe, seeds, size, size, cond.prompt_embeds.dtype)
    scheduler, timesteps = sampling.make_scheduler(pipe, steps, latents.shape[1])
    return sampling.denoise(pipe, sampling.DenoiseInputs(latents, ids, cond, neg, plan, scheduler, timesteps))


def reference(pipe, seeds, **kwargs):
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    return pipe(
        PROMPT,
        generator=generators,
        num_images_per_prompt=len(seeds),
        height=64,
        width=64,
        max_sequence_length=32,
        output_type="latent",
        **kwargs,
    ).images


def test_constant_schedule_is_bit_identical_to_flux_pipeline(engine):
    pipe = engine.pipe
    ours = run_loop(pipe, [3, 4], sampling.StepPlan([3.5] * 4, [1.0] * 4))
    theirs = reference(pipe, [3, 4], num_inference_steps=4, guidance_scale=3.5)
    assert torch.equal(ours, theirs)


def test_true_cfg_is_bit_identical_to_flux_pipeline(engine):
    pipe = engine.pipe
    ours = run_loop(pipe, [5], sampling.StepPlan([3.5] * 4, [2.5] * 4), negative="a blue square")
    theirs = reference(
        pipe, [5], num_inference_steps=4, guidance_scale=3.5, true_cfg_scale=2.5, negative_prompt="a blue square"
    )
    assert torch.equal(ours, theirs)


def count_transformer_calls(pipe):
    calls = []
    handle = pipe.transformer.register_forward_hook(lambda *_: calls.append(1))
    return calls, handle


def test_negative_pass_runs_only_on_steps_with_cfg_above_one(engine):
    pipe = engine.pipe
    calls, handle = count_transformer_calls(pipe)
    try:
        run_loop(pipe, [1], sampling.StepPlan([3.5] * 6, [3.0, 3.0, 1.0, 1.0, 1.0, 1.0]), negative="", steps=6)
    finally:
        handle.remove()
    assert len(calls) == 6 + 2


def test_guidance_curve_changes_the_result_and_constant_curve_does_not(engine):
    pipe = engine.pipe
    flat = run_loop(pipe, [2], sampling.StepPlan([3.5] * 4, [1.0] * 4))
    shaped = run_loop(pipe, [2], sampling.StepPlan([8.0, 6.0, 2.0, 0.0], [1.0] * 4))
    assert not torch.equal(flat, shaped)


def test_progress_reports_every_step_with_an_x0_estimate(engine):
    pipe = engine.pipe
    seen = []
    cond = sampling.encode_prompt(pipe, PROMPT, None, 32)
    latents, ids = sampling.prepare_noise(pipe, [1], 64, 64, cond.prompt_embeds.dtype)
    scheduler, timesteps = sampling.make_scheduler(pipe, 3, latents.shape[1])
    plan = sampling.StepPlan([3.5] * 3, [1.0] * 3)
    out = sampling.denoise(
        pipe, sampling.DenoiseInputs(latents, ids, cond, None, plan, scheduler, timesteps, on_step=seen.append)
    )
    assert [s.step for s in seen] == [0, 1, 2] and all(s.total == 3 for s in seen)
    assert seen[-1].x0.shape == out.shape
    assert torch.allclose(seen[-1].x0, out)  # at the last step sigma is 0: the estimate is the result
