#!/usr/bin/env python3
"""Golden vectors for libdalle's CLIP, from OpenAI's reference `openai-clip` package.

Rerun from the repository root (CPU only, no network; see tools/convert_clip.py for requirements):

    python3 tools/make_golden_clip.py

Writes Tests/DalleCoreTests/Golden/clip/:

  seeded_<name>.safetensors   for the configurations "small" (2+2 layers, 4/2 heads) and "vitb32"
      (ViT-B/32 in full: 12+12 layers, 768/512 wide): weights are NOT stored; both sides draw them
      from CLIPSeededWeights (tools/clip_reference.py). Tensors (float32 unless noted):
        pixels [2, 3, R, R] (f16 values)  preprocessed images
        tokens [3, 77] (I32)              token ids (start = vocab-2, end = vocab-1, lengths 5, 20, 77)
        image_embeddings [2, E], text_embeddings [3, E], logits [2, 3]  (reference in float64)
      metadata: the clip.* configuration and "seed".
  clip_tiny_hf.safetensors    a tiny seeded CLIP (32 px, patch 8, widths 32/16, vocab 49408) in the
      Hugging Face layout, float16
  clip_tiny.safetensors       tools/convert_clip.py's bundle of it (with the tokenizer section)
  tiny_expected.safetensors   prompts' clip.tokenize ids [P, 77] (I32), image_embeddings of image_*.png
      [I, E], text_embeddings [P, E], logits [I, P] (float64 reference of the float16 weights)
  image_<w>x<h>.png           test images; preprocessed_<w>x<h>_<n>.png: clip's Resize(n, BICUBIC) +
      CenterCrop(n) of each, by PIL (n = 224 and 32)
Prompts are in tiny_expected's metadata "prompts" (one per line).
"""
import os
import subprocess
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clip_reference as ref  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "DalleCoreTests", "Golden", "clip")

CONFIGS = {
    "small": dict(embed_dim=64, image_resolution=64, vision_patch_size=16, vision_width=128, vision_layers=2,
                  vision_heads=4, context_length=77, vocab_size=1000, transformer_width=64, transformer_layers=2,
                  transformer_heads=2),
    "vitb32": dict(embed_dim=512, image_resolution=224, vision_patch_size=32, vision_width=768, vision_layers=12,
                   vision_heads=12, context_length=77, vocab_size=49408, transformer_width=512,
                   transformer_layers=12, transformer_heads=8),
}
TINY = dict(embed_dim=32, image_resolution=32, vision_patch_size=8, vision_width=32, vision_layers=1,
            vision_heads=2, context_length=77, vocab_size=49408, transformer_width=16, transformer_layers=1,
            transformer_heads=2)
PROMPTS = ["a photo of a cat", "a diagram", "red and blue stripes"]
IMAGE_SIZES = [(300, 200), (150, 257), (224, 224), (48, 40)]


def metadata_of(config):
    m = {"clip.kind": "vit"}
    m.update({"clip." + k: str(v) for k, v in config.items()})
    return m


@torch.no_grad()
def reference_outputs(config, sd, pixels, tokens):
    model = ref.reference_model(config, sd, dtype=torch.float64)
    img = model.encode_image(torch.from_numpy(pixels).double())
    txt = model.encode_text(torch.from_numpy(tokens).long())
    logits, _ = model(torch.from_numpy(pixels).double(), torch.from_numpy(tokens).long())
    return img.numpy().astype(np.float32), txt.numpy().astype(np.float32), logits.numpy().astype(np.float32)


def seeded_golden(name, config, seed):
    rng = np.random.default_rng(seed)
    r, v = config["image_resolution"], config["vocab_size"]
    pixels = rng.normal(size=(2, 3, r, r)).astype(np.float16).astype(np.float32)
    tokens = np.zeros((3, 77), dtype=np.int32)
    for row, length in enumerate([5, 20, 77]):
        tokens[row, 0] = v - 2
        tokens[row, 1:length - 1] = rng.integers(0, v - 2, size=length - 2)
        tokens[row, length - 1] = v - 1
    sd = ref.seeded_state_dict(config, seed)
    img, txt, logits = reference_outputs(config, sd, pixels, tokens)
    meta = metadata_of(config)
    meta["seed"] = str(seed)
    save_file({"pixels": pixels.astype(np.float16), "tokens": tokens, "image_embeddings": img,
               "text_embeddings": txt, "logits": logits}, os.path.join(OUT, f"seeded_{name}.safetensors"), meta)


def test_image(w, h, seed):
    """Smooth colour ramps, a few discs and mild noise: edges and gradients for the resampler."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 128 + 100 * np.sin((x + y) / 7)], axis=-1)
    for _ in range(4):
        cx, cy, rad = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, max(w, h) / 4)
        img[(x - cx) ** 2 + (y - cy) ** 2 < rad ** 2] = rng.integers(0, 256, size=3)
    img += rng.normal(scale=6, size=img.shape)
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")


def main():
    os.makedirs(OUT, exist_ok=True)
    for i, (name, config) in enumerate(CONFIGS.items()):
        seeded_golden(name, config, seed=11 + i)

    images = []
    for i, (w, h) in enumerate(IMAGE_SIZES):
        img = test_image(w, h, seed=100 + i)
        img.save(os.path.join(OUT, f"image_{w}x{h}.png"))
        images.append(img)
        for n in (224, 32):
            ref.resize_and_crop(img, n).save(os.path.join(OUT, f"preprocessed_{w}x{h}_{n}.png"))

    # Tiny end-to-end model: HF-layout float16 checkpoint → converter → bundle.
    sd = {k: v.astype(np.float16) for k, v in ref.seeded_state_dict(TINY, 5).items()}
    hf_path = os.path.join(OUT, "clip_tiny_hf.safetensors")
    save_file({k: np.array(v, order="C") for k, v in ref.openai_to_hf(sd).items()}, hf_path,
              {"format": "pt", "clip.vision_heads": "2", "clip.transformer_heads": "2"})
    bundle_path = os.path.join(OUT, "clip_tiny.safetensors")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_clip.py"), hf_path, bundle_path,
                    "--dtype", "f16", "--vision-heads", "2", "--text-heads", "2"], check=True)
    # The OpenAI layout (pickled state dict) converts to the same tensors.
    import tempfile
    from safetensors.numpy import load_file
    with tempfile.TemporaryDirectory() as tmp:
        pt = os.path.join(tmp, "openai.pt")
        torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, pt)
        other = os.path.join(tmp, "b.safetensors")
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_clip.py"), pt, other,
                        "--dtype", "f16", "--vision-heads", "2", "--text-heads", "2"], check=True)
        a, b = load_file(bundle_path), load_file(other)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), "layouts disagree"

    sd32 = {k: v.astype(np.float32) for k, v in sd.items()}
    tokens = ref.clip.tokenize(PROMPTS).numpy().astype(np.int32)
    pixels = np.stack([ref.preprocess(img, TINY["image_resolution"]) for img in images])
    img, txt, logits = reference_outputs(TINY, sd32, pixels, tokens)
    save_file({"tokens": tokens, "image_embeddings": img, "text_embeddings": txt, "logits": logits},
              os.path.join(OUT, "tiny_expected.safetensors"),
              {"prompts": "\n".join(PROMPTS), "images": "\n".join(f"image_{w}x{h}.png" for w, h in IMAGE_SIZES)})
    print("wrote", OUT)


if __name__ == "__main__":
    main()
