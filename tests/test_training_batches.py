"""flux-mini training batches: ``--p-figure`` swaps in stick-figure scenes, and leaves batches alone at 0."""

from __future__ import annotations

import torch

from training.train_base import Encoded, sample_indices


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
    share = [sum(i in figures for i in sample_indices(torch.Generator().manual_seed(s), enc, 1000, p).tolist()) / 1000
             for s, p in ((0, 0.0), (1, 0.5), (2, 1.0))]
    assert abs(share[0] - 0.1) < 0.04  # one scene in ten is a figure scene
    assert abs(share[1] - 0.55) < 0.06  # half swapped + a tenth of the rest
    assert share[2] == 1.0
