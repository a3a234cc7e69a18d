"""flux-mini training batches: ``--p-figure`` swaps in stick-figure scenes, and leaves batches alone at 0;
the lr schedule: warmup, then constant or (``--decay-steps``) a cosine down to a floor."""

from __future__ import annotations

import math

import torch

from training.train_base import Encoded, lr_scale, sample_indices


def encoded(n: int = 100) -> Encoded:
    empty = torch.zeros(1)
    return Encoded(torch.zeros(n, 1), empty, empty, empty, empty, empty, empty, torch.arange(0, n, 10))


def test_p_figure_zero_draws_the_plain_uniform_batch():
    enc = encoded()
    ours = sample_indices(torch.Generator().manual_seed(3), enc, 64, 0.0)
    plain = torch.randint(100, (64,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(ours, plain)  # earlier runs' batches are unchanged


def test_p_figure_swaps_in_stick_figure_scenes_at_that_rate():
    enc = encoded()
    figures = set(enc.figures.tolist())
    share = [
        sum(i in figures for i in sample_indices(torch.Generator().manual_seed(s), enc, 1000, p).tolist()) / 1000
        for s, p in ((0, 0.0), (1, 0.5), (2, 1.0))
    ]
    assert abs(share[0] - 0.1) < 0.04  # one scene in ten is a figure scene
    assert abs(share[1] - 0.55) < 0.06  # half swapped + a tenth of the rest
    assert share[2] == 1.0


def test_lr_is_constant_after_warmup_without_decay():
    assert lr_scale(0, 100) == 0.01 and lr_scale(99, 100) == 1.0 and lr_scale(50_000, 100) == 1.0


def test_lr_decay_is_a_cosine_from_the_runs_start_down_to_its_floor():
    # resumed 9 000 steps after the optimizer started; decay counts from the resume
    assert lr_scale(9_000, 100, 0, 6_000) == 1.0
    assert math.isclose(lr_scale(12_000, 100, 3_000, 6_000), 0.55)  # half-way: (1 + 0.1) / 2
    assert math.isclose(lr_scale(15_000, 100, 6_000, 6_000), 0.1)
    assert math.isclose(lr_scale(20_000, 100, 11_000, 6_000), 0.1)  # stays at the floor
    assert math.isclose(lr_scale(49, 100, 3_000, 6_000), 0.5 * 0.55)  # a fresh warmup scales the decayed lr
