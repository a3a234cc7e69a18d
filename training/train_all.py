"""Rebuild the shipped 128-px flux-mini family from the repo alone, in one resumable command.

    python -m training.train_all --out runs/rebuild                 # the full recipe: days of one CPU thread
    python -m training.train_all --out runs/rebuild --threads 2     # both cores when nothing else runs
    python -m training.train_all --smoke --out runs/rebuild-smoke   # every stage, a few steps, 32 px: ~2 min

Stages (the model card's "How the 128-px family was made", from random init instead of the 64-px family):

1. ``build``: ``training.build`` — configs, toy-word tokenizers, random weights (``training.spec``) in
   ``OUT/flux-mini``, ``studio.json`` at ``--size`` naming ``../flux-mini-controlnet-union``, not guidance-distilled.
2. ``data``: ``training.data`` renders the 10 000 + 10 000 training scenes at ``--size`` (cached in ``OUT/data``).
3. ``vae``: ``training.train_vae`` from random init, batch 16: lr 1e-3 to step 1 500, then lr 5e-4 to 2 700.
4. ``decoder``: ``training.finetune_decoder`` (encoder frozen from here on), batch 8, lr 2e-4, 50 % stick-figure
   scenes, 1 000 steps.
5. ``base``: ``training.train_base`` (transformer + CLIP + T5 from random init), batch 32, 10 % empty prompts,
   g ~ U[1, 6]: lr 5e-4 (warm-up 200) to step 11 050, then lr 2.5e-4 with 30 % extra stick-figure scenes, the last
   5 000 steps on a cosine to 2.5e-5; 36 912 steps in all (the 64-px base's 18 830 plus the 128-px base's 18 082).
   The final EMA is exported (the shipped base is the last step too).
6. ``controlnet``: ``training.train_controlnet`` against that base, started from it (``make_controlnet``), batch
   32: lr 3e-4 to step 4 781, then lr 1e-4 to 6 325; then a fresh run from that net with 70 % of the canny maps
   drawn the way other tools draw them (``--canny-tools 0.7``, seed + 5, 3 000 + 1 000 scenes): lr 1e-4 to step
   2 615, then 5e-5 to 3 866; then one more fresh run from that net on new scenes (``--canny-tools 0.8``,
   seed + 6): lr 5e-5 to step 5 040.
7. ``lora``: ``training.train_outlined_lora`` on that base (5 000 steps, rank 16, batch 16, lr 1e-3, 2 048 scenes)
   into ``OUT/loras`` (+ the kohya copy), measured at true CFG 1 and 3.
8. ``decoder_gan``: the decoder of 4. fine-tuned on the base's own estimates with the patch-GAN, batch 8, lr 1e-4,
   30 % clean, 10 % outlined scenes: to step 1 000 at weight 0.5 (60 % stick figures), resumed to 1 800 at weight 0.8
   (80 % stick figures).
9. ``export``: ``OUT/flux-mini`` + ``OUT/flux-mini-controlnet-union`` + ``OUT/loras`` are the family; ``--install``
   copies them over ``assets/models`` and ``assets/loras`` (nothing under ``assets/`` is written otherwise).

Resumable: a finished stage is recorded in ``OUT/stages.json`` and skipped; an interrupted one resumes from its own
checkpoint under ``OUT/runs`` (rerun the same command). What is not rebuilt: the ``zwx-orange`` LoRA (``python -m
benchmarks.lora_style --steps 1500 --keep DIR`` on the rebuilt model) and the 64-px family the shipped weights
descend from — the rebuild follows the recipe at 128 px from random init, so it is a new training (other weights,
the same measured targets), see ``training/checkpoints/README.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import torch

from training import build, data, finetune_decoder, train_base, train_controlnet, train_outlined_lora, train_vae
from training.spec import MiniSpec

STAGES = ("build", "data", "vae", "decoder", "base", "controlnet", "lora", "decoder_gan", "export")
MODEL, CONTROLNET, LORAS = "flux-mini", "flux-mini-controlnet-union", "loras"


# ---- the recipe's numbers, and the smoke mode's (every stage, a handful of steps, tiny sizes) --------------------
FULL = {
    "size": 128,
    "n_one": 10_000,
    "n_two": 10_000,
    "vae": ((1500, 1e-3), (2700, 5e-4)),  # (up to step, lr) per phase
    "vae_batch": 16,
    "decoder_steps": 1000,
    "decoder_batch": 8,
    "base": 36_912,  # total steps
    "base_first": 11_050,  # end of the lr-5e-4 phase
    "base_decay": 5000,  # the last steps, on a cosine to 0.1x
    "base_batch": 32,
    "base_eval": (20.0, 32),  # every N minutes, n held-out prompts
    "controlnet": ((4781, 3e-4), (6325, 1e-4)),
    "controlnet_data": (6000, 2000),
    "controlnet_tools": ((2615, 1e-4), (3866, 5e-5)),  # then on tool-drawn canny maps, a fresh run
    "controlnet_tools_data": (3000, 1000),
    "controlnet_tools2": ((5040, 5e-5),),  # then again on new scenes, 80 % tool maps, a fresh run
    "controlnet_batch": 32,
    "lora": {"steps": 5000, "batch": 16, "n_train": 2048, "n_eval": 40, "true_cfg": [1.0, 3.0]},
    "gan": ((1000, 0.5, 0.6), (1800, 0.8, 0.8)),  # (up to step, GAN weight, stick-figure share)
    "gan_adv_start": 100,
    "n_outlined": 2048,
    "n_eval_outlined": 40,
    "ckpt_every": 50,
}
SMOKE = {
    "size": 32,
    "n_one": 24,
    "n_two": 24,
    "vae": ((2, 1e-3), (3, 5e-4)),
    "vae_batch": 2,
    "decoder_steps": 2,
    "decoder_batch": 2,
    "base": 4,
    "base_first": 2,
    "base_decay": 1,
    "base_batch": 2,
    "base_eval": (1e9, 2),  # only the final evaluation
    "controlnet": ((2, 3e-4), (3, 1e-4)),
    "controlnet_data": (6, 4),
    "controlnet_tools": ((2, 1e-4), (3, 5e-5)),
    "controlnet_tools_data": (6, 4),
    "controlnet_tools2": ((2, 5e-5),),
    "controlnet_batch": 2,
    "lora": {"steps": 2, "batch": 2, "n_train": 4, "n_eval": 1, "true_cfg": [1.0]},
    "gan": ((2, 0.5, 0.6), (3, 0.8, 0.8)),
    "gan_adv_start": 1,
    "n_outlined": 4,
    "n_eval_outlined": 2,
    "ckpt_every": 1,
}


def recipe(args: argparse.Namespace) -> dict:
    """The numbers this run uses: the full recipe or the smoke mode's, ``--size`` overriding the scene size."""
    plan = dict(SMOKE if args.smoke else FULL)
    if args.size:
        plan["size"] = args.size
    return plan


