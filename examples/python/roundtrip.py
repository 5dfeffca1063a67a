"""Encode -> decode round trip through the Python binding on a synthetic image.

    PYTHONPATH=bindings/python python3 examples/python/roundtrip.py MODEL.safetensors
"""
import sys

import numpy as np

import dalle


def main(path):
    print(dalle.system_info())
    with dalle.Model(path) as model, dalle.Context(model, threads=0) as ctx:
        print(model)
        s = model.image_size
        y, x = np.mgrid[0:s, 0:s]
        image = np.stack([255 * x // s, 255 * y // s, 255 * (x + y) // (2 * s)], axis=-1).astype(np.uint8)

        tokens = ctx.encode(image[None])          # (1, G, G) int32
        print("tokens:", tokens[0].tolist())
        decoded = ctx.decode(tokens)              # (1, S, S, 3) uint8
        diff = np.abs(decoded[0].astype(int) - image.astype(int)).mean()
        print(f"decoded {decoded.shape}, mean absolute difference {diff:.1f} / 255")

        bad = tokens.copy()
        bad[0, 0, 0] = model.codebook_size
        try:
            ctx.decode(bad)
            raise SystemExit("a bad token was accepted")
        except dalle.InvalidArgumentError as e:
            print("bad token rejected:", e)
    print("ok")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: roundtrip.py MODEL.safetensors")
    main(sys.argv[1])
