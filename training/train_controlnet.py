"""Train flux-mini's union ControlNet (canny, depth, pose) against a base model (``--model``), which stays frozen.

    python -m training.train_controlnet --seed 0 --steps 4781 --batch 32 --model runs/base128_export \
        --run-dir runs/controlnet128 --out runs/controlnet128/out

Model: ``FluxControlNetModel`` with the base transformer's geometry (all 2 double + 2 single blocks, weights copied
from the base by ``FluxControlNetModel.from_transformer``; the residual projections start at zero, so step 0 changes
nothing) and ``num_mode=10``: a union net whose control modes are those of Shakker-Labs' Union-Pro (canny 0,
depth 2, pose 4), which is what the studio sets per control unit (``studio.engine.conditioning.control.UNION_MODES``).

Data: toy scenes of the training split (one and two objects) rendered with their control maps
(``studio.toyworld.render_scene``); each sample gets one control kind (pose only for scenes with a stick figure).
Images and control maps are encoded once with the model's VAE exactly as the studio does (``encode_control``:
VAE mode, shift/scale, 2x2 packing; cached per size and encoder weights); prompts are embedded at each start with
the text encoders of the base it trains against (``--model``).

Objective: FLUX's velocity loss through the frozen base with the ControlNet's residuals added,
σ as in ``training.train_base`` (shifted logit-normal mixed with the 4-step sampler's σ), guidance g ~ U[1, 6],
10 % empty prompts (control alone must still work). Against a guidance-distilled base (none ships now),
``--distilled-guidance-max G`` trains at g ~ U[1, G] on v_u + g·(ε − x0 − v_u) (v_u: the base's empty-prompt
velocity without control), the blend such a base predicts at g. EMA of the ControlNet is exported with ``save_pretrained`` to
``--out`` (loadable by ``FluxControlNetModel.from_pretrained``); resumable from ``--run-dir``/ckpt.pt, and
with ``--keep DIR`` from a committable safetensors copy (net + EMA + step) when ``runs/`` is gone.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, FluxControlNetModel, FluxPipeline
from diffusers.pipelines.flux.pipeline_flux import calculate_shift

from studio.engine.conditioning.control import UNION_MODES
from studio.toyworld import render_scene, scene_prompt, scene_set, tool_maps
from studio.toyworld.grammar import STICK_FIGURE
from training import portable_checkpoint, torch_state, train_base
from training.data import size_suffix
from training.spec import MiniSpec

RUN_DIR = Path("runs/controlnet")
MODEL_DIR = train_base.MODEL_DIR
OUT_DIR = Path("assets/models/flux-mini-controlnet-union")
KINDS = ("canny", "depth", "pose")


@dataclass
class ControlData:
    """Encoded training set: packed image latents, packed control latents, mode ids, text embeddings."""

    latents: torch.Tensor
    controls: torch.Tensor
    modes: torch.Tensor
    seq: torch.Tensor
    pooled: torch.Tensor
    empty_seq: torch.Tensor
    empty_pooled: torch.Tensor


def pack(vae: AutoencoderKL, images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) → normalised, packed VAE latents (the mode), as the studio encodes images and controls."""
    out = []
    for i in range(0, len(images), 128):
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + 128])).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        z = vae.encode(x).latent_dist.mode()
        z = (z - vae.config.shift_factor) * vae.config.scaling_factor
        b, c, h, w = z.shape
        out.append(FluxPipeline._pack_latents(z, b, c, h, w))
    return torch.cat(out)


def pick_kind(scene_has_figure: bool, rng: np.random.Generator) -> str:
    """A control kind for a training scene: pose only where there is a stick figure to pose."""
    if scene_has_figure and rng.random() < 0.5:
        return "pose"
    return KINDS[int(rng.integers(2))]


