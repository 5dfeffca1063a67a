#!/usr/bin/env python3
"""How well a dVAE (any libdalle model file or dVAE checkpoint) reconstructs Shapes World images:
encodes and decodes N images of a training stream and judges each reconstruction against its caption.
Needs only the Python binding (numpy); used to compare dVAE training runs without a transformer.

    PYTHONPATH=bindings/python python3 tools/experiments/dvae_reconstruction.py MODEL [MODEL ...] [--count 200] [--stream 12345]
"""
import argparse
import collections

import numpy as np

import dalle


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--count", type=int, default=200, help="images to reconstruct (default 200)")
    parser.add_argument("--stream", type=int, default=12345, help="training-stream seed (default 12345)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    samples = [dalle.shapes_training_sample(args.stream, i) for i in range(args.count)]
    captions = [caption for caption, _ in samples]
    images = np.stack([image for _, image in samples])
    for path in args.models:
        with dalle.Model(path) as model, dalle.Context(model, threads=args.threads, seed=0) as ctx:
            tokens = ctx.encode(images)
            reconstructions = ctx.decode(tokens)
        failures = collections.Counter()
        for image, caption in zip(reconstructions, captions):
            passed, reason = dalle.shapes_judge(image, caption)
            if not passed:
                failures[reason.split(":")[0]] += 1
        passed = args.count - sum(failures.values())
        print(f"{path}: {passed}/{args.count} reconstructions pass ({100 * passed / args.count:.1f} %), "
              f"{len(np.unique(tokens))} codes used; failures: {dict(failures.most_common(4))}")


if __name__ == "__main__":
    main()
