"""The end-to-end build hands each stage a complete set of that stage's own options."""

from __future__ import annotations

from pathlib import Path

from training import distill_guidance, train_all, train_base, train_vae


def _defaults(parser) -> set[str]:
    return set(vars(parser.parse_args([])))


def test_every_stage_gets_all_of_its_options_and_the_build_settings():
    args = train_all.arg_parser().parse_args(["--seed", "3", "--base-steps", "77", "--out", "somewhere/flux-mini"])
    vae_phases = train_all.vae_stage_args(args)
    base = train_all.base_stage_args(args)
    distill = train_all.distill_stage_args(args, best_init=0.5)
    assert [set(vars(v)) for v in vae_phases] == [_defaults(train_vae.arg_parser())] * 2
    assert set(vars(base)) == _defaults(train_base.arg_parser())
    assert set(vars(distill)) == _defaults(distill_guidance.arg_parser())
    assert [(v.steps, v.lr) for v in vae_phases] == [(1500, 1e-3), (2700, 5e-4)]
    assert vae_phases[0].out == Path("somewhere/flux-mini/vae")
    assert (base.seed, base.steps, base.size, base.init) == (3, 77, 64, None)
    assert base.out == base.model_dir == Path("somewhere/flux-mini")
    assert (distill.seed, distill.best_init, distill.lr, distill.size) == (3, 0.5, 2e-4, 64)
    assert distill.teacher == train_base.RUN_DIR / "ckpt.pt"