@torch.no_grad()
def build_data(
    seed: int,
    n_one: int,
    n_two: int,
    spec: MiniSpec,
    model_dir: Path = MODEL_DIR,
    run_dir: Path = RUN_DIR,
    canny_tools: float = 0.0,
) -> ControlData:
    """Render and VAE-encode the training scenes and their control maps (cached in ``run_dir`` per size and VAE
    encoder), then embed the prompts with ``model_dir``'s text encoders (seconds; they change as the base trains).
    ``canny_tools``: the share of canny samples whose map is drawn the way other tools draw it from the antialiased
    scene (``studio.toyworld.tool_maps.training_map``)."""
    scenes = scene_set("one", n_one, seed=seed * 2 + 101, split="train")
    scenes += scene_set("two", n_two, seed=seed * 2 + 102, split="train")
    vae = AutoencoderKL.from_pretrained(model_dir / "vae").eval()
    stamp = train_base.encoder_stamp(vae)
    tools = f"_aatools{canny_tools:g}" if canny_tools else ""
    cache = run_dir / f"control_latents_s{seed}_{n_one}x1_{n_two}x2{size_suffix(spec.native_size)}{tools}.pt"
    saved = torch_state.load(cache) if cache.exists() else None
    if saved is None or saved["stamp"] != stamp:
        rng = np.random.default_rng(seed)
        tool_rng = np.random.default_rng(seed + 1_000)  # its own stream: the kinds drawn stay those of a plain run
        size = spec.native_size
        images = np.empty((len(scenes), size, size, 3), np.uint8)
        controls = np.empty_like(images)
        modes = []
        for i, scene in enumerate(scenes):
            rendered = render_scene(scene, size, seed * 7_000_003 + i)
            kind = pick_kind(any(o.shape == STICK_FIGURE for o in scene.objects), rng)
            images[i], controls[i] = rendered.image, rendered.control(kind)
            if kind == "canny" and canny_tools and tool_rng.random() < canny_tools:
                smooth = tool_maps.antialiased(scene, size, seed * 7_000_003 + i)
                tool_map = tool_maps.training_map(smooth, tool_rng)
                if tool_map is not None:  # an empty grey-level map teaches nothing: keep the own map then
                    controls[i] = tool_map
            modes.append(UNION_MODES[kind])
        saved = {
            "latents": pack(vae, images),
            "controls": pack(vae, controls),
            "modes": torch.tensor(modes),
            "stamp": stamp,
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        torch.save(saved, cache)
    pipe = FluxPipeline.from_pretrained(model_dir, transformer=None, vae=None)
    prompts = [scene_prompt(s) for s in scenes]
    seqs, pools = [], []
    for i in range(0, len(prompts), 256):
        seq, pooled, _ = pipe.encode_prompt(prompts[i : i + 256], None, max_sequence_length=spec.max_sequence_length)
        seqs.append(seq)
        pools.append(pooled)
    empty_seq, empty_pooled, _ = pipe.encode_prompt([""], None, max_sequence_length=spec.max_sequence_length)
    return ControlData(
        saved["latents"],
        saved["controls"],
        saved["modes"],
        torch.cat(seqs),
        torch.cat(pools),
        empty_seq[0],
        empty_pooled[0],
    )


def make_controlnet(transformer: torch.nn.Module) -> FluxControlNetModel:
    """A union ControlNet as deep as the base, initialised from it (zero residual projections)."""
    cfg = transformer.config
    donor = FluxControlNetModel.from_transformer(
        transformer,
        num_layers=cfg.num_layers,
        num_single_layers=cfg.num_single_layers,
        attention_head_dim=cfg.attention_head_dim,
        num_attention_heads=cfg.num_attention_heads,
    )
    config = {k: v for k, v in donor.config.items() if not k.startswith("_")}
    net = FluxControlNetModel.from_config({**config, "num_mode": 10})
    missing, unexpected = net.load_state_dict(donor.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("controlnet_mode_embedder") for k in missing), (missing, unexpected)
    return net


@torch.no_grad()
def distilled_target(
    base: torch.nn.Module,
    xt: torch.Tensor,
    sigma: torch.Tensor,
    guidance: torch.Tensor,
    conditional: torch.Tensor,
    data: ControlData,
    img_ids: torch.Tensor,
    txt_ids: torch.Tensor,
) -> torch.Tensor:
    """``v_u + g·(conditional − v_u)``, v_u the base's velocity for the empty prompt at g = 1 without control.

    A guidance-distilled base at guidance g predicts this blend, not the plain conditional velocity, so a
    ControlNet trained on ``ε − x0`` at g > 1 would have to undo the base's guidance (as for the LoRA trainer's
    ``distilled_guidance_max``).
    """
    batch = xt.shape[0]
    uncond = base(
        hidden_states=xt,
        timestep=sigma,
        guidance=torch.ones_like(guidance),
        pooled_projections=data.empty_pooled[None].expand(batch, -1),
        encoder_hidden_states=data.empty_seq[None].expand(batch, -1, -1),
        txt_ids=txt_ids,
        img_ids=img_ids,
        return_dict=False,
    )[0]
    return uncond + guidance[:, None, None] * (conditional - uncond)


def train(args: argparse.Namespace) -> None:
    """Train (or resume) until ``args.steps`` or ``args.max_minutes``; export the EMA net to ``args.out``."""
    torch.set_num_threads(args.threads)
    spec = replace(MiniSpec(), native_size=args.size)
    run_dir = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    data = build_data(args.seed, args.n_one, args.n_two, spec, args.model, run_dir, args.canny_tools)
    n = len(data.latents)
    base = FluxPipeline.from_pretrained(
        args.model, text_encoder=None, text_encoder_2=None, vae=None, tokenizer=None, tokenizer_2=None
    ).transformer
    base.requires_grad_(False).eval()
    ckpt = run_dir / "ckpt.pt"
    # --init: e.g. the shipped net; without it the net starts from the base (make_controlnet). A kept checkpoint
    # (loaded below) overrides either
    if args.init is not None and not ckpt.exists():
        net = FluxControlNetModel.from_pretrained(args.init).train()
    else:
        net = make_controlnet(base).train()
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    step = opt_start = 0  # opt_start: the step the optimizer (re)started at, for its warmup
    if ckpt.exists():
        state = torch_state.load(ckpt)
        net.load_state_dict(state["net"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step, opt_start = state["step"], state.get("opt_start", 0)
        print(f"resumed at step {step}", flush=True)
    elif kept := portable_checkpoint.resume(args.keep, {"net": net, "ema": ema}, args.warmup):
        step = opt_start = kept["step"]
    sched = train_base.FlowMatchEulerDiscreteScheduler.from_pretrained(args.model / "scheduler")
    seq_len = data.latents.shape[1]
    visited = train_base.sampler_sigmas(sched, spec.default_steps, seq_len)
    c = sched.config
    mu = calculate_shift(seq_len, c.base_image_seq_len, c.max_image_seq_len, c.base_shift, c.max_shift)
    img_ids, txt_ids = train_base.position_ids(spec.native_size, spec.max_sequence_length)
    print(f"{n} samples; controlnet {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M params", flush=True)
    log = (run_dir / "log.jsonl").open("a")
    start = last_ckpt = time.time()
    losses: list[float] = []
    g_max = args.distilled_guidance_max or 6.0  # plain targets keep the original g ~ U[1, 6]
    while step < args.steps:
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        idx = torch.randint(n, (args.batch,), generator=gen)
        x0 = data.latents[idx]
        drop = (torch.rand(args.batch, generator=gen) < args.p_uncond)[:, None]
        seq = torch.where(drop[:, :, None], data.empty_seq[None], data.seq[idx])
        pooled = torch.where(drop, data.empty_pooled[None], data.pooled[idx])
        sigma = train_base.sample_sigma(gen, args.batch, mu, visited, args.p_visited)
        guidance = 1.0 + (g_max - 1.0) * torch.rand(args.batch, generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        s = sigma[:, None, None]
        xt = (1 - s) * x0 + s * noise
        target = noise - x0
        if args.distilled_guidance_max:
            target = distilled_target(base, xt, sigma, guidance, target, data, img_ids, txt_ids)
        common = {
            "hidden_states": xt,
            "timestep": sigma,
            "guidance": guidance,
            "pooled_projections": pooled,
            "encoder_hidden_states": seq,
            "txt_ids": txt_ids,
            "img_ids": img_ids,
            "return_dict": False,
        }
        blocks, singles = net(
            controlnet_cond=data.controls[idx],
            controlnet_mode=data.modes[idx][:, None],
            conditioning_scale=1.0,
            **common,
        )
        pred = base(controlnet_block_samples=blocks, controlnet_single_block_samples=singles, **common)[0]
        loss = F.mse_loss(pred, target)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step - opt_start + 1) / args.warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        train_base.ema_update(ema, net, min(args.ema, (1 + step) / (10 + step)))
        losses.append(loss.item())
        if step % 50 == 0:
            rec = {"step": step, "loss": float(np.mean(losses)), "min": round((time.time() - start) / 60, 2)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(rec, flush=True)
            losses = []
        now = time.time()
        done = step >= args.steps or (now - start) / 60 >= args.max_minutes
        if now - last_ckpt >= args.ckpt_minutes * 60 or done:
            torch.save(
                {
                    "net": net.state_dict(),
                    "ema": ema.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step,
                    "opt_start": opt_start,
                    "args": torch_state.plain_args(args),
                },
                run_dir / "ckpt.tmp",
            )
            (run_dir / "ckpt.tmp").replace(ckpt)
            if args.keep is not None:
                portable_checkpoint.save(
                    args.keep, {"net": net, "ema": ema}, {"step": step, "size": args.size, "seed": args.seed}
                )
            ema.save_pretrained(args.out, safe_serialization=True)
            last_ckpt = now
            print(f"checkpoint at step {step}; exported EMA to {args.out}", flush=True)
        if done:
            break


def arg_parser() -> argparse.ArgumentParser:
    """The command-line options (also how ``training.train_all`` builds this stage's arguments)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--ema", type=float, default=0.995)
    parser.add_argument("--p-uncond", type=float, default=0.1)
    parser.add_argument("--p-visited", type=float, default=0.4)
    parser.add_argument("--n-one", type=int, default=6000)
    parser.add_argument("--n-two", type=int, default=2000)
    parser.add_argument("--max-minutes", type=float, default=1e9)
    parser.add_argument("--ckpt-minutes", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument(
        "--distilled-guidance-max",
        type=float,
        default=0.0,
        help="train at g ~ U[1, MAX] on guidance-distilled targets (for a distilled base; 0: plain "
        "velocity target at g ~ U[1, 6])",
    )
    parser.add_argument("--size", type=int, default=128, help="scene size in pixels (128: 64 image tokens)")
    parser.add_argument(
        "--canny-tools",
        type=float,
        default=0.0,
        help="share of canny samples whose map is drawn as other tools draw it from the antialiased scene",
    )
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR, help="checkpoint, data cache and log folder")
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="a FluxControlNetModel folder to start a new run from (ignored when resuming)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="a folder to commit: net + EMA as safetensors and the step, written with every "
        "checkpoint and resumed from (fresh optimizer) when --run-dir has no ckpt.pt",
    )
    parser.add_argument("--model", type=Path, default=MODEL_DIR, help="the base model folder it trains against")
    return parser


def main() -> None:
    train(arg_parser().parse_args())


if __name__ == "__main__":
    main()
