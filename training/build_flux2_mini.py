"""Build flux2-mini: a FLUX.2 [klein]-architecture diffusers folder with random weights (plumbing, no downloads).

    python -m training.build_flux2_mini --out assets/models/flux2-mini --seed 0

Components are the real FLUX.2 classes at toy sizes: ``Flux2Transformer2DModel``, the 32-channel
``AutoencoderKLFlux2`` (8× downsampling, 2×2 patch batch-norm), a 27-layer ``Qwen3ForCausalLM`` text encoder (so
klein's default ``text_encoder_out_layers`` (9, 18, 27) exist) and a byte-level BPE ``Qwen2Tokenizer`` trained on
the toy world's prompts with the Qwen special tokens and a minimal Qwen3 chat template. Saved as a
``Flux2KleinPipeline`` (the FLUX.2 pipeline with a Qwen3 encoder), so ``DiffusionPipeline.from_pretrained`` loads
it. Every component is seeded on its own: two runs write byte-identical safetensors.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import Qwen2Tokenizer, Qwen3Config, Qwen3ForCausalLM
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX  # BPE is trained on Qwen2's split words

from studio.toyworld import prompt_set

ENDOFTEXT, IM_START, IM_END, THINK, END_THINK = "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, THINK, END_THINK)
# Qwen3's template reduced to what FLUX.2 uses: user/system/assistant turns, the generation prompt, and the empty
# think block that enable_thinking=False writes.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)
CARD = """# flux2-mini — random-weight FLUX.2 [klein] plumbing

**Random weights. It draws noise-like pictures, not the prompt.** This folder exists so that FLUX.2 code paths
(loading, the Qwen3 chat-template prompt encoding, text-to-image, reference-image editing, saving) can be exercised
offline, in tests and demos, in about a second on a CPU. It has never been trained; the transformer's matrices are drawn
at unit gain so that the prompt and a reference image do change the (meaningless) output.

Built by `python -m training.build_flux2_mini --out assets/models/flux2-mini --seed 0` (deterministic: a rebuild
writes byte-identical safetensors). Loads with `DiffusionPipeline.from_pretrained(path)` → `Flux2KleinPipeline`.

| component | class | size |
|---|---|---|
| transformer | `Flux2Transformer2DModel`: {width} wide ({heads} heads × {head_dim}), {double} double + {single} \
single blocks, RoPE axes {rope}, {in_channels} input channels (32 latent ch × 2×2 patch), no guidance \
embedding (klein) | {transformer_params} params |
| vae | `AutoencoderKLFlux2`: 32 latent channels, 8× downsampling, channels {vae_channels}, batch-norm over the \
2×2-patchified latents | {vae_params} params |
| text_encoder | `Qwen3ForCausalLM`: hidden {te_hidden}, {te_layers} layers (klein stacks layers 9, 18, 27 → \
joint_attention_dim {joint}), tied embeddings | {te_params} params |
| tokenizer | `Qwen2Tokenizer` (byte-level BPE, {vocab} tokens) trained on the toy world's prompts, Qwen special \
tokens, a minimal Qwen3 chat template (`enable_thinking=False` writes the empty think block) | |
| scheduler | `FlowMatchEulerDiscreteScheduler`, dynamic shifting (the pipeline computes FLUX.2's empirical mu) | |

`studio.json`: native 128 × 128 (16 × 16 latents → 8 × 8 = 64 image tokens), {steps} steps, guidance {guidance} \
(a distilled klein: `is_distilled` true, no CFG), `max_sequence_length` {max_seq}, `"family": "flux2"`.
"""


@dataclass(frozen=True)
class Flux2MiniSpec:
    """Sizes of flux2-mini (the real klein 4B: width 3072, 24×128 heads, 5 + 20 blocks, Qwen3-4B 2560 × 36 layers)."""

    heads: int = 4
    head_dim: int = 16
    double: int = 2
    single: int = 2
    rope: tuple[int, int, int, int] = (4, 4, 4, 4)
    latent_channels: int = 32
    vae_channels: tuple[int, ...] = (16, 32, 32, 32)
    te_hidden: int = 32
    te_layers: int = 27
    te_heads: int = 2
    te_kv_heads: int = 1
    te_head_dim: int = 16
    te_ffn: int = 64
    out_layers: tuple[int, int, int] = (9, 18, 27)
    vocab_size: int = 400
    size: int = 128
    steps: int = 4
    guidance: float = 1.0
    max_sequence_length: int = 64

    @property
    def joint_attention_dim(self) -> int:
        """Width of klein's text features: the stacked hidden states of ``out_layers``."""
        return len(self.out_layers) * self.te_hidden


def toy_corpus() -> list[str]:
    """Toy-world prompts (one and two objects, plain and outlined) plus the chat template's role words."""
    prompts = prompt_set("one", 300, seed=0) + prompt_set("two", 300, seed=1)
    styled = [p.replace(" circle", " outlined circle").replace(" square", " outlined square") for p in prompts[:100]]
    turns = [f"{IM_START}{role}\n" for role in ("system", "user", "assistant")] + [f"{THINK}\n\n{END_THINK}\n\n"]
    return prompts + styled + turns * 20


def make_tokenizer(spec: Flux2MiniSpec) -> Qwen2Tokenizer:
    """A Qwen2 byte-level BPE tokenizer trained on ``toy_corpus`` (special tokens get ids 0-4)."""
    bpe = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(toy_corpus(), trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=state["vocab"],
        merges=merges,
        model_max_length=512,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        extra_special_tokens=[IM_START, IM_END],
    )
    tokenizer.add_tokens(
        [AddedToken(THINK, special=False, normalized=False), AddedToken(END_THINK, special=False, normalized=False)]
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_text_encoder(spec: Flux2MiniSpec, tokenizer: Qwen2Tokenizer) -> Qwen3ForCausalLM:
    """A tiny Qwen3 causal LM (klein reads its hidden states; the LM head is tied to the embeddings)."""
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.te_hidden,
        intermediate_size=spec.te_ffn,
        num_hidden_layers=spec.te_layers,
        num_attention_heads=spec.te_heads,
        num_key_value_heads=spec.te_kv_heads,
        head_dim=spec.te_head_dim,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        max_window_layers=spec.te_layers,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        dtype="float32",
    )
    return Qwen3ForCausalLM(config).eval()


def make_vae(spec: Flux2MiniSpec) -> AutoencoderKLFlux2:
    """The FLUX.2 VAE at toy widths: 32 latent channels, 8× downsampling, quant convs as in the real one."""
    blocks = len(spec.vae_channels)
    return AutoencoderKLFlux2(
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=spec.vae_channels,
        layers_per_block=1,
        latent_channels=spec.latent_channels,
        norm_num_groups=8,
        sample_size=spec.size,
    ).eval()


def make_transformer(spec: Flux2MiniSpec) -> Flux2Transformer2DModel:
    """A Flux2Transformer2DModel at toy widths (klein: no guidance embedding), matrices re-drawn at unit gain."""
    model = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=spec.latent_channels * 4,
        num_layers=spec.double,
        num_single_layers=spec.single,
        attention_head_dim=spec.head_dim,
        num_attention_heads=spec.heads,
        joint_attention_dim=spec.joint_attention_dim,
        axes_dims_rope=spec.rope,
        guidance_embeds=False,
    )
    unit_gain_(model)
    return model.eval()


