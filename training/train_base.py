"""Rectified-flow training of flux-mini's transformer jointly with its tiny T5 and CLIP text encoders (CPU, fp32).

    python -m training.train_base --seed 0 --steps 100000 --batch 32 --lr 2.5e-4 --warmup 100 --p-figure 0.3 \
        --model-dir DIR --run-dir runs/base128 --out runs/base128_export      # DIR: tokenizers, scheduler, VAE

Data: the toy scenes of ``training.data`` encoded once with the trained VAE (posterior mean, then
``(z - shift_factor) * scaling_factor`` — the inverse of FluxPipeline's decode), packed 2x2 like
``FluxPipeline._pack_latents``; prompts tokenized exactly as FluxPipeline does (CLIP padded to 77 → pooled
output; T5 padded to ``max_sequence_length`` = 32, no attention mask).

Objective: x_t = (1 - σ) x0 + σ ε, target v = ε - x0, transformer timestep = σ. σ ~ a mix of a logit-normal
shifted with the sampler's resolution-dependent ``mu`` (the pipeline's ``calculate_shift`` for the image tokens)
and the exact σ values that FluxPipeline visits at 4 steps (this emphasises high σ). 10 % of prompts are
dropped to the empty prompt (true CFG). The guidance embedding is fed g ~ U[1, 6] (NOT distilled: the model
learns to ignore it). EMA weights (decay 0.999) are what gets evaluated and exported.

Resumable: ``--run-dir``/ckpt.pt (models, EMA, optimizer, step) every ``--ckpt-minutes``. With ``--keep DIR``
each checkpoint also writes models + EMA + step as safetensors (``training.portable_checkpoint``) to a folder that
can be committed, and a run with no ``ckpt.pt`` resumes from it — ``runs/`` does not outlive a session. Every
``--eval-minutes`` the EMA weights are saved as a full diffusers folder, loaded with
``FluxPipeline.from_pretrained``, sampled at 4 steps (a PNG grid of fixed prompts under ``runs/base/samples``)
and scored with ToyGenEval on held-out one-object prompts; the best so far is exported to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import diffusers
import numpy as np
import torch
import torch.nn.functional as F
import transformers
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from PIL import Image
from transformers import CLIPTokenizer, T5TokenizerFast

from studio.toyworld import evaluate_many, prompt_set
from training import portable_checkpoint, torch_state
from training.build import make_clip, make_t5, make_transformer
from training.data import DEFAULT_DIR, ToyData, load_dataset, size_suffix
from training.spec import MiniSpec

diffusers.utils.logging.set_verbosity_error()
diffusers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

RUN_DIR = Path("runs/base")
MODEL_DIR = Path("assets/models/flux-mini")
SAMPLE_PROMPTS = (
    "a red circle in the top left on a white background",
    "a blue square in the center on a yellow background",
    "a green triangle in the bottom right on a black background",
    "a white stick figure in the center on a blue background",
    "a yellow triangle in the top right on a purple background",
    "an orange circle in the bottom left on a gray background",
    "a red square in the top left and a blue circle in the bottom right on a white background",
    "a black triangle in the top right and a green stick figure in the bottom left on an orange background",
)


@dataclass
class Encoded:
    """Training tensors: packed latents (N, 16, 64), T5 ids (N, L), CLIP ids (N, 77), empty-prompt ids."""

    latents: torch.Tensor
    t5_ids: torch.Tensor
    clip_ids: torch.Tensor
    empty_t5: torch.Tensor
    empty_clip: torch.Tensor
    img_ids: torch.Tensor
    txt_ids: torch.Tensor
    figures: torch.Tensor  # indices of the scenes with a stick figure (the hardest shape; see ``sample_indices``)
    pair_figures: torch.Tensor | None = None  # the two-object ones among them (``--figure-scenes two``)


def sample_indices(gen: torch.Generator, enc: Encoded, batch: int, p_figure: float) -> torch.Tensor:
    """A batch of scene indices; with ``p_figure`` > 0 each is swapped for a stick-figure scene with that chance."""
    idx = torch.randint(len(enc.latents), (batch,), generator=gen)
    if p_figure > 0 and len(enc.figures):
        swap = torch.rand(batch, generator=gen) < p_figure
        idx = torch.where(swap, enc.figures[torch.randint(len(enc.figures), (batch,), generator=gen)], idx)
    return idx


def tokenize(clip_tok: CLIPTokenizer, t5_tok: T5TokenizerFast, prompts: list[str], max_len: int) -> tuple:
    """Token ids exactly as FluxPipeline's ``_get_clip_prompt_embeds`` / ``_get_t5_prompt_embeds`` make them."""
    clip_ids = clip_tok(
        prompts, padding="max_length", max_length=clip_tok.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    t5_ids = t5_tok(prompts, padding="max_length", max_length=max_len, truncation=True, return_tensors="pt").input_ids
    return clip_ids, t5_ids


@torch.no_grad()
def encode_latents(vae: AutoencoderKL, data: ToyData, batch: int = 128) -> torch.Tensor:
    """Posterior means, normalised like the pipeline expects ((z - shift) * scale) and packed to (N, 16, 64)."""
    shift, scale = vae.config.shift_factor, vae.config.scaling_factor
    out = []
    for i in range(0, len(data), batch):
        z = vae.encode(data.tensor(slice(i, i + batch))).latent_dist.mean
        z = (z - shift) * scale
        b, c, h, w = z.shape
        out.append(FluxPipeline._pack_latents(z, b, c, h, w))
    return torch.cat(out)


def encoder_stamp(vae: AutoencoderKL) -> str:
    """Fingerprint of what the latents depend on: encoder weights, shift and scale (not the decoder)."""
    digest = hashlib.sha1(f"{vae.config.shift_factor} {vae.config.scaling_factor}".encode())
    for name, tensor in sorted(vae.encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().numpy().tobytes())
    return digest.hexdigest()


def prepare(
    seed: int,
    spec: MiniSpec,
    model_dir: Path,
    limit: int = 0,
    run_dir: Path = RUN_DIR,
    counts: tuple[int, int] = (10_000, 10_000),
    data_dir: Path | None = None,
) -> Encoded:
    """Load/encode the dataset at ``spec.native_size`` with the trained VAE (cached in ``run_dir``); tokenize prompts.

    ``counts``: one- and two-object scenes of ``training.data`` (cached in ``data_dir``). ``limit`` > 0 keeps only
    that many scenes, spread over one- and two-object ones (smoke tests).
    """
    data = load_dataset(seed, spec.native_size, *counts, root=data_dir)
    if limit:
        keep = np.linspace(0, len(data) - 1, limit).astype(int)
        data = ToyData(data.images[keep], [data.prompts[i] for i in keep], data.n_objects[keep])
    cache = run_dir / f"latents_s{seed}_{len(data)}{size_suffix(spec.native_size)}.pt"
    vae = AutoencoderKL.from_pretrained(model_dir / "vae").eval()
    stamp = encoder_stamp(vae)
    saved = torch_state.load(cache) if cache.exists() else None
    if saved is not None and saved["stamp"] == stamp:
        latents = saved["latents"]
    else:
        latents = encode_latents(vae, data)
        run_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"latents": latents, "stamp": stamp}, cache)
    print(f"latents {tuple(latents.shape)} mean {latents.mean():.3f} std {latents.std():.3f}", flush=True)
    clip_tok = CLIPTokenizer.from_pretrained(model_dir / "tokenizer")
    t5_tok = T5TokenizerFast.from_pretrained(model_dir / "tokenizer_2")
    clip_ids, t5_ids = tokenize(clip_tok, t5_tok, data.prompts, spec.max_sequence_length)
    empty_clip, empty_t5 = tokenize(clip_tok, t5_tok, [""], spec.max_sequence_length)
    img_ids, txt_ids = position_ids(spec.native_size, spec.max_sequence_length)
    figures = torch.tensor([i for i, prompt in enumerate(data.prompts) if "stick figure" in prompt], dtype=torch.long)
    pairs = torch.from_numpy(data.n_objects == 2)
    return Encoded(
        latents, t5_ids, clip_ids, empty_t5[0], empty_clip[0], img_ids, txt_ids, figures, figures[pairs[figures]]
    )


