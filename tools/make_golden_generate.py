#!/usr/bin/env python3
"""Golden files for generation (GenerationTests.swift) and the model the generate examples run.

    python3 tools/make_golden_generate.py [OUT_DIR]   (default Tests/DalleCoreTests/Golden/generate)

A small random-weight DALLE (DALLE-pytorch 1.6.6) with its DiscreteVAE, converted with
convert_dalle_pytorch.py (f16-exact weights) into model.safetensors, plus a tokenizer holding
CLIP's first MERGES merges (so the text vocabulary stays small: 512 + MERGES + 2 ids; DALLE-pytorch's
SimpleTokenizer reads the same list). ref.safetensors holds, for PROMPTS:
  text [P, text_seq_len]: SimpleTokenizer.tokenize(prompt, text_seq_len, truncate_text=True);
  greedy [P, image_seq_len]: generate_images(text, filter_thres=1.0) (top-1) tokens;
  guided [P, image_seq_len]: greedy tokens of null + (cond - null) * COND_SCALE, where null is the
      forward pass on all-padding text (forward_with_cond_scale's formula, computed on copies: in
      DALLE-pytorch 1.6.6, generate_images with cond_scale != 1 zeroes the prompt in place after
      its first token, so every later token is unconditional);
  prime_pixels [1, 3, S, S] in [0, 1], primed [P, image_seq_len]: generate_images(text,
      img=prime_pixels, num_init_img_tokens=PRIME_ROWS * fmap, filter_thres=1.0) tokens.
"""
import os
import sys
import tempfile

import torch

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(TOOLS, "stubs"))
sys.path.insert(0, TOOLS)

from safetensors.torch import save_file  # noqa: E402
from dalle_pytorch import DALLE, DiscreteVAE  # noqa: E402
from dalle_pytorch.tokenizer import SimpleTokenizer  # noqa: E402

import convert_dalle_pytorch  # noqa: E402
from bundle_tokenizer import tokenizer_tensors_and_metadata  # noqa: E402
from make_golden_transformer import perturb_and_round  # noqa: E402

MERGES = 600
PROMPTS = ["a red ball on green grass", "", "an orange cat sitting in a box, next to a plant and a window at sunset"]
COND_SCALE = 3.0
PRIME_ROWS = 3
VAE = dict(image_size=32, num_layers=2, num_tokens=32, codebook_dim=16, hidden_dim=16, num_resnet_blocks=1)
DALLE_ARGS = dict(dim=64, depth=2, heads=4, dim_head=16, text_seq_len=12, num_text_tokens=512 + MERGES + 2,
                  attn_types=("axial_row", "conv_like"))


def guided_greedy(dalle, text, scale):
    """Greedy decoding with classifier-free guidance, each branch on its own copy of the text."""
    tsl, isl, ntt = dalle.text_seq_len, dalle.image_seq_len, dalle.num_text_tokens
    image = torch.zeros((text.shape[0], 0), dtype=torch.long)
    for _ in range(isl):
        cond = dalle(text.clone(), image)[:, -1, :]
        null = dalle(torch.zeros_like(text), image)[:, -1, :]
        image = torch.cat((image, ((null + (cond - null) * scale).argmax(dim=-1) - ntt)[:, None]), dim=-1)
    return image


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(TOOLS, "..", "Tests", "DalleCoreTests", "Golden", "generate")
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    torch.manual_seed(2024)
    generator = torch.Generator().manual_seed(2025)

    merges = [tuple(line.split()) for line in convert_dalle_pytorch.clip_merges_text().split("\n")[:MERGES]]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("#version: tiny\n" + "\n".join(" ".join(m) for m in merges) + "\n")
        vocab_path = f.name
    tokenizer = SimpleTokenizer(bpe_path=vocab_path)
    os.remove(vocab_path)

    vae = DiscreteVAE(**VAE)
    dalle = DALLE(vae=vae, **DALLE_ARGS)
    perturb_and_round(dalle, generator)
    dalle.eval()

    checkpoint = {"hparams": DALLE_ARGS, "vae_params": VAE, "weights": dalle.state_dict()}
    tensors, metadata = convert_dalle_pytorch.convert(checkpoint, dtype="f16", with_tokenizer=False)
    blob, tok_metadata = tokenizer_tensors_and_metadata(merges=merges)
    tensors["tokenizer.merges"] = torch.from_numpy(blob)
    metadata.update(tok_metadata)
    metadata["components"] = "dvae,tokenizer,transformer"
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata=metadata)

    tsl, fmap = dalle.text_seq_len, vae.image_size // 2 ** vae.num_layers
    text = tokenizer.tokenize(PROMPTS, tsl, truncate_text=True)
    prime_pixels = torch.rand((1, 3, vae.image_size, vae.image_size), generator=generator).half().float()
    with torch.no_grad():
        def images_of(**kwargs):
            return dalle.generate_images(text.clone(), filter_thres=1.0, **kwargs)

        # generate_images returns only images: its loop, top-1, written out gives the tokens.
        def greedy_tokens(img_tokens):
            out = torch.cat((text.clone(), img_tokens), dim=-1)
            for _ in range(out.shape[1], tsl + dalle.image_seq_len):
                logits = dalle(out[:, :tsl], out[:, tsl:])[:, -1, :]
                out = torch.cat((out, (logits.argmax(dim=-1) - dalle.num_text_tokens)[:, None]), dim=-1)
            return out[:, tsl:]
        greedy = greedy_tokens(torch.zeros((len(PROMPTS), 0), dtype=torch.long))
        assert torch.equal(images_of(), vae.decode(greedy)), "argmax loop differs from generate_images(top-1)"
        prime_codes = vae.get_codebook_indices(prime_pixels)[:, :PRIME_ROWS * fmap].repeat(len(PROMPTS), 1)
        primed = greedy_tokens(prime_codes)
        assert torch.equal(images_of(img=prime_pixels.repeat(len(PROMPTS), 1, 1, 1), num_init_img_tokens=PRIME_ROWS * fmap),
                           vae.decode(primed)), "primed argmax loop differs from generate_images(img=...)"
        guided = guided_greedy(dalle, text, COND_SCALE)

    ref = {"text": text.to(torch.int32).contiguous(), "greedy": greedy.to(torch.int32).contiguous(),
           "guided": guided.to(torch.int32).contiguous(), "prime_pixels": prime_pixels.contiguous(),
           "primed": primed.to(torch.int32).contiguous()}
    save_file(ref, os.path.join(out_dir, "ref.safetensors"),
              metadata={"prompts": "\n".join(PROMPTS), "cond_scale": str(COND_SCALE), "prime_rows": str(PRIME_ROWS)})
    print(f"text {text.tolist()}\ngreedy[0][:12] {greedy[0, :12].tolist()}\nguided[0][:12] {guided[0, :12].tolist()}\n"
          f"primed[0][:12] {primed[0, :12].tolist()}")


if __name__ == "__main__":
    main()