@torch.no_grad()
def unit_gain_(model: torch.nn.Module) -> None:
    """Every weight matrix drawn from N(0, 1/fan_in). PyTorch's default Linear init shrinks activations ~0.58× per
    layer, which leaves an untrained model's output almost blind to the prompt and the reference image; at unit gain
    both steer the random output measurably (what plumbing tests need to see)."""
    for param in model.parameters():
        if param.ndim >= 2:
            param.normal_(0.0, param[0].numel() ** -0.5)


def make_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """Flow-matching Euler with dynamic shifting (the FLUX.2 pipelines pass an empirical ``mu``)."""
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, time_shift_type="exponential"
    )


def seeded(seed: int) -> None:
    """Reset torch's global generator (module initialisers draw from it)."""
    torch.manual_seed(seed)


def build_pipeline(spec: Flux2MiniSpec, seed: int) -> Flux2KleinPipeline:
    """Every component, each from its own seed so that changing one leaves the others' weights alone."""
    tokenizer = make_tokenizer(spec)
    seeded(seed)
    text_encoder = make_text_encoder(spec, tokenizer)
    seeded(seed + 1)
    vae = make_vae(spec)
    seeded(seed + 2)
    transformer = make_transformer(spec)
    return Flux2KleinPipeline(
        scheduler=make_scheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=True,
    )


def studio_defaults(spec: Flux2MiniSpec) -> dict:
    """The folder's ``studio.json`` (the studio's per-model defaults)."""
    return {
        "name": "flux2-mini",
        "family": "flux2",
        "pipeline": "Flux2KleinPipeline",
        "width": spec.size,
        "height": spec.size,
        "steps": spec.steps,
        "guidance": spec.guidance,
        "max_sequence_length": spec.max_sequence_length,
        "text_encoder_out_layers": list(spec.out_layers),
        "guidance_distilled": False,
        "is_distilled": True,
        "random_weights": True,
    }


def model_card(spec: Flux2MiniSpec, pipe: Flux2KleinPipeline) -> str:
    """The folder's README: what is inside, and that it is untrained."""

    def count(module: torch.nn.Module) -> str:
        return f"{sum(p.numel() for p in module.parameters()) / 1e6:.2f} M"

    fields = asdict(spec) | {
        "width": spec.heads * spec.head_dim,
        "in_channels": spec.latent_channels * 4,
        "joint": spec.joint_attention_dim,
        "transformer_params": count(pipe.transformer),
        "vae_params": count(pipe.vae),
        "te_params": count(pipe.text_encoder),
        "vocab": len(pipe.tokenizer),
        "max_seq": spec.max_sequence_length,
    }
    return CARD.format(**fields)


def build(out: Path, seed: int = 0, spec: Flux2MiniSpec | None = None) -> Path:
    """Write the folder at ``out``: the pipeline, ``studio.json`` and ``README.md``."""
    spec = spec or Flux2MiniSpec()
    pipe = build_pipeline(spec, seed)
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out, safe_serialization=True)
    (out / "studio.json").write_text(json.dumps(studio_defaults(spec), indent=2) + "\n")
    (out / "README.md").write_text(model_card(spec, pipe))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("assets/models/flux2-mini"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"wrote {build(args.out, args.seed)}")


if __name__ == "__main__":
    main()