def position_ids(size: int, max_sequence_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """FLUX's image position ids for a ``size``-px square (one token per 16 px) and the all-zero text ids."""
    tokens = size // 16
    img_ids = FluxPipeline._prepare_latent_image_ids(1, tokens, tokens, torch.device("cpu"), torch.float32)
    return img_ids, torch.zeros(max_sequence_length, 3)


def sampler_sigmas(scheduler: FlowMatchEulerDiscreteScheduler, steps: int, image_seq_len: int) -> torch.Tensor:
    """The σ values FluxPipeline visits (before the final 0) at ``steps`` steps for this sequence length."""
    cfg = scheduler.config
    mu = calculate_shift(image_seq_len, cfg.base_image_seq_len, cfg.max_image_seq_len, cfg.base_shift, cfg.max_shift)
    sched = copy.deepcopy(scheduler)
    sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    return sched.sigmas[:-1].float().clone()


def sample_sigma(gen: torch.Generator, n: int, mu: float, visited: torch.Tensor, p_visited: float) -> torch.Tensor:
    """σ per sample: shifted logit-normal (FLUX time shift with ``mu``) or, with ``p_visited``, a sampler σ."""
    s = torch.sigmoid(torch.randn(n, generator=gen))
    s = math.exp(mu) / (math.exp(mu) + (1 / s - 1))
    pick = visited[torch.randint(len(visited), (n,), generator=gen)]
    use = torch.rand(n, generator=gen) < p_visited
    return torch.where(use, pick, s).clamp(1e-3, 1.0)


class Models(torch.nn.Module):
    """The trained parts: transformer, CLIP text encoder, T5 encoder."""

    def __init__(self, spec: MiniSpec, model_dir: Path = MODEL_DIR) -> None:
        super().__init__()
        clip_tok = CLIPTokenizer.from_pretrained(model_dir / "tokenizer")
        t5_tok = T5TokenizerFast.from_pretrained(model_dir / "tokenizer_2")
        self.transformer = make_transformer(spec)
        self.clip = make_clip(spec, clip_tok)
        self.t5 = make_t5(spec, t5_tok)

    def velocity(self, xt, sigma, guidance, clip_ids, t5_ids, img_ids, txt_ids) -> torch.Tensor:  # noqa: ANN001
        """The transformer's prediction, called exactly like FluxPipeline calls it."""
        pooled = self.clip(clip_ids, output_hidden_states=False).pooler_output
        seq = self.t5(t5_ids, output_hidden_states=False)[0]
        return self.transformer(
            hidden_states=xt,
            timestep=sigma,
            guidance=guidance,
            pooled_projections=pooled,
            encoder_hidden_states=seq,
            txt_ids=txt_ids,
            img_ids=img_ids,
            return_dict=False,
        )[0]


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * model, parameter-wise."""
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm, 1 - decay)


COMPONENTS = ("transformer", "text_encoder", "text_encoder_2", "vae")


def export(models: Models, out: Path, model_dir: Path = MODEL_DIR, run_dir: Path = RUN_DIR) -> None:
    """Write the trained components into the diffusers Flux folder ``out``.

    Tokenizers, scheduler, model_index.json and studio.json are copied byte for byte from ``model_dir``
    (never re-serialised); transformer / text_encoder / text_encoder_2 / vae come from ``save_pretrained``.
    """
    tmp = run_dir / "export_tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe = FluxPipeline.from_pretrained(
        model_dir, transformer=models.transformer, text_encoder=models.clip, text_encoder_2=models.t5
    )
    for name in COMPONENTS:
        getattr(pipe, name).save_pretrained(tmp / name, safe_serialization=True)
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != model_dir.resolve():
        for item in model_dir.iterdir():
            if item.name not in COMPONENTS:
                dest = out / item.name
                if item.is_dir():
                    shutil.rmtree(dest, ignore_errors=True)
                    shutil.copytree(item, dest)
                else:
                    shutil.copy(item, dest)
    for name in COMPONENTS:
        shutil.rmtree(out / name, ignore_errors=True)
        shutil.copytree(tmp / name, out / name)
    shutil.rmtree(tmp, ignore_errors=True)


def native_size(folder: Path) -> int:
    """The square size a flux-mini folder was trained at (``studio.json`` width; ``MiniSpec``'s when it has none)."""
    card = folder / "studio.json"
    default = MiniSpec().native_size
    return int(json.loads(card.read_text()).get("width", default)) if card.is_file() else default


@torch.no_grad()
def generate(
    folder: Path,
    prompts: list[str],
    steps: int = 4,
    guidance: float = 2.0,
    seed: int = 0,
    true_cfg: float = 1.0,
    size: int | None = None,
) -> list[np.ndarray]:
    """Sample ``prompts`` with the unchanged ``FluxPipeline.from_pretrained(folder)``; uint8 HxWx3 images, at
    ``size`` or else the folder's native size (its ``studio.json``)."""
    size = size or native_size(folder)
    pipe = FluxPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    images = []
    for i in range(0, len(prompts), 16):
        chunk = prompts[i : i + 16]
        gens = [torch.Generator().manual_seed(seed + i + k) for k in range(len(chunk))]
        extra = {"negative_prompt": [""] * len(chunk), "true_cfg_scale": true_cfg} if true_cfg > 1 else {}
        out = pipe(
            prompt=chunk,
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=size,
            width=size,
            generator=gens,
            output_type="np",
            max_sequence_length=32,
            **extra,
        ).images
        images += [(img * 255).round().clip(0, 255).astype(np.uint8) for img in out]
    return images


def save_grid(images: list[np.ndarray], path: Path, scale: int = 2) -> None:
    """Images side by side, upscaled (nearest) ``scale`` times."""
    row = np.concatenate(images, axis=1)
    Image.fromarray(row).resize((row.shape[1] * scale, row.shape[0] * scale), Image.NEAREST).save(path)


def evaluate_folder(
    folder: Path, n: int = 32, kind: str = "one", true_cfg: float = 1.0, size: int | None = None
) -> dict:
    """ToyGenEval of ``n`` held-out prompts at 4 steps (prompt k gets seed k, like ``studio eval``)."""
    prompts = prompt_set(kind, n, seed=0, split="heldout")
    images = generate(folder, prompts, true_cfg=true_cfg, size=size)
    return evaluate_many(zip(images, prompts, strict=True))


def periodic_eval(
    ema: Models,
    step: int,
    best: float,
    out: Path,
    n_eval: int,
    run_dir: Path = RUN_DIR,
    model_dir: Path = MODEL_DIR,
    size: int = 128,
) -> float:
    """Export EMA to ``run_dir``/eval_model, sample grid, held-out eval; export to ``out`` when best."""
    folder = run_dir / "eval_model"
    export(ema, folder, model_dir, run_dir)
    (run_dir / "samples").mkdir(exist_ok=True)
    save_grid(generate(folder, list(SAMPLE_PROMPTS), size=size), run_dir / "samples" / f"step_{step:06d}.png")
    scores = evaluate_folder(folder, n=n_eval, size=size)
    rec = {"step": step, "eval_one_heldout_4steps": scores, "time": time.strftime("%H:%M:%S")}
    print(json.dumps(rec), flush=True)
    with (run_dir / "eval.jsonl").open("a") as f:
        f.write(json.dumps(rec) + "\n")
    if scores["joint"] >= best:
        best = scores["joint"]
        export(ema, out, model_dir, run_dir)
        torch.save({"step": step, "joint": float(best), "ema": ema.state_dict()}, run_dir / "best.pt")
        print(f"exported best (joint {best:.3f}) at step {step} to {out}", flush=True)
    return best


def init_weights(models: Models, source: Path) -> None:
    """Load ``models`` from ``source``: a flux-mini diffusers folder (its transformer, CLIP and T5 weights), a kept
    checkpoint folder (``--keep``; its EMA) or a train_base ``ckpt.pt`` (its EMA weights)."""
    if portable_checkpoint.exists(source):
        step = portable_checkpoint.load(source, {"ema": models})["step"]
        print(f"initialised from the EMA weights of the kept checkpoint {source} (step {step})", flush=True)
    elif (source / "model_index.json").is_file():
        for name, module in (
            ("transformer", models.transformer),
            ("text_encoder", models.clip),
            ("text_encoder_2", models.t5),
        ):
            module.load_state_dict(type(module).from_pretrained(source / name).state_dict())
        print(f"initialised from the model folder {source}", flush=True)
    else:
        models.load_state_dict(torch_state.load(source)["ema"])
        print(f"initialised from the EMA weights of {source}", flush=True)


def lr_scale(step: int, warmup: int, decay_step: int = 0, decay_steps: int = 0, floor: float = 0.1) -> float:
    """Linear warmup, then constant (EMA does the averaging; runs can be extended).

    With ``decay_steps`` > 0 the lr then follows a cosine from 1 down to ``floor`` over ``decay_steps`` steps,
    ``decay_step`` counting them (0 at the step this run started or resumed at), and stays at ``floor``.
    """
    scale = min(1.0, (step + 1) / warmup)
    if decay_steps > 0:
        progress = min(1.0, decay_step / decay_steps)
        scale *= floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return scale


def train(args: argparse.Namespace) -> None:
    """Train or resume until ``args.steps`` or ``args.max_minutes``."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    spec = replace(MiniSpec(), native_size=args.size)
    run_dir, model_dir = args.run_dir, args.model_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    enc = prepare(args.seed, spec, model_dir, args.limit_data, run_dir, (args.n_one, args.n_two), args.data_dir)
    if args.figure_scenes == "two":  # oversample the smaller, two-object stick figures only
        enc = replace(enc, figures=enc.pair_figures)
    n = len(enc.latents)
    models = Models(spec, model_dir)
    ckpt = run_dir / "ckpt.pt"
    # --init: e.g. a shipped flux-mini folder; a kept checkpoint (loaded below) overrides its weights
    if args.init is not None and not ckpt.exists():
        init_weights(models, args.init)
    ema = copy.deepcopy(models).requires_grad_(False)
    groups = [
        {"params": list(models.transformer.parameters()), "lr": args.lr},
        {"params": list(models.clip.parameters()) + list(models.t5.parameters()), "lr": args.lr * args.text_lr_mult},
    ]
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.99), weight_decay=0.01)
    base_lrs = [g["lr"] for g in opt.param_groups]
    step, best, opt_start = 0, -1.0, 0  # opt_start: the step the optimizer (re)started at, for its warmup
    if ckpt.exists():
        state = torch_state.load(ckpt)
        models.load_state_dict(state["models"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step, best, opt_start = state["step"], state.get("best", -1.0), state.get("opt_start", 0)
        print(f"resumed at step {step} (best joint {best})", flush=True)
    elif kept := portable_checkpoint.resume(args.keep, {"models": models, "ema": ema}, args.warmup):
        step, best, opt_start = kept["step"], kept["best"], kept["step"]
    sched = FlowMatchEulerDiscreteScheduler.from_pretrained(model_dir / "scheduler")
    seq_len = enc.latents.shape[1]
    visited = sampler_sigmas(sched, spec.default_steps, seq_len)
    cfg = sched.config
    mu = calculate_shift(seq_len, cfg.base_image_seq_len, cfg.max_image_seq_len, cfg.base_shift, cfg.max_shift)
    print(f"sampler sigmas {visited.tolist()} mu {mu:.4f}; {n} training latents", flush=True)
    n_params = sum(p.numel() for p in models.transformer.parameters())
    print(f"transformer {n_params / 1e6:.2f} M params", flush=True)
    log = (run_dir / "log.jsonl").open("a")
    start = last_ckpt = last_eval = time.time()
    t_log, losses = time.time(), []
    first_step = step if args.decay_start < 0 else args.decay_start  # --decay-steps counts from here
    models.train()
    while step < args.steps:
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        idx = sample_indices(gen, enc, args.batch, args.p_figure)
        x0 = enc.latents[idx]
        drop = torch.rand(args.batch, generator=gen) < args.p_uncond
        t5_ids = torch.where(drop[:, None], enc.empty_t5[None], enc.t5_ids[idx])
        clip_ids = torch.where(drop[:, None], enc.empty_clip[None], enc.clip_ids[idx])
        sigma = sample_sigma(gen, args.batch, mu, visited, args.p_visited)
        guidance = 1.0 + 5.0 * torch.rand(args.batch, generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        s = sigma[:, None, None]
        xt = (1 - s) * x0 + s * noise
        pred = models.velocity(xt, sigma, guidance, clip_ids, t5_ids, enc.img_ids, enc.txt_ids)
        loss = F.mse_loss(pred, noise - x0)
        for g, base in zip(opt.param_groups, base_lrs, strict=True):
            g["lr"] = base * lr_scale(step - opt_start, args.warmup, max(0, step - first_step), args.decay_steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(models.parameters(), 1.0)
        opt.step()
        step += 1
        ema_update(ema, models, min(args.ema, (1 + step) / (10 + step)))
        losses.append(loss.item())
        if step % 50 == 0:
            rec = {
                "step": step,
                "loss": float(np.mean(losses)),
                "gnorm": float(gnorm),
                "s_per_step": (time.time() - t_log) / len(losses),
                "min": (time.time() - start) / 60,
            }
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(rec, flush=True)
            t_log, losses = time.time(), []
        now = time.time()
        done = step >= args.steps or (now - start) / 60 >= args.max_minutes
        # evaluate first, so the checkpoint's best score includes this step's
        if now - last_eval >= args.eval_minutes * 60 or done:
            t_eval = time.time()
            best = periodic_eval(ema, step, best, args.out, args.n_eval, run_dir, model_dir, args.size)
            last_eval = time.time()
            print(f"eval took {last_eval - t_eval:.1f}s", flush=True)
        if now - last_ckpt >= args.ckpt_minutes * 60 or done:
            tmp = run_dir / "ckpt.tmp"
            torch.save(
                {
                    "models": models.state_dict(),
                    "ema": ema.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step,
                    "best": float(best),
                    "opt_start": opt_start,
                    "args": torch_state.plain_args(args),
                },
                tmp,
            )
            tmp.replace(ckpt)
            if args.keep is not None:
                portable_checkpoint.save(
                    args.keep,
                    {"models": models, "ema": ema},
                    {"step": step, "best": best, "size": args.size, "seed": args.seed},
                )
            last_ckpt = now
        if done:
            break


def arg_parser() -> argparse.ArgumentParser:
    """The command-line options (also how ``training.train_all`` builds this stage's arguments)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--text-lr-mult", type=float, default=0.5)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--decay-steps",
        type=int,
        default=0,
        help="cosine-decay the lr to 0.1x over this many steps from this run's (re)start (0: constant)",
    )
    parser.add_argument(
        "--decay-start",
        type=int,
        default=-1,
        help="the step --decay-steps counts from (-1: this run's (re)start), so a resumed decay goes on where it was",
    )
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--p-uncond", type=float, default=0.1)
    parser.add_argument("--p-visited", type=float, default=0.3)
    parser.add_argument("--p-figure", type=float, default=0.0, help="extra share of stick-figure scenes per batch")
    parser.add_argument(
        "--figure-scenes",
        choices=("any", "two"),
        default="any",
        help="which stick-figure scenes --p-figure draws: any, or two-object scenes only",
    )
    parser.add_argument("--max-minutes", type=float, default=1e9)
    parser.add_argument("--ckpt-minutes", type=float, default=4.0)
    parser.add_argument("--eval-minutes", type=float, default=10.0)
    parser.add_argument("--n-eval", type=int, default=32)
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    parser.add_argument("--size", type=int, default=128, help="scene size in pixels (128: 64 image tokens)")
    parser.add_argument("--n-one", type=int, default=10_000, help="one-object training scenes (training.data)")
    parser.add_argument("--n-two", type=int, default=10_000, help="two-object training scenes")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR, help="where training.data caches the scenes")
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR, help="checkpoints, latents cache, logs, samples")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=MODEL_DIR,
        help="flux-mini folder giving the VAE, tokenizers and scheduler (and the export template)",
    )
    parser.add_argument(
        "--init",
        type=Path,
        default=None,
        help="weights that start a new run (ignored when resuming): a train_base ckpt.pt or kept "
        "folder (its EMA) or a flux-mini diffusers folder (its transformer and text encoders)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="a folder to commit: models + EMA as safetensors and the step, written with every "
        "checkpoint and resumed from (fresh optimizer) when --run-dir has no ckpt.pt",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one per free core)")
    parser.add_argument("--limit-data", type=int, default=0, help="use only this many scenes (smoke tests)")
    return parser


def main() -> None:
    train(arg_parser().parse_args())


if __name__ == "__main__":
    main()
