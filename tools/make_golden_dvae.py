#!/usr/bin/env python3
"""Golden vectors for libdalle's dVAE, from OpenAI's reference `dall_e` package.

Rerun from the repository root (needs tools/requirements.txt; no network, CPU only):

    python3 tools/make_golden_dvae.py

It builds a small seeded random-weight dall_e Encoder and Decoder (32×32 images, 4 groups,
n_hid 16, 2 blocks per group, 128 tokens, n_init 16; the reference's minimum-size validators
are switched off for this), gives every bias a random value so biases are tested too, widens the output convolutions, pickles
the encoder as a whole module and the decoder as a state_dict (the two forms the converter
accepts), converts them with tools/convert_openai_dvae.py, and writes to
Tests/DalleCoreTests/Golden/dvae/:

  model.safetensors  the converter's libdalle bundle
  io.safetensors     float32 tensors:
    images          [3, 3, 32, 32]   inputs in [0, 1] (uint8 / 255)
    encoder_logits  [3, 128, 4, 4]   Encoder(map_pixels(images))
    tokens          [3, 4, 4]        argmax over the vocabulary (integers stored as floats)
    decoder_tokens  [2, 4, 4]        token grids to decode (holding 0 and 127)
    decoder_stats   [2, 6, 32, 32]   Decoder(one_hot(decoder_tokens).permute(0, 3, 1, 2).float())
    decoder_pixels  [2, 3, 32, 32]   unmap_pixels(sigmoid(decoder_stats[:, :3]))
"""
import os
import subprocess
import sys
import tempfile

import attr
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from dall_e.decoder import Decoder
from dall_e.encoder import Encoder
from dall_e.utils import map_pixels, unmap_pixels

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "DalleCoreTests", "Golden", "dvae")
IMAGE_SIZE, N_HID, N_BLK, VOCAB, N_INIT = 32, 16, 2, 128, 16


def build_models():
    torch.manual_seed(1234)
    attr.validators.set_disabled(True)  # dall_e requires n_hid >= 64 and vocab >= 512
    try:
        enc = Encoder(n_hid=N_HID, n_blk_per_group=N_BLK, vocab_size=VOCAB)
        dec = Decoder(n_init=N_INIT, n_hid=N_HID, n_blk_per_group=N_BLK, vocab_size=VOCAB)
    finally:
        attr.validators.set_disabled(False)
    with torch.no_grad():
        for model in (enc, dec):
            for name, p in model.named_parameters():
                if name.endswith(".b"):
                    p.normal_(std=0.02)
            # Wider logits and statistics: more distinct tokens, and pixels that reach the clamp.
            enc.blocks.output.conv.w.mul_(4)
            dec.blocks.output.conv.w.mul_(8)
    return enc.eval(), dec.eval()


def test_images():
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 256, size=(3, IMAGE_SIZE, IMAGE_SIZE))
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    gradient = np.stack([x * 255 // (IMAGE_SIZE - 1), y * 255 // (IMAGE_SIZE - 1), (x + y) * 255 // (2 * IMAGE_SIZE - 2)])
    blocks = np.stack([((x // 8 + y // 8) % 2) * 255, ((x // 4) % 2) * 200, np.full_like(x, 30)])
    return torch.from_numpy(np.stack([noise, gradient, blocks]).astype(np.uint8)).float() / 255


def main():
    enc, dec = build_models()
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        enc_path, dec_path = os.path.join(tmp, "encoder.pkl"), os.path.join(tmp, "decoder.pkl")
        torch.save(enc, enc_path)
        torch.save(dec.state_dict(), dec_path)
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_openai_dvae.py"), enc_path, dec_path,
                        os.path.join(OUT, "model.safetensors"), "--image-size", str(IMAGE_SIZE)], check=True)

    images = test_images()
    with torch.no_grad():
        logits = enc(map_pixels(images)).float()
        tokens = torch.argmax(logits, dim=1)
        top2 = torch.topk(logits, 2, dim=1).values
        margin = (top2[:, 0] - top2[:, 1]).min().item()
        assert margin > 1e-3, f"argmax margin {margin} too small for a stable golden test; change the seed"

        grid = IMAGE_SIZE // 8
        decoder_tokens = torch.stack([torch.randint(0, VOCAB, (grid, grid)), tokens[1]])
        decoder_tokens[0, 0, 0], decoder_tokens[0, -1, -1] = 0, VOCAB - 1
        z = F.one_hot(decoder_tokens, num_classes=VOCAB).permute(0, 3, 1, 2).float()
        stats = dec(z).float()
        pixels = unmap_pixels(torch.sigmoid(stats[:, :3]))

    save_file({
        "images": images.contiguous(),
        "encoder_logits": logits.contiguous(),
        "tokens": tokens.float().contiguous(),
        "decoder_tokens": decoder_tokens.float().contiguous(),
        "decoder_stats": stats.contiguous(),
        "decoder_pixels": pixels.contiguous(),
    }, os.path.join(OUT, "io.safetensors"), metadata={"source": "tools/make_golden_dvae.py"})
    print(f"wrote {OUT}: logits range [{logits.min():.3f}, {logits.max():.3f}], min argmax margin {margin:.4f}, "
          f"tokens {tokens.flatten().tolist()[:8]}...")


if __name__ == "__main__":
    main()
