"""Text -> images through the Python binding: candidates for a prompt, a variation that keeps
the top rows of the first one (image priming), and a cancelled generation.

    python3 examples/python/generate.py MODEL.safetensors "a red ball" [OUT_DIR]

with the package installed (pip install ./bindings/python), or PYTHONPATH=bindings/python in the
checkout.

MODEL needs a tokenizer, a transformer and a dVAE. With OUT_DIR and Pillow installed, the images
are saved as PNGs.
"""
import os
import sys

import numpy as np

import dalle


def main(path, prompt, out_dir=None):
    with dalle.Model(path) as model, dalle.Context(model, seed=42) as ctx:
        print(model)
        steps = []
        result = ctx.generate(prompt, count=4, top_k=16,  # the model's guidance scale
                              progress=lambda phase, step, total: steps.append((phase, step, total)))
        print(f"prompt: {result.prompt_tokens} tokens ({result.truncated_tokens} dropped), seed {result.seed}, "
              f"{result.generated_tokens} image tokens each, {len(steps)} progress calls")
        print("images", result.images.shape, result.images.dtype, "tokens", result.tokens.shape)
        print("log-likelihood per token:", " ".join(f"{x:.3f}" for x in result.log_likelihoods))

        # The same seed gives the same images.
        again = ctx.generate(prompt, count=4, top_k=16, images=False)
        assert np.array_equal(again.tokens, result.tokens), "same seed, different tokens"

        # A variation of image 0: its top half kept, the rest sampled again.
        rows = result.tokens.shape[1] // 2
        variation = ctx.generate(prompt, count=2, seed=7, prime=result.tokens[0], prime_rows=rows)
        assert np.array_equal(variation.tokens[:, :rows], np.repeat(result.tokens[:1, :rows], 2, axis=0))
        print(f"variation: kept {rows} of {result.tokens.shape[1]} rows")

        # Cancel from the progress callback: CancelledError, nothing leaked.
        try:
            ctx.generate(prompt, progress=lambda phase, step, total: step < 5)
            raise SystemExit("the generation was not cancelled")
        except dalle.CancelledError as e:
            print("cancelled:", e)

        try:
            ctx.generate(prompt, top_p=1.5)
            raise SystemExit("top_p 1.5 was accepted")
        except dalle.InvalidArgumentError as e:
            print("rejected:", e)

        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
            saved = result.save(os.path.join(out_dir, "{i:03d}.png"))
            saved += variation.save(os.path.join(out_dir, "variation-{i:03d}.png"))
            print("saved", len(saved), "images to", out_dir)
    print("ok")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        raise SystemExit("usage: generate.py MODEL.safetensors PROMPT [OUT_DIR]")
    main(*sys.argv[1:])