def _parse(parser: argparse.ArgumentParser, options: dict) -> argparse.Namespace:
    """A stage's own options: its parser's defaults with ``options`` (``--flag value``; True for bare flags)."""
    argv: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, list | tuple):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return parser.parse_args(argv)


def _common(args: argparse.Namespace, plan: dict) -> dict:
    return {"seed": args.seed, "size": plan["size"], "data_dir": args.out / "data"}


def vae_stage_args(args: argparse.Namespace, plan: dict) -> list[argparse.Namespace]:
    """``training.train_vae`` options for the VAE's two phases (one run folder, the second resumes the first)."""
    return [
        _parse(
            train_vae.arg_parser(),
            _common(args, plan)
            | {
                "steps": steps,
                "lr": lr,
                "batch": plan["vae_batch"],
                "n_one": plan["n_one"],
                "n_two": plan["n_two"],
                "ckpt_every": plan["ckpt_every"],
                "threads": args.threads,
                "run_dir": args.out / "runs" / "vae",
                "out": args.out / "runs" / "vae" / "out",
            },
        )
        for steps, lr in plan["vae"]
    ]


def decoder_stage_args(args: argparse.Namespace, plan: dict) -> argparse.Namespace:
    """``training.finetune_decoder`` options for the 128-px decoder (model card, step 1)."""
    return _parse(
        finetune_decoder.arg_parser(),
        _common(args, plan)
        | {
            "vae": args.out / "runs" / "vae" / "final",
            "steps": plan["decoder_steps"],
            "batch": plan["decoder_batch"],
            "lr": 2e-4,
            "p_figure": 0.5,
            "n_one": plan["n_one"],
            "n_two": plan["n_two"],
            "n_eval": plan["n_eval_outlined"],
            "ckpt_every": plan["ckpt_every"],
            "threads": args.threads,
            "run_dir": args.out / "runs" / "decoder",
            "out": args.out / MODEL / "vae",
        },
    )


