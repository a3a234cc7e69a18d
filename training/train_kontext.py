"""Train flux-mini further as a FLUX.1 Kontext-style reference-editing model (CPU, fp32, one thread).

    python -m training.train_kontext --init assets/models/flux-mini --run-dir /tmp/runs/kontext \
        --out assets/models/flux-mini-kontext --max-minutes 100

Conditioning exactly as diffusers' ``FluxKontextPipeline``: the reference image's latents (VAE posterior mode,
``(z - shift_factor) * scaling_factor``) are packed 2x2 like the image latents and joined AFTER the noisy image
tokens along the sequence; their position ids are the image ids with the first coordinate set to 1; the
transformer sees one timestep for the whole sequence and its output is cut back to the image tokens. So the
objective is flux-mini's rectified flow (x_t = (1 - σ) x0 + σ ε, target ε - x0, σ from ``train_base.sample_sigma``
with the sampler's ``mu`` for the 64 target tokens) on the target tokens only, with the clean reference tokens
appended. Data: ``training.kontext_data`` families (training-split objects only), the four instruction kinds
balanced in every batch (sample b has kind b mod 4). Every ``--t2i-every``-th step is a plain text-to-image batch
(no reference; the family images with their scene prompts, 10 % empty prompts) so text-to-image is kept.

Text: flux-mini's tokenizers are kept as they are. They have no whole-word token for "make", "move", "turn",
"into" or "to", but both spell them from single-character pieces (CLIP BPE ``m a k e</w>``, T5 unigram
``▁m a k e``) — no unknown token — so the instructions are representable and the tiny CLIP and T5 are fine-tuned
(at ``--text-lr-mult`` of the lr) to read them; the folder stays tokenizer- and shape-compatible with flux-mini.

Resumable: ``RUN_DIR/ckpt/`` holds models + EMA (``training.portable_checkpoint``, safetensors), the AdamW
moments (``opt.safetensors``) and the step, every ``--ckpt-minutes`` and at the end. Every ``--eval-minutes``
the EMA is exported to ``RUN_DIR/eval_model`` and scored on held-out edits (``training.evaluate_kontext``); the
end of the run (``--steps`` or ``--max-minutes``) exports the EMA to ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from safetensors.torch import load_file, save_file
from transformers import CLIPTokenizer, T5TokenizerFast

from studio.toyworld import held_out_split, scene_prompt
from training import portable_checkpoint
from training.kontext_data import KINDS, Families, build_families
from training.spec import MiniSpec
from training.train_base import (
    Models,
    ema_update,
    encoder_stamp,
    export,
    init_weights,
    lr_scale,
    position_ids,
    sample_sigma,
    sampler_sigmas,
    tokenize,
)

RUN_DIR = Path("/tmp/runs/kontext")
MODEL_DIR = Path("assets/models/flux-mini")
OUT_DIR = Path("assets/models/flux-mini-kontext")


def reference_ids(size: int) -> torch.Tensor:
    """The reference tokens' position ids: the image ids with the first coordinate 1 (``FluxKontextPipeline``)."""
    ids = position_ids(size, 1)[0].clone()
    ids[..., 0] = 1
    return ids


