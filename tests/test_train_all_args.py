"""The one rebuild command (``training.train_all``) hands each stage a complete set of that stage's own options, with
the shipped 128-px recipe's numbers, and writes only under ``--out``."""

from __future__ import annotations

from pathlib import Path

from training import finetune_decoder, train_all, train_base, train_controlnet, train_outlined_lora, train_vae


def _defaults(parser) -> set[str]:
    return set(vars(parser.parse_args([])))


def _stages(argv: list[str]):
    args = train_all.arg_parser().parse_args(argv)
    plan = train_all.recipe(args)
    return (
        args,
        plan,
        {
            "vae": train_all.vae_stage_args(args, plan),
            "decoder": [train_all.decoder_stage_args(args, plan)],
            "base": train_all.base_stage_args(args, plan),
            "controlnet": train_all.controlnet_stage_args(args, plan),
            "lora": [train_all.lora_stage_args(args, plan)],
            "decoder_gan": train_all.decoder_gan_stage_args(args, plan),
        },
    )


PARSERS = {
    "vae": train_vae.arg_parser,
    "decoder": finetune_decoder.arg_parser,
    "base": train_base.arg_parser,
    "controlnet": train_controlnet.arg_parser,
    "lora": train_outlined_lora.arg_parser,
    "decoder_gan": finetune_decoder.arg_parser,
}


def test_every_stage_gets_all_of_its_options_and_the_128px_recipe():
    args, plan, stages = _stages(["--seed", "3", "--out", "somewhere"])
    for name, phases in stages.items():
        assert all(set(vars(p)) == _defaults(PARSERS[name]()) for p in phases), name
    assert plan["size"] == 128 and not args.install
    assert [(v.steps, v.lr, v.size, v.seed) for v in stages["vae"]] == [(1500, 1e-3, 128, 3), (2700, 5e-4, 128, 3)]
    decoder = stages["decoder"][0]
    assert (decoder.steps, decoder.batch, decoder.lr, decoder.p_figure, decoder.size) == (1000, 8, 2e-4, 0.5, 128)
    assert decoder.vae == Path("somewhere/runs/vae/final") and decoder.out == Path("somewhere/flux-mini/vae")
    base = stages["base"]
    assert [(b.steps, b.lr, b.p_figure, b.decay_steps) for b in base] == [
        (11_050, 5e-4, 0.0, 0),
        (31_912, 2.5e-4, 0.3, 0),
        (36_912, 2.5e-4, 0.3, 5000),
    ]
    assert base[-1].decay_start == 31_912 and {b.size for b in base} == {128} and {b.init for b in base} == {None}
    assert {b.model_dir for b in base} == {Path("somewhere/flux-mini")}
    tools_init = Path("somewhere/flux-mini-controlnet-union")
    assert [(c.steps, c.lr, c.init, c.canny_tools, c.seed, c.n_one) for c in stages["controlnet"]] == [
        (4781, 3e-4, None, 0.0, 3, 6000),
        (6325, 1e-4, None, 0.0, 3, 6000),
        (2615, 1e-4, tools_init, 0.7, 8, 3000),
        (3866, 5e-5, tools_init, 0.7, 8, 3000),
        (5040, 5e-5, tools_init, 0.8, 9, 3000),
    ]
    assert [c.run_dir.name for c in stages["controlnet"]][-3:] == [
        "controlnet_tools",
        "controlnet_tools",
        "controlnet_tools2",
    ]
    lora = stages["lora"][0]
    assert (lora.steps, lora.rank, lora.batch, lora.n_train) == (5000, 16, 16, 2048)
    gan = stages["decoder_gan"]
    assert [(g.steps, g.adversarial, g.p_figure) for g in gan] == [(1000, 0.5, 0.6), (1800, 0.8, 0.8)]
    assert {(g.denoiser, g.guidance, g.p_outlined, g.adv_start) for g in gan} == {
        (Path("somewhere/flux-mini"), 2.0, 0.1, 100)
    }


def test_nothing_is_written_outside_out_without_install():
    _, _, stages = _stages(["--out", "somewhere"])
    for name, phases in stages.items():
        for phase in phases:
            for key, value in vars(phase).items():
                if isinstance(value, Path) and key not in ("vae", "init", "keep", "preserve", "disc_from"):
                    assert value.parts[0] == "somewhere", (name, key, value)


def test_smoke_mode_is_tiny_and_the_size_defaults_are_128():
    _, plan, stages = _stages(["--smoke", "--out", "x"])
    assert plan["size"] == 32 and plan["base"] <= 10 and plan["n_one"] <= 32
    assert max(p.steps for phases in stages.values() for p in phases) <= 10
    for parser in (train_vae, finetune_decoder, train_base, train_controlnet):
        assert parser.arg_parser().parse_args([]).size == 128
