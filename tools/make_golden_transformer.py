#!/usr/bin/env python3
"""Golden files for the DALLE-pytorch transformer and DiscreteVAE tests (TransformerTests.swift).

    python3 tools/make_golden_transformer.py [OUT_DIR]   (default Tests/DalleCoreTests/Golden/transformer)

For each configuration below: a small random-weight DALLE (DALLE-pytorch 1.6.6) with its
DiscreteVAE, saved as train_dalle.py saves checkpoints, converted with convert_dalle_pytorch.py
into NAME.safetensors (f16 weights: every parameter is rounded to float16 first, so the bundle
is exact), and NAME.ref.safetensors with
  text [B, text_seq_len] and image [B, image_seq_len] (token ids, I32),
  logits [B, L, total_tokens]: DALLE.forward(text, image) (L = text_seq_len + image_seq_len),
  prefix_logits [B, text_seq_len + 1 + 3, total_tokens]: forward(text, image[:, :3]),
  greedy [B, image_seq_len]: generate_images(text, filter_thres=1.0) tokens (top-1),
  pixels [2, 3, S, S] in [0, 1], codes [2, G*G]: vae.get_codebook_indices(pixels),
  decoded [2, 3, S, S]: vae.decode(codes) (DiscreteVAE's raw, normalised-space output).
"""
import os
import sys

import torch

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(TOOLS, "stubs"))
sys.path.insert(0, TOOLS)

from safetensors.torch import save_file  # noqa: E402
from dalle_pytorch import DALLE, DiscreteVAE  # noqa: E402

import convert_dalle_pytorch  # noqa: E402

CONFIGS = {
    # DALLE-pytorch 1.6.6 defaults (rotary, shift_tokens) with all four attention types.
    "defaults": dict(
        vae=dict(image_size=32, num_layers=2, num_tokens=64, codebook_dim=32, hidden_dim=16, num_resnet_blocks=1),
        dalle=dict(dim=64, depth=4, heads=4, dim_head=16, text_seq_len=16, num_text_tokens=100,
                   attn_types=("full", "axial_row", "axial_col", "conv_like"))),
    # The paper's learned positions: text positions + axial rows/columns, no token shift.
    "learned_pos": dict(
        vae=dict(image_size=16, num_layers=2, num_tokens=48, codebook_dim=24, hidden_dim=16, num_resnet_blocks=0),
        dalle=dict(dim=64, depth=4, heads=4, dim_head=16, text_seq_len=16, num_text_tokens=100,
                   rotary_emb=False, shift_tokens=False,
                   attn_types=("axial_row", "axial_col", "axial_row", "conv_like"))),
    # Options: sandwich norm, stable, shared attention and feed-forward weights.
    "options": dict(
        vae=dict(image_size=16, num_layers=2, num_tokens=40, codebook_dim=16, hidden_dim=8, num_resnet_blocks=2),
        dalle=dict(dim=32, depth=3, heads=2, dim_head=16, text_seq_len=8, num_text_tokens=50,
                   sandwich_norm=True, stable=True, attn_types=("full", "axial_col", "full"),
                   shared_attn_ids=(0, 1, 0), shared_ff_ids=(0, 0, 1))),
}


def perturb_and_round(model, generator):
    """Makes norms and layer scales non-trivial and every parameter float16-exact."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".scale"):
                p.copy_(torch.rand(p.shape, generator=generator) * 0.7 + 0.3)
            elif ".norm" in name or "to_logits.0" in name:
                p.add_(torch.randn(p.shape, generator=generator) * 0.1)
            p.copy_(p.half().float())


def make(name, spec, out_dir, seed):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    vae = DiscreteVAE(**spec["vae"])
    dalle = DALLE(vae=vae, **spec["dalle"])
    perturb_and_round(dalle, generator)
    dalle.eval()

    checkpoint = {"hparams": spec["dalle"], "vae_params": spec["vae"], "weights": dalle.state_dict()}
    ckpt_path = os.path.join(out_dir, f"{name}.pt")
    torch.save(checkpoint, ckpt_path)
    tensors, metadata = convert_dalle_pytorch.convert(
        torch.load(ckpt_path, map_location="cpu", weights_only=False), dtype="f16",
        with_tokenizer=(name == "defaults"))
    os.remove(ckpt_path)
    save_file(tensors, os.path.join(out_dir, f"{name}.safetensors"), metadata=metadata)

    tsl, isl = dalle.text_seq_len, dalle.image_seq_len
    num_text = spec["dalle"]["num_text_tokens"]
    batch = 2
    text = torch.randint(1, num_text, (batch, tsl), generator=generator)
    text[0, tsl // 2:] = 0  # padding: per-position pad ids
    text[1, 3] = 0          # a zero inside the text is padding too
    image = torch.randint(0, vae.num_tokens, (batch, isl), generator=generator)
    with torch.no_grad():
        logits = dalle(text, image)
        prefix_logits = dalle(text, image[:, :3])
        out = text
        for _ in range(isl):
            step_logits = dalle(out[:, :tsl], out[:, tsl:])[:, -1, :]
            out = torch.cat((out, (step_logits.argmax(dim=-1) - dalle.num_text_tokens)[:, None]), dim=-1)
        greedy = out[:, tsl:]
        images = dalle.generate_images(text, filter_thres=1.0)
        assert torch.equal(images, vae.decode(greedy)), "argmax loop differs from generate_images(top-1)"

        size = vae.image_size
        pixels = torch.rand((2, vae.channels, size, size), generator=generator)
        pixels = pixels.half().float()
        codes = vae.get_codebook_indices(pixels)
        decoded = vae.decode(codes)

    ref = {
        "text": text.to(torch.int32), "image": image.to(torch.int32),
        "logits": logits.float().contiguous(), "prefix_logits": prefix_logits.float().contiguous(),
        "greedy": greedy.to(torch.int32).contiguous(),
        "pixels": pixels.contiguous(), "codes": codes.to(torch.int32).contiguous(),
        "decoded": decoded.contiguous(),
    }
    save_file(ref, os.path.join(out_dir, f"{name}.ref.safetensors"))
    print(f"{name}: logits {tuple(logits.shape)}, greedy {greedy.tolist()[0][:8]}...")


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        TOOLS, "..", "Tests", "DalleCoreTests", "Golden", "transformer")
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    for i, (name, spec) in enumerate(CONFIGS.items()):
        make(name, spec, out_dir, seed=1000 + i)


if __name__ == "__main__":
    main()