@torch.no_grad()
def encode_images(vae: AutoencoderKL, images: np.ndarray, batch: int = 64) -> torch.Tensor:
    """Packed latents (N, tokens, 64): posterior mode (as the pipeline's ``sample_mode="argmax"``), normalised."""
    shift, scale = vae.config.shift_factor, vae.config.scaling_factor
    out = []
    t0 = time.time()
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch])).permute(0, 3, 1, 2).float() / 127.5 - 1
        z = (vae.encode(x).latent_dist.mode() - shift) * scale
        b, c, h, w = z.shape
        out.append(FluxPipeline._pack_latents(z, b, c, h, w))
        if (i // batch) % 20 == 0:
            print(f"encoded {i + len(x)}/{len(images)} ({time.time() - t0:.0f}s)", flush=True)
    return torch.cat(out)


def kind_cycle(weights: str) -> tuple[str, ...]:
    """The order kinds take in an edit batch: ``"background=3,move=2"`` repeats those kinds (others once)."""
    counts = dict.fromkeys(KINDS, 1)
    for part in filter(None, (p.strip() for p in weights.split(","))):
        kind, _, n = part.partition("=")
        if kind not in counts or not n.isdigit() or int(n) < 1:
            raise SystemExit(f"--kind-weights: {part!r} is not KIND=N with KIND one of {', '.join(KINDS)} and N ≥ 1")
        counts[kind] = int(n)
    return tuple(k for k in KINDS for _ in range(counts[k]))


class Data:
    """Encoded families: latents, token ids per scene prompt and per instruction, edit pairs per kind."""

    def __init__(self, args: argparse.Namespace, spec: MiniSpec) -> None:
        self.kind_cycle = kind_cycle(args.kind_weights)
        fam: Families = build_families(args.families, spec.native_size, args.seed)
        cache = args.run_dir / f"latents_fam{args.families}_s{args.seed}_{spec.native_size}px.pt"
        vae = AutoencoderKL.from_pretrained(args.model_dir / "vae").eval()
        stamp = encoder_stamp(vae)
        saved = torch.load(cache, weights_only=True) if cache.exists() else None
        if saved is not None and saved["stamp"] == stamp and len(saved["latents"]) == len(fam.scenes):
            self.latents = saved["latents"]
        else:
            self.latents = encode_images(vae, fam.images)
            torch.save({"latents": self.latents, "stamp": stamp}, cache)
        self.fam = fam
        self.clip_tok = CLIPTokenizer.from_pretrained(args.model_dir / "tokenizer")
        self.t5_tok = T5TokenizerFast.from_pretrained(args.model_dir / "tokenizer_2")
        self.max_len = spec.max_sequence_length
        train = held_out_split().train
        self.t2i = torch.tensor([i for i, s in enumerate(fam.scenes) if s.objects[0].combo in train])
        prompts = [scene_prompt(s) for s in fam.scenes]
        self.scene_clip, self.scene_t5 = tokenize(self.clip_tok, self.t5_tok, prompts, self.max_len)
        self.empty_clip, self.empty_t5 = tokenize(self.clip_tok, self.t5_tok, [""], self.max_len)
        self.edits = {k: torch.from_numpy(v) for k, v in fam.edits.items()}
        self.figure_share = args.figure_share
        self.figure_edits = {k: torch.from_numpy(v) for k, v in fam.figure_edits().items()}
        self._ids: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        counts = {k: len(v) for k, v in fam.edits.items()}
        print(
            f"{len(fam.scenes)} images, latents {tuple(self.latents.shape)}, {len(self.t2i)} t2i scenes, "
            f"edits per kind {counts}",
            flush=True,
        )

    def instruction_ids(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        if prompt not in self._ids:
            clip, t5 = tokenize(self.clip_tok, self.t5_tok, [prompt], self.max_len)
            self._ids[prompt] = (clip[0], t5[0])
        return self._ids[prompt]

    def edit_batch(self, gen: torch.Generator, batch: int) -> tuple:
        """(reference latents, target latents, CLIP ids, T5 ids) for ``batch`` edits; sample b's kind is
        ``kind_cycle[b mod its length]`` (the four kinds in turn unless ``--kind-weights`` says otherwise); with
        ``--figure-share`` that share of them is drawn from the edits with a stick figure."""
        refs, tgts, clips, t5s = [], [], [], []
        for b in range(batch):
            kind = self.kind_cycle[b % len(self.kind_cycle)]
            figure = self.figure_share > 0 and float(torch.rand(1, generator=gen)) < self.figure_share
            pairs = self.figure_edits[kind] if figure else self.edits[kind]
            pair = pairs[int(torch.randint(len(pairs), (1,), generator=gen))]
            clip, t5 = self.instruction_ids(self.fam.prompt(kind, pair.numpy()))
            refs.append(int(pair[0]))
            tgts.append(int(pair[1]))
            clips.append(clip)
            t5s.append(t5)
        return self.latents[refs], self.latents[tgts], torch.stack(clips), torch.stack(t5s)

    def t2i_batch(self, gen: torch.Generator, batch: int, p_uncond: float) -> tuple:
        """(latents, CLIP ids, T5 ids) of ``batch`` training-split scenes with their prompts (some emptied)."""
        idx = self.t2i[torch.randint(len(self.t2i), (batch,), generator=gen)]
        drop = torch.rand(batch, generator=gen) < p_uncond
        clip = torch.where(drop[:, None], self.empty_clip, self.scene_clip[idx])
        t5 = torch.where(drop[:, None], self.empty_t5, self.scene_t5[idx])
        return self.latents[idx], clip, t5


def write_card(folder: Path, spec: MiniSpec, model_dir: Path) -> None:
    """Make ``folder`` a Kontext folder: model_index names ``FluxKontextPipeline``; studio.json of its own."""
    index = json.loads((model_dir / "model_index.json").read_text())
    index["_class_name"] = "FluxKontextPipeline"
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    base = json.loads((model_dir / "studio.json").read_text())
    card = {
        "name": "flux-mini-kontext",
        "width": spec.native_size,
        "height": spec.native_size,
        "steps": base.get("steps", spec.default_steps),
        "guidance": base.get("guidance", 2.0),
        "max_sequence_length": spec.max_sequence_length,
        "kontext": True,
        "guidance_distilled": base.get("guidance_distilled", False),
    }
    (folder / "studio.json").write_text(json.dumps(card, indent=2) + "\n")


def export_kontext(ema: Models, out: Path, spec: MiniSpec, args: argparse.Namespace) -> None:
    export(ema, out, args.model_dir, args.run_dir)
    write_card(out, spec, args.model_dir)


def save_ckpt(folder: Path, models: Models, ema: Models, opt: torch.optim.Optimizer, state: dict) -> None:
    """Weights (safetensors via ``portable_checkpoint``) and AdamW moments (safetensors), then the state."""
    folder.mkdir(parents=True, exist_ok=True)
    flat = {}
    for i, st in opt.state_dict()["state"].items():
        for key, value in st.items():
            flat[f"{i}.{key}"] = value.detach().reshape(-1) if key == "step" else value.detach()
    save_file(flat, str(folder / "opt.safetensors.tmp"))
    (folder / "opt.safetensors.tmp").replace(folder / "opt.safetensors")
    portable_checkpoint.save(folder, {"models": models, "ema": ema}, state)


def load_ckpt(folder: Path, models: Models, ema: Models, opt: torch.optim.Optimizer) -> dict:
    state = portable_checkpoint.load(folder, {"models": models, "ema": ema})
    flat = load_file(str(folder / "opt.safetensors"))
    sd = opt.state_dict()
    opt_state: dict = {}
    for name, value in flat.items():
        i, key = name.split(".", 1)
        opt_state.setdefault(int(i), {})[key] = value.reshape(()) if key == "step" else value
    sd["state"] = opt_state
    opt.load_state_dict(sd)
    return state


def periodic_eval(ema: Models, step: int, spec: MiniSpec, args: argparse.Namespace) -> dict:
    from training.evaluate_kontext import evaluate  # imported late: it pulls in the pipelines

    folder = args.run_dir / "eval_model"
    export_kontext(ema, folder, spec, args)
    (args.run_dir / "samples").mkdir(exist_ok=True)
    scores = evaluate(
        folder, args.n_eval_per_kind, args.n_eval_t2i, grid=args.run_dir / "samples" / f"step_{step:06d}.png"
    )
    rec = {"step": step, **scores, "time": time.strftime("%H:%M:%S")}
    print(json.dumps(rec), flush=True)
    with (args.run_dir / "eval.jsonl").open("a") as f:
        f.write(json.dumps(rec) + "\n")
    return scores


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    spec = replace(MiniSpec(), native_size=args.size)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    data = Data(args, spec)
    models = Models(spec, args.model_dir)
    ckpt = args.run_dir / "ckpt"
    if not portable_checkpoint.exists(ckpt):
        init_weights(models, args.init)
    ema = copy.deepcopy(models).requires_grad_(False)
    groups = [
        {"params": list(models.transformer.parameters()), "lr": args.lr},
        {"params": list(models.clip.parameters()) + list(models.t5.parameters()), "lr": args.lr * args.text_lr_mult},
    ]
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.99), weight_decay=0.01)
    base_lrs = [g["lr"] for g in opt.param_groups]
    step = 0
    if portable_checkpoint.exists(ckpt):
        step = load_ckpt(ckpt, models, ema, opt)["step"]
        print(f"resumed at step {step} from {ckpt}", flush=True)
    sched = FlowMatchEulerDiscreteScheduler.from_pretrained(args.model_dir / "scheduler")
    img_ids, txt_ids = position_ids(spec.native_size, spec.max_sequence_length)
    seq_len = img_ids.shape[0]
    joint_ids = torch.cat([img_ids, reference_ids(spec.native_size)])
    visited = sampler_sigmas(sched, spec.default_steps, seq_len)
    cfg = sched.config
    mu = calculate_shift(seq_len, cfg.base_image_seq_len, cfg.max_image_seq_len, cfg.base_shift, cfg.max_shift)
    print(f"sampler sigmas {visited.tolist()} mu {mu:.4f}; {seq_len} image + {seq_len} reference tokens", flush=True)
    log = (args.run_dir / "log.jsonl").open("a")
    start = last_ckpt = last_eval = time.time()
    t_log, losses = time.time(), {"edit": [], "t2i": []}
    models.train()
    first_step = step
    while step < args.steps:
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        t2i = args.t2i_every > 0 and step % args.t2i_every == args.t2i_every - 1
        if t2i:
            x0, clip_ids, t5_ids = data.t2i_batch(gen, args.batch, args.p_uncond)
            ref = None
        else:
            ref, x0, clip_ids, t5_ids = data.edit_batch(gen, args.batch)
        n = len(x0)
        sigma = sample_sigma(gen, n, mu, visited, args.p_visited)
        guidance = 1.0 + 5.0 * torch.rand(n, generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        s = sigma[:, None, None]
        xt = (1 - s) * x0 + s * noise
        if ref is None:
            pred = models.velocity(xt, sigma, guidance, clip_ids, t5_ids, img_ids, txt_ids)
        else:
            pred = models.velocity(torch.cat([xt, ref], 1), sigma, guidance, clip_ids, t5_ids, joint_ids, txt_ids)
            pred = pred[:, :seq_len]
        loss = F.mse_loss(pred, noise - x0)
        for g, base in zip(opt.param_groups, base_lrs, strict=True):
            g["lr"] = base * lr_scale(step, args.warmup, step - first_step, args.decay_steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(models.parameters(), 1.0)
        opt.step()
        step += 1
        ema_update(ema, models, min(args.ema, (1 + step) / (10 + step)))
        losses["t2i" if t2i else "edit"].append(loss.item())
        if step % 25 == 0:
            n_steps = len(losses["edit"]) + len(losses["t2i"])
            rec = {
                "step": step,
                "loss_edit": float(np.mean(losses["edit"] or [0])),
                "loss_t2i": float(np.mean(losses["t2i"] or [0])),
                "gnorm": float(gnorm),
                "s_per_step": (time.time() - t_log) / n_steps,
                "min": (time.time() - start) / 60,
            }
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(rec, flush=True)
            t_log, losses = time.time(), {"edit": [], "t2i": []}
        now = time.time()
        done = step >= args.steps or (now - start) / 60 >= args.max_minutes
        if now - last_ckpt >= args.ckpt_minutes * 60 or done:
            save_ckpt(ckpt, models, ema, opt, {"step": step, "seed": args.seed, "size": args.size})
            last_ckpt = now
        if not done and args.eval_minutes > 0 and now - last_eval >= args.eval_minutes * 60:
            t_eval = time.time()
            periodic_eval(ema, step, spec, args)
            last_eval = time.time()
            print(f"eval took {last_eval - t_eval:.1f}s", flush=True)
        if done:
            break
    export_kontext(ema, args.out, spec, args)
    shutil.rmtree(args.run_dir / "export_tmp", ignore_errors=True)
    print(f"exported the EMA weights of step {step} to {args.out}", flush=True)


def arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=16, help="a multiple of 4 keeps the kinds balanced")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument(
        "--kind-weights", default="", help='share of each edit kind per batch, e.g. "background=3,move=2" (others 1)'
    )
    parser.add_argument(
        "--figure-share", type=float, default=0.0, help="share of edits drawn among those with a stick figure (0: any)"
    )
    parser.add_argument("--text-lr-mult", type=float, default=0.5)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument(
        "--decay-steps", type=int, default=0, help="cosine lr decay to 0.1x over this many steps of this run (0: none)"
    )
    parser.add_argument("--ema", type=float, default=0.998)
    parser.add_argument("--p-uncond", type=float, default=0.1, help="empty prompts in the text-to-image batches")
    parser.add_argument("--p-visited", type=float, default=0.3)
    parser.add_argument("--t2i-every", type=int, default=5, help="every n-th step is a text-to-image batch (0: none)")
    parser.add_argument("--families", type=int, default=400, help="training families (~22 images each)")
    parser.add_argument("--max-minutes", type=float, default=1e9)
    parser.add_argument("--ckpt-minutes", type=float, default=5.0)
    parser.add_argument("--eval-minutes", type=float, default=20.0, help="0: no evaluation during training")
    parser.add_argument("--n-eval-per-kind", type=int, default=10)
    parser.add_argument("--n-eval-t2i", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument(
        "--init",
        type=Path,
        default=MODEL_DIR,
        help="weights of a fresh run (a flux-mini folder, a kept checkpoint or a ckpt.pt)",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=MODEL_DIR,
        help="flux-mini folder giving the VAE, tokenizers, scheduler (and the export template)",
    )
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--threads", type=int, default=1)
    return parser


def main() -> None:
    train(arg_parser().parse_args())


if __name__ == "__main__":
    main()