def base_stage_args(args: argparse.Namespace, plan: dict) -> list[argparse.Namespace]:
    """``training.train_base`` options for the base's three phases (one run folder, each resumes the last)."""
    total, first, decay = plan["base"], plan["base_first"], plan["base_decay"]
    eval_minutes, n_eval = plan["base_eval"]
    shared = _common(args, plan) | {
        "batch": plan["base_batch"],
        "n_one": plan["n_one"],
        "n_two": plan["n_two"],
        "eval_minutes": eval_minutes,
        "n_eval": n_eval,
        "threads": args.threads,
        "model_dir": args.out / MODEL,
        "run_dir": args.out / "runs" / "base",
        "out": args.out / "runs" / "base" / "best",
    }
    phases = [
        {"steps": first, "lr": 5e-4, "warmup": 200},
        {"steps": total - decay, "lr": 2.5e-4, "warmup": 100, "p_figure": 0.3},
        {
            "steps": total,
            "lr": 2.5e-4,
            "warmup": 100,
            "p_figure": 0.3,
            "decay_steps": decay,
            "decay_start": total - decay,
        },
    ]
    return [_parse(train_base.arg_parser(), shared | phase) for phase in phases]


def controlnet_stage_args(args: argparse.Namespace, plan: dict) -> list[argparse.Namespace]:
    """``training.train_controlnet`` options for its phases, against the rebuilt base: two on the toy world's own
    maps, then a fresh run from that net (seed + 5) with 70 % of the canny maps drawn the way other tools draw
    them (``--canny-tools 0.7``), at lr 1e-4 and then 5e-5, then another fresh run on new scenes (seed + 6, 80 %)."""

    def phase(steps: int, lr: float, data: tuple[int, int], run: str, extra: dict) -> argparse.Namespace:
        options = {
            "seed": args.seed,
            "size": plan["size"],
            "steps": steps,
            "lr": lr,
            "batch": plan["controlnet_batch"],
            "n_one": data[0],
            "n_two": data[1],
            "threads": args.threads,
            "model": args.out / MODEL,
            "run_dir": args.out / "runs" / run,
            "out": args.out / CONTROLNET,
        }
        return _parse(train_controlnet.arg_parser(), {**options, **extra})

    tools = {"seed": args.seed + 5, "canny_tools": 0.7, "init": args.out / CONTROLNET}
    tools2 = {**tools, "seed": args.seed + 6, "canny_tools": 0.8}
    runs = (
        ("controlnet", plan["controlnet_data"], {}, plan["controlnet"]),
        ("controlnet_tools", plan["controlnet_tools_data"], tools, plan["controlnet_tools"]),
        ("controlnet_tools2", plan["controlnet_tools_data"], tools2, plan["controlnet_tools2"]),
    )
    return [phase(steps, lr, data, run, extra) for run, data, extra, phases in runs for steps, lr in phases]


def lora_stage_args(args: argparse.Namespace, plan: dict) -> argparse.Namespace:
    """``training.train_outlined_lora`` options: the studio's trainer on the rebuilt base, into ``OUT/loras``."""
    lora = plan["lora"]
    return _parse(
        train_outlined_lora.arg_parser(),
        {
            "seed": args.seed,
            "steps": lora["steps"],
            "batch": lora["batch"],
            "n_train": lora["n_train"],
            "n_eval": lora["n_eval"],
            "true_cfg": lora["true_cfg"],
            "model": args.out / MODEL,
            "out_dir": args.out / LORAS,
            "report": args.out / "runs" / "outlined_lora.json",
        },
    )


def decoder_gan_stage_args(args: argparse.Namespace, plan: dict) -> list[argparse.Namespace]:
    """``training.finetune_decoder`` options for the adversarial pass on the base's estimates (model card, step 5)."""
    return [
        _parse(
            finetune_decoder.arg_parser(),
            _common(args, plan)
            | {
                "vae": args.out / "runs" / "decoder" / "final",
                "denoiser": args.out / MODEL,
                "guidance": 2.0,
                "steps": steps,
                "batch": plan["decoder_batch"],
                "lr": 1e-4,
                "adversarial": weight,
                "adv_start": plan["gan_adv_start"],
                "p_figure": p_figure,
                "p_clean": 0.3,
                "p_outlined": 0.1,
                "n_outlined": plan["n_outlined"],
                "n_one": plan["n_one"],
                "n_two": plan["n_two"],
                "n_eval": plan["n_eval_outlined"],
                "snapshots": True,
                "ckpt_every": plan["ckpt_every"],
                "threads": args.threads,
                "run_dir": args.out / "runs" / "decoder_gan",
                "out": args.out / MODEL / "vae",
            },
        )
        for steps, weight, p_figure in plan["gan"]
    ]


# ---- the stages ---------------------------------------------------------------------------------------------------
def run_build(args: argparse.Namespace, plan: dict) -> dict:
    spec = replace(MiniSpec(), native_size=plan["size"])
    folder = args.out / MODEL
    build.build_pipeline(spec, args.seed).save_pretrained(folder, safe_serialization=True)
    card = build.studio_defaults(spec) | {"controlnets": {"union": f"../{CONTROLNET}"}, "guidance_distilled": False}
    (folder / "studio.json").write_text(json.dumps(card, indent=2) + "\n")
    return {"folder": str(folder)}


