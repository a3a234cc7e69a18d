"""Build flux-mini as a standard diffusers Flux folder, from configs alone (no downloads).

    python -m training.build --out assets/models/flux-mini --seed 0

Weights are random here; training (see training/) replaces them in the same folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

from training.spec import TOY_WORDS, MiniSpec

CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"


def make_clip_tokenizer() -> CLIPTokenizer:
    """A byte-level BPE CLIP tokenizer whose merges spell every toy word as one token."""
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>", continuing_subword_prefix="", unk_token=CLIP_EOS))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=[CLIP_BOS, CLIP_EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    single_chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'-()")
    bpe.train_from_iterator(list(TOY_WORDS) * 50 + single_chars, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    return CLIPTokenizer(vocab=state["vocab"], merges=merges, model_max_length=77)


def make_t5_tokenizer(max_length: int) -> T5TokenizerFast:
    """A unigram T5 tokenizer: one piece per toy word, single characters as fallback."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"▁{w}", -1.0) for w in dict.fromkeys(TOY_WORDS)]
    chars = "abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'-()"
    pieces += [(c, -8.0) for c in chars] + [(f"▁{c}", -7.0) for c in chars]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=max_length)


def make_clip(spec: MiniSpec, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """Tiny CLIP text encoder (pooled output feeds FLUX's pooled projection)."""
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.clip_dim,
        intermediate_size=spec.clip_dim * 2,
        projection_dim=spec.clip_dim,
        num_hidden_layers=spec.clip_layers,
        num_attention_heads=spec.clip_heads,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def make_t5(spec: MiniSpec, tokenizer: T5TokenizerFast) -> T5EncoderModel:
    """Tiny T5 v1.1-style encoder (gated GELU), FLUX's sequence conditioning."""
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=spec.t5_dim,
        d_kv=spec.t5_dim // spec.t5_heads,
        d_ff=spec.t5_dim * 2,
        num_layers=spec.t5_layers,
        num_heads=spec.t5_heads,
        feed_forward_proj="gated-gelu",
        relative_attention_num_buckets=16,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config)


def make_vae(spec: MiniSpec) -> AutoencoderKL:
    """FLUX-style VAE: 16 latent channels, 8x downsampling, no quant convs, FLUX scale/shift."""
    depth = len(spec.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * depth,
        up_block_types=("UpDecoderBlock2D",) * depth,
        block_out_channels=spec.vae_channels,
        layers_per_block=1,
        latent_channels=spec.latent_channels,
        norm_num_groups=spec.vae_norm_groups,
        sample_size=spec.native_size,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def make_transformer(spec: MiniSpec) -> FluxTransformer2DModel:
    """Double- and single-stream MM-DiT with guidance embedding and 3-axis RoPE."""
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=spec.latent_channels * 4,
        num_layers=spec.num_layers,
        num_single_layers=spec.num_single_layers,
        attention_head_dim=spec.attention_head_dim,
        num_attention_heads=spec.num_attention_heads,
        joint_attention_dim=spec.t5_dim,
        pooled_projection_dim=spec.clip_dim,
        guidance_embeds=spec.guidance_embeds,
        axes_dims_rope=spec.axes_dims_rope,
    )


def make_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """FLUX-dev's scheduler settings (resolution-dependent shift)."""
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )


def build_pipeline(spec: MiniSpec, seed: int) -> FluxPipeline:
    """All components with seeded random weights."""
    torch.manual_seed(seed)
    clip_tok = make_clip_tokenizer()
    t5_tok = make_t5_tokenizer(spec.max_sequence_length)
    return FluxPipeline(
        scheduler=make_scheduler(),
        vae=make_vae(spec),
        text_encoder=make_clip(spec, clip_tok),
        tokenizer=clip_tok,
        text_encoder_2=make_t5(spec, t5_tok),
        tokenizer_2=t5_tok,
        transformer=make_transformer(spec),
    )


def studio_defaults(spec: MiniSpec) -> dict:
    """Model defaults the studio reads from ``studio.json`` next to ``model_index.json``."""
    return {
        "name": "flux-mini",
        "width": spec.native_size,
        "height": spec.native_size,
        "steps": spec.default_steps,
        "guidance": spec.default_guidance,
        "max_sequence_length": spec.max_sequence_length,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("assets/models/flux-mini"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    spec = MiniSpec()
    pipe = build_pipeline(spec, args.seed)
    pipe.save_pretrained(args.out, safe_serialization=True)
    (args.out / "studio.json").write_text(json.dumps(studio_defaults(spec), indent=2) + "\n")
    n_params = sum(p.numel() for p in pipe.transformer.parameters())
    print(f"wrote {args.out} (transformer {n_params / 1e6:.2f} M parameters)")


if __name__ == "__main__":
    main()
