"""Fine-tune only the VAE decoder (encoder frozen, so the base model's latents stay valid).

    python -m training.finetune_decoder --seed 0 --batch 8 --steps 1000 --lr 2e-4 --p-figure 0.5 \\
        --vae runs/vae/final --run-dir runs/dec128 --out runs/dec128/out
    python -m training.finetune_decoder --seed 0 --batch 8 --steps 1000 --lr 1e-4 --adversarial 0.5 --adv-start 100 \\
        --denoiser assets/models/flux-mini --vae runs/dec128/out --p-figure 0.6 --p-outlined 0.1 --run-dir runs/dec128gan

(the model card's steps 1 and 5; ``training.train_all`` runs both). Why: after ``training.train_vae`` the
reconstructions are right for circles, squares and triangles but stick figures (thin strokes) come back as blobs.
This stage oversamples scenes with a stick figure (``--p-figure``) and weights edge pixels more (``--edge-boost``). ``shift_factor`` / ``scaling_factor`` are
unchanged (they describe the encoder). Resumable from ``--run-dir``/ckpt.pt; at the end the reconstruction
ToyGenEval is measured and the VAE is written to ``--out``.

``--denoiser MODEL_DIR`` (a flux-mini folder) teaches the decoder what the sampler actually hands it: the last
Euler step of ``FluxPipeline`` returns the transformer's x0-estimate ``x_σ - σ v(x_σ)`` at the last σ (0.345 at
4 steps, smaller with more steps), which for a stick figure is a soft blend of poses, not a clean latent. For a
share ``1 - p_clean`` of each batch the decoder input is that estimate for the scene's own noised latent
(``x_σ = (1 - σ) x0 + σ ε``, σ the 4-step sampler's last σ or uniform below it, the scene's prompt, guidance
``--guidance``; the 128-px flux-mini ignores it); the target stays the true scene. The clean latent is the
batch's own posterior mean, so any ``--size`` works without a latent cache (the shipped 128-px decoder: model card,
step 5). The rest of the batch is a posterior sample as before, so reconstructions of clean latents stay right. The transformer is frozen; only the decoder learns.

``--adversarial W`` adds the patch-GAN term that real VAE decoders (taming-transformers, SD, FLUX) are trained
with: a small convolutional discriminator (hinge loss) judges 64-px patches, and the decoder's adversarial loss is
weighted adaptively (ratio of the reconstruction and adversarial gradient norms at the decoder's last layer, times
W) from ``--adv-start`` on. A regression loss alone decodes an ambiguous latent to the average of its candidates
(a stick figure's limbs blur into a thick blob); the discriminator pushes toward crisp, thin strokes.

``--p-outlined P`` swaps that share of each batch for scenes in the outlined style (TOYWORLD.md; the "outlined"
LoRA's training scenes, decoded from clean latents) — the decoder had never seen thin closed outlines and turned
them into coloured fringes. ``--preserve VAE_DIR`` makes that a learning-without-forgetting step: every other scene's
target is what the ``VAE_DIR`` decoder makes of the same latent (not the true image), so the decoder learns the
outlines while its output on everything else stays where the adversarial tuning left it (continuing the GAN
on this mix instead, from a fresh discriminator, cost 7.5 points of one-object accuracy on the picking set).
``--disc-from`` starts the discriminator from a finished run's checkpoint.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

from training import torch_state, train_base
from training.data import DEFAULT_DIR, ToyData, load_dataset, outlined_images, outlined_scenes, render_images
from training.spec import MiniSpec
from training.train_vae import edge_weight, lr_at, recon_eval


def figure_index(prompts: list[str]) -> np.ndarray:
    """Indices of scenes that contain a stick figure."""
    return np.array([i for i, p in enumerate(prompts) if "stick figure" in p])


class Denoiser:
    """A frozen flux-mini transformer + text encoders giving the sampler's last-step x0-estimate for real scenes.

    The clean latent of each scene is the batch's own posterior mean (normalised and packed as the base was
    trained on), so no latent cache of the whole dataset is needed.
    """

    def __init__(self, model_dir: Path, prompts: list[str], size: int, guidance: float) -> None:
        spec = MiniSpec()
        clip_tok = CLIPTokenizer.from_pretrained(model_dir / "tokenizer")
        t5_tok = T5TokenizerFast.from_pretrained(model_dir / "tokenizer_2")
        self.clip_ids, self.t5_ids = train_base.tokenize(clip_tok, t5_tok, prompts, spec.max_sequence_length)
        self.img_ids, self.txt_ids = train_base.position_ids(size, spec.max_sequence_length)
        self.transformer = FluxTransformer2DModel.from_pretrained(model_dir / "transformer").eval()
        self.clip = CLIPTextModel.from_pretrained(model_dir / "text_encoder").eval()
        self.t5 = T5EncoderModel.from_pretrained(model_dir / "text_encoder_2").eval()
        sched = FlowMatchEulerDiscreteScheduler.from_pretrained(model_dir / "scheduler")
        self.last_sigma = float(train_base.sampler_sigmas(sched, spec.default_steps, len(self.img_ids))[-1])
        self.guidance = guidance
        self.side = size

    @torch.no_grad()
    def estimate(
        self, idx: np.ndarray, posterior_mean: torch.Tensor, vae: AutoencoderKL, gen: torch.Generator
    ) -> torch.Tensor:
        """Unpacked, de-normalised x0-estimates (B, 16, h, w) for scenes ``idx`` (their posterior means given),
        ready for ``vae.decode``."""
        index = torch.as_tensor(idx, dtype=torch.long)
        z = (posterior_mean - vae.config.shift_factor) * vae.config.scaling_factor
        b, c, h, w = z.shape
        x0 = FluxPipeline._pack_latents(z, b, c, h, w)
        at_last = torch.rand(b, generator=gen) < 0.5
        sigma = torch.where(at_last, torch.full((b,), self.last_sigma), torch.rand(b, generator=gen) * self.last_sigma)
        sigma = sigma.clamp(min=0.02)
        xt = (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * torch.randn(x0.shape, generator=gen)
        v = self.transformer(
            hidden_states=xt,
            timestep=sigma,
            guidance=torch.full((b,), self.guidance),
            pooled_projections=self.clip(self.clip_ids[index]).pooler_output,
            encoder_hidden_states=self.t5(self.t5_ids[index])[0],
            txt_ids=self.txt_ids,
            img_ids=self.img_ids,
            return_dict=False,
        )[0]
        estimate = FluxPipeline._unpack_latents(xt - sigma[:, None, None] * v, self.side, self.side, 8)
        return estimate / vae.config.scaling_factor + vae.config.shift_factor


def patch_discriminator(width: int = 48) -> torch.nn.Sequential:
    """PatchGAN-style discriminator (taming-transformers' NLayerDiscriminator, GroupNorm instead of BatchNorm)."""

    def block(cin: int, cout: int, stride: int) -> list[torch.nn.Module]:
        return [torch.nn.Conv2d(cin, cout, 4, stride, 1), torch.nn.GroupNorm(8, cout), torch.nn.LeakyReLU(0.2)]

    return torch.nn.Sequential(
        torch.nn.Conv2d(3, width, 4, 2, 1),
        torch.nn.LeakyReLU(0.2),
        *block(width, 2 * width, 2),
        *block(2 * width, 4 * width, 1),
        torch.nn.Conv2d(4 * width, 1, 4, 1, 1),
    )


def adaptive_weight(rec_loss: torch.Tensor, adv_loss: torch.Tensor, last: torch.Tensor, scale: float) -> torch.Tensor:
    """taming-transformers' balance: |grad rec| / |grad adv| at the decoder's last layer, times ``scale``."""
    rec_grad = torch.autograd.grad(rec_loss, last, retain_graph=True)[0]
    adv_grad = torch.autograd.grad(adv_loss, last, retain_graph=True)[0]
    return (rec_grad.norm() / (adv_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach() * scale


@torch.no_grad()
def outlined_recon_eval(vae: AutoencoderKL, n: int = 40, seed: int = 9000, size: int = 128) -> dict[str, float]:
    """Decoded posterior means of ``n`` held-out outlined scenes (the outlined LoRA's evaluation set): hollow share
    and colour + position right (ToyGenEval against the unstyled scene)."""
    from studio.toyworld.evaluate import evaluate_image, is_hollow
    from studio.toyworld.grammar import Scene

    scenes = outlined_scenes(n, seed, "heldout")
    x = ToyData(render_images(scenes, size, 0), [""] * n, np.ones(n, dtype=np.int8)).tensor(slice(None))
    y = vae.decode(vae.encode(x).latent_dist.mean).sample
    images = ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    hollow = right = 0
    for image, scene in zip(images, scenes, strict=True):
        found = evaluate_image(image, Scene(scene.objects, scene.background, None)).objects[0]
        hollow += bool(found.mask is not None and is_hollow(found.mask))
        right += bool(found.colour_ok and found.position_ok)
    return {"n": n, "hollow": hollow / n, "colour_and_position": right / n}


def train(args: argparse.Namespace) -> AutoencoderKL:
    """Fine-tune (or resume) the decoder; returns the VAE in eval mode."""
    torch.set_num_threads(args.threads)
    data = load_dataset(args.seed, args.size, args.n_one, args.n_two, args.data_dir)
    figures = figure_index(data.prompts)
    outlined = outlined_images(args.n_outlined, args.seed, args.size) if args.p_outlined > 0 else None
    denoiser = Denoiser(args.denoiser, data.prompts, args.size, args.guidance) if args.denoiser else None
    vae = AutoencoderKL.from_pretrained(args.vae)
    vae.encoder.requires_grad_(False).eval()
    params = list(vae.decoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    torch.manual_seed(args.seed)
    teacher = None
    if args.preserve is not None:  # learn the outlined scenes without forgetting: elsewhere match this decoder
        teacher = AutoencoderKL.from_pretrained(args.preserve).eval().requires_grad_(False)
    disc = patch_discriminator() if args.adversarial > 0 else None
    disc_opt = torch.optim.Adam(disc.parameters(), lr=args.lr, betas=(0.5, 0.9)) if disc else None
    run_dir = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / "ckpt.pt"
    step = 0
    if ckpt.exists():
        state = torch_state.load(ckpt)
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if disc is not None and "disc" in state:
            disc.load_state_dict(state["disc"])
            disc_opt.load_state_dict(state["disc_opt"])
        step = state["step"]
        print(f"resumed at step {step}", flush=True)
    elif disc is not None and args.disc_from is not None:  # continue the GAN game instead of restarting it
        state = torch_state.load(args.disc_from)
        disc.load_state_dict(state["disc"])
        disc_opt.load_state_dict(state["disc_opt"])
        print(f"discriminator from {args.disc_from} (step {state['step']})", flush=True)
    log = (run_dir / "log.jsonl").open("a")
    vae.decoder.train()
    t0 = time.time()
    while step < args.steps:
        rng = np.random.default_rng([args.seed, 29, step])
        n_fig = int(rng.binomial(args.batch, args.p_figure))
        idx = np.concatenate([rng.choice(figures, n_fig), rng.integers(0, len(data), args.batch - n_fig)])
        x = data.tensor(idx)
        styled = torch.zeros(args.batch, dtype=torch.bool)
        if outlined is not None:  # swap some scenes for outlined ones (the "outlined" LoRA's style; clean latents)
            styled = torch.from_numpy(rng.random(args.batch) < args.p_outlined)
            x[styled] = outlined[rng.integers(0, len(outlined), int(styled.sum()))]
        gen = torch.Generator().manual_seed(args.seed * 1_000 + step)
        with torch.no_grad():
            posterior = vae.encode(x).latent_dist
            z = posterior.sample(generator=gen)
        if denoiser is not None:
            noisy = (torch.rand(args.batch, generator=gen) >= args.p_clean) & ~styled
            if noisy.any():
                z[noisy] = denoiser.estimate(idx[noisy.numpy()], posterior.mean[noisy], vae, gen)
        recon = vae.decode(z).sample
        target = x
        if teacher is not None:
            with torch.no_grad():
                target = teacher.decode(z).sample
            target[styled] = x[styled]
        w = edge_weight(x, args.edge_boost)
        l1 = ((recon - target).abs() * w).mean()
        mse = F.mse_loss(recon, target)
        loss = l1 + mse
        adv = {}
        if disc is not None and step >= args.adv_start:
            g_loss = -disc(recon).mean()
            weight = adaptive_weight(loss, g_loss, vae.decoder.conv_out.weight, args.adversarial)
            loss = loss + weight * g_loss
            adv = {"g_loss": g_loss.item(), "adv_weight": weight.item()}
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if disc is not None:
            d_loss = F.relu(1 - disc(x)).mean() + F.relu(1 + disc(recon.detach())).mean()
            disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            disc_opt.step()
            adv["d_loss"] = d_loss.item()
        step += 1
        if step % 20 == 0 or step == args.steps:
            rec = {
                "step": step,
                "loss": loss.item(),
                "l1": l1.item(),
                "mse": mse.item(),
                **adv,
                "s_per_step": (time.time() - t0) / 20,
            }
            t0 = time.time()
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(rec, flush=True)
        if step % args.ckpt_every == 0 or step == args.steps:
            if args.snapshots:
                (run_dir / "snaps").mkdir(exist_ok=True)
                torch.save({"model": vae.state_dict(), "step": step}, run_dir / "snaps" / f"{step}.pt")
            state = {"model": vae.state_dict(), "opt": opt.state_dict(), "step": step}
            if disc is not None:
                state |= {"disc": disc.state_dict(), "disc_opt": disc_opt.state_dict()}
            torch.save(state, ckpt)
    return vae.eval()


def arg_parser() -> argparse.ArgumentParser:
    """The command-line options (also how ``training.train_all`` builds this stage's arguments)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae", type=Path, default=Path("runs/vae/final"), help="the trained VAE to start from")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--size", type=int, default=128, help="scene size in pixels (the VAE is convolutional: 128 gives 16x16 latents)"
    )
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--p-figure", type=float, default=0.6)
    parser.add_argument("--edge-boost", type=float, default=10.0)
    parser.add_argument("--ckpt-every", type=int, default=100)
    parser.add_argument(
        "--denoiser",
        type=Path,
        default=None,
        help="flux-mini folder whose transformer's last-step estimates the decoder also learns from",
    )
    parser.add_argument("--p-clean", type=float, default=0.3, help="with --denoiser: share of clean posterior samples")
    parser.add_argument("--guidance", type=float, default=2.0, help="with --denoiser: the guidance it is run at")
    parser.add_argument("--adversarial", type=float, default=0.0, help="patch-GAN weight (0: off; taming uses 0.5-0.8)")
    parser.add_argument(
        "--preserve",
        type=Path,
        default=None,
        help="a VAE folder whose decoder output is the target for every scene that is not outlined "
        "(learning without forgetting; the outlined scenes keep the true image as target)",
    )
    parser.add_argument(
        "--disc-from",
        type=Path,
        default=None,
        help="a finished run's ckpt.pt whose trained discriminator to start from (not a fresh one)",
    )
    parser.add_argument("--adv-start", type=int, default=200, help="step from which the decoder sees the GAN term")
    parser.add_argument(
        "--snapshots",
        action="store_true",
        help="also keep the weights of every checkpoint in RUN_DIR/snaps (for training.average_vae)",
    )
    parser.add_argument(
        "--p-outlined",
        type=float,
        default=0.0,
        help="share of each batch drawn in the outlined style (TOYWORLD.md), decoded from clean latents",
    )
    parser.add_argument("--n-outlined", type=int, default=2048, help="how many outlined training scenes to draw")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/decoder"), help="checkpoint and log folder")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one per free core)")
    parser.add_argument("--n-one", type=int, default=10_000, help="one-object training scenes (training.data)")
    parser.add_argument("--n-two", type=int, default=10_000, help="two-object training scenes")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DIR, help="where training.data caches the scenes")
    parser.add_argument("--n-eval", type=int, default=40, help="held-out outlined scenes in the final report")
    parser.add_argument("--out", type=Path, default=Path("runs/decoder/out"), help="where the finished VAE is written")
    return parser


def run(args: argparse.Namespace) -> dict:
    """Fine-tune (or resume), measure the reconstructions, write the VAE to ``--run-dir``/final and ``--out``."""
    vae = train(args)
    data = load_dataset(args.seed, args.size, args.n_one, args.n_two, args.data_dir)
    report = {
        "recon_toygeneval": recon_eval(vae, data),
        "outlined_recon": outlined_recon_eval(vae, n=args.n_eval, size=args.size),
    }
    print(json.dumps(report, indent=1), flush=True)
    (args.run_dir / "report.json").write_text(json.dumps(report, indent=1))
    vae.save_pretrained(args.run_dir / "final", safe_serialization=True)
    vae.save_pretrained(args.out, safe_serialization=True)
    return report


def main() -> None:
    run(arg_parser().parse_args())


if __name__ == "__main__":
    main()
