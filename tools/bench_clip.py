#!/usr/bin/env python3
"""CLIP throughput at ViT-B/32 size: libdalle (through the Python binding) vs OpenAI's
`openai-clip` on CPU torch, with the same random weights, in the same run.

    python3 tools/bench_clip.py [--threads 2] [--batch 8] [--rounds 3] [--keep BUNDLE]

The weights are CLIPSeededWeights (tools/clip_reference.py) rounded to float16, written
once as a libdalle bundle (about 300 MB, in a temporary folder unless --keep names a path)
and loaded, as float32, by both sides. Reported, best of --rounds:
  image embeddings/s  a batch of --batch 224x224 images (libdalle: dalle_clip_encode_images,
                      which also centre-crops and normalises; torch: encode_image of the
                      preprocessed batch)
  text embeddings/s   prompts one at a time (libdalle: dalle_clip_encode_text, tokenizing
                      included; torch: clip.tokenize + encode_text), and torch on the whole
                      batch at once.
libdalle stops the text transformer at the end-of-text token (the causal mask makes the
later positions irrelevant); the reference computes all 77 positions.
Needs: torch (CPU), openai-clip (--no-deps), safetensors, numpy, a release libdalle.so.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bindings", "python"))

PROMPTS = ["a photo of a cat", "an armchair in the shape of an avocado", "a diagram of a steam engine",
           "red and blue stripes", "a snail made of harp", "the exact same cat on the top as a sketch on the bottom",
           "a store front that has the word openai written on it", "an illustration of a baby daikon radish in a tutu"]


def best_rate(fn, count, rounds):
    fn()  # warm-up
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return count / best


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", help="write (or reuse) the bundle at this path")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import torch
    import clip_reference as ref
    from convert_clip import bundle
    from safetensors.numpy import save_file
    import dalle
    torch.set_num_threads(args.threads)

    config = dict(embed_dim=512, image_resolution=224, vision_patch_size=32, vision_width=768, vision_layers=12,
                  vision_heads=12, context_length=77, vocab_size=49408, transformer_width=512,
                  transformer_layers=12, transformer_heads=8)
    sd = {k: v.astype(np.float16).astype(np.float32) for k, v in ref.seeded_state_dict(config, 1).items()}
    tmp = tempfile.TemporaryDirectory()
    path = args.keep or os.path.join(tmp.name, "clip_vitb32_seeded.safetensors")
    if not os.path.exists(path):
        tensors, metadata = bundle(sd, dtype="f16")
        save_file(tensors, path, metadata=metadata)

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8) for _ in range(args.batch)]
    prompts = (PROMPTS * (args.batch // len(PROMPTS) + 1))[:args.batch]
    mean = np.array(ref.MEAN, dtype=np.float32)[:, None, None]
    std = np.array(ref.STD, dtype=np.float32)[:, None, None]
    pixels = torch.from_numpy(np.stack([(a.transpose(2, 0, 1) / np.float32(255) - mean) / std for a in images]))

    model = ref.reference_model(config, sd)
    with torch.no_grad():
        torch_image = best_rate(lambda: model.encode_image(pixels), args.batch, args.rounds)
        torch_text1 = best_rate(lambda: [model.encode_text(ref.clip.tokenize([p])) for p in prompts],
                                args.batch, args.rounds)
        torch_textb = best_rate(lambda: model.encode_text(ref.clip.tokenize(prompts)), args.batch, args.rounds)
        ref_img = model.encode_image(pixels[:1]).numpy()[0]
        ref_txt = model.encode_text(ref.clip.tokenize(prompts[:1])).numpy()[0]
    del model

    with dalle.Model(path) as m, dalle.Context(m, threads=args.threads) as ctx:
        ours_image = best_rate(lambda: ctx.clip_encode_images(images), args.batch, args.rounds)
        ours_text = best_rate(lambda: [ctx.clip_encode_text(p) for p in prompts], args.batch, args.rounds)
        img_err = np.abs(ctx.clip_encode_images(images[:1])[0] - ref_img).max()
        txt_err = np.abs(ctx.clip_encode_text(prompts[0]) - ref_txt).max()

    print(f"CLIP ViT-B/32, random weights, {args.threads} threads, batch {args.batch}, best of {args.rounds}")
    print(f"{'':28}{'libdalle':>12}{'torch':>12}")
    print(f"{'image embeddings/s':28}{ours_image:12.2f}{torch_image:12.2f}")
    print(f"{'text embeddings/s (1 by 1)':28}{ours_text:12.2f}{torch_text1:12.2f}")
    print(f"{'text embeddings/s (batch)':28}{'':>12}{torch_textb:12.2f}")
    print(f"max |difference| of embeddings: image {img_err:.2e}, text {txt_err:.2e}")


if __name__ == "__main__":
    main()