def run_data(args: argparse.Namespace, plan: dict) -> dict:
    rendered = data.load_dataset(args.seed, plan["size"], plan["n_one"], plan["n_two"], args.out / "data")
    return {"scenes": len(rendered)}


def run_vae(args: argparse.Namespace, plan: dict) -> dict:
    phases = vae_stage_args(args, plan)
    for phase in phases:
        vae = train_vae.train(phase)
    report = train_vae.finish(vae, phases[-1])
    shutil.copytree(phases[-1].out, args.out / MODEL / "vae", dirs_exist_ok=True)  # the encoder every stage uses
    return report


def run_decoder(args: argparse.Namespace, plan: dict) -> dict:
    return finetune_decoder.run(decoder_stage_args(args, plan))


def run_base(args: argparse.Namespace, plan: dict) -> dict:
    phases = base_stage_args(args, plan)
    for phase in phases:
        train_base.train(phase)
    last = phases[-1]
    models = train_base.Models(MiniSpec(), last.model_dir)
    train_base.init_weights(models, last.run_dir / "ckpt.pt")  # the final EMA, as shipped
    train_base.export(models, last.model_dir, last.model_dir, last.run_dir)
    evals = (last.run_dir / "eval.jsonl").read_text().splitlines()
    return json.loads(evals[-1]) if evals else {}


def run_controlnet(args: argparse.Namespace, plan: dict) -> dict:
    for phase in controlnet_stage_args(args, plan):
        train_controlnet.train(phase)
    return {"folder": str(args.out / CONTROLNET)}


def run_lora(args: argparse.Namespace, plan: dict) -> dict:
    return train_outlined_lora.run(lora_stage_args(args, plan))


def run_decoder_gan(args: argparse.Namespace, plan: dict) -> dict:
    report = {}
    for phase in decoder_gan_stage_args(args, plan):
        report = finetune_decoder.run(phase)
    return report


def run_export(args: argparse.Namespace, plan: dict) -> dict:
    """The family is already in place under ``OUT``; ``--install`` copies it over the shipped one."""
    if not args.install:
        return {"installed": False}
    assets = Path("assets")
    for name in (MODEL, CONTROLNET):
        shutil.rmtree(assets / "models" / name, ignore_errors=True)
        shutil.copytree(args.out / name, assets / "models" / name)
    for path in (args.out / LORAS).rglob("*.safetensors"):
        dest = assets / "loras" / path.relative_to(args.out / LORAS)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    return {"installed": True}


RUNNERS = {
    "build": run_build,
    "data": run_data,
    "vae": run_vae,
    "decoder": run_decoder,
    "base": run_base,
    "controlnet": run_controlnet,
    "lora": run_lora,
    "decoder_gan": run_decoder_gan,
    "export": run_export,
}


def arg_parser() -> argparse.ArgumentParser:
    """The rebuild's options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/rebuild"), help="where everything is written")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="every stage for a few steps at 32 px (a CI check)")
    parser.add_argument("--size", type=int, default=0, help="scene size in pixels (0: 128, or 32 with --smoke)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per stage (one per free core)")
    parser.add_argument(
        "--install", action="store_true", help="at the end copy the family over assets/models and assets/loras"
    )
    parser.add_argument("--only", choices=STAGES, nargs="+", help="run just these stages (others must be done)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = arg_parser().parse_args(argv)
    plan = recipe(args)
    args.out.mkdir(parents=True, exist_ok=True)
    ledger_path = args.out / "stages.json"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.is_file() else {}
    if ledger.get("plan", {}).get("size", plan["size"]) != plan["size"]:
        raise SystemExit(f"{args.out} holds a {ledger['plan']['size']}-px rebuild; use another --out")
    ledger["plan"] = {"smoke": args.smoke, "size": plan["size"], "seed": args.seed}
    torch.set_num_threads(args.threads)
    for stage in STAGES:
        done = stage in ledger.get("done", {})
        if (args.only and stage not in args.only) or (done and stage != "export"):
            print(f"[train_all] {stage}: {'done' if done else 'skipped'}", flush=True)
            continue
        print(f"[train_all] {stage} …", flush=True)
        started = time.time()
        result = RUNNERS[stage](args, plan)
        ledger.setdefault("done", {})[stage] = {"seconds": round(time.time() - started, 1), "result": result}
        ledger_path.write_text(json.dumps(ledger, indent=1, default=str) + "\n")
    print(f"[train_all] the family is in {args.out}", flush=True)
    return ledger


if __name__ == "__main__":
    main()
