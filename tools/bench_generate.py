#!/usr/bin/env python3
"""Generation speed: libdalle's dalle_generate vs DALLE-pytorch's generate_images, same weights.

    python3 tools/bench_generate.py [--configs small,large] [--batches 1,8] [--threads N] [--keep DIR]

For each configuration a random-weight DALLE (DALLE-pytorch 1.6.6, its defaults: full attention,
rotary embeddings, token shift) with a DiscreteVAE is saved as train_dalle.py saves checkpoints
and converted with tools/convert_dalle_pytorch.py (f32, CLIP's tokenizer). Then, for each batch
size, two child processes generate `batch` images for one prompt from that same checkpoint:
  libdalle:      dalle.Context.generate (the Python binding over libdalle.so: tokenize, KV-cached
                 sampling, DiscreteVAE decode);
  DALLE-pytorch: DALLE.generate_images(text, use_cache=True) (its KV cache; tokenize outside
                 the timing), torch.set_num_threads(threads).
Both sample plainly (temperature 1, no top-k cut: DALLE-pytorch's default filter_thres=0.5 keeps
more candidates than there are image tokens; no guidance). Each child reports the time of the
generate call (after one warm-up generation at batch 1, for torch's lazy set-up and the
allocators' first page faults), image tokens per second (batch x image tokens / seconds) and its peak RSS (VmHWM; Python, numpy and the
weights included on both sides). Both run with glibc's default malloc settings (tools/bench.py's
GLIBC_TUNABLES made DALLE-pytorch's generate_images 2.4x slower in a test here).

Needs: torch (CPU), dalle-pytorch and its deps (see tools/convert_dalle_pytorch.py), openai-clip
(for the tokenizer's vocabulary), numpy, and a release libdalle.so (`swift build -c release`).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)
PROMPT = "a painting of a red fox sitting in a snowy field at sunrise"

CONFIGS = {
    # A small model: 8x8 image tokens from a 64x64 DiscreteVAE, 32 text tokens.
    "small": dict(vae=dict(image_size=64, num_layers=3, num_tokens=1024, codebook_dim=256, hidden_dim=32),
                  dalle=dict(dim=256, depth=4, heads=8, dim_head=32, text_seq_len=32, num_text_tokens=49408)),
    # DALLE-pytorch-sized layers (its README's example: dim 512, 8 heads of 64, CLIP's vocabulary),
    # depth 8, an 8192-code DiscreteVAE; 64 text and 8x8 image tokens so that the reference, whose
    # cached step still grows with the sequence, finishes in minutes on 2 cores.
    "large": dict(vae=dict(image_size=64, num_layers=3, num_tokens=8192, codebook_dim=512, hidden_dim=64),
                  dalle=dict(dim=512, depth=8, heads=8, dim_head=64, text_seq_len=64, num_text_tokens=49408)),
}


def peak_rss_mib():
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent over exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_libdalle(bundle, batch, threads):
    sys.path.insert(0, os.path.join(REPO, "bindings", "python"))
    import dalle
    dalle.set_log_level(4)
    with dalle.Model(bundle) as model, dalle.Context(model, threads=threads, seed=1) as ctx:
        ctx.generate(PROMPT, count=1)  # warm-up
        start = time.perf_counter()
        result = ctx.generate(PROMPT, count=batch)
        seconds = time.perf_counter() - start
        tokens = result.tokens.size
    return dict(seconds=seconds, tokens=tokens, rss=peak_rss_mib())


def child_reference(checkpoint, batch, threads):
    import torch
    torch.set_num_threads(threads)
    sys.path.insert(0, os.path.join(TOOLS, "stubs"))
    from dalle_pytorch import DALLE, DiscreteVAE
    from dalle_pytorch.tokenizer import tokenizer
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    dalle = DALLE(vae=DiscreteVAE(**ckpt["vae_params"]), **ckpt["hparams"])
    dalle.load_state_dict(ckpt["weights"])
    dalle.eval()
    del ckpt
    text = tokenizer.tokenize([PROMPT], dalle.text_seq_len, truncate_text=True)
    torch.manual_seed(1)
    with torch.no_grad():
        dalle.generate_images(text.clone(), use_cache=True)  # warm-up
        texts = text.repeat(batch, 1)
        start = time.perf_counter()
        images = dalle.generate_images(texts, use_cache=True)
        seconds = time.perf_counter() - start
    assert images.shape[0] == batch
    return dict(seconds=seconds, tokens=batch * dalle.image_seq_len, rss=peak_rss_mib())


def make_model(name, spec, directory):
    """The checkpoint and its converted bundle for configuration `name`."""
    import torch
    sys.path.insert(0, os.path.join(TOOLS, "stubs"))
    sys.path.insert(0, TOOLS)
    from dalle_pytorch import DALLE, DiscreteVAE
    from safetensors.torch import save_file
    import convert_dalle_pytorch
    torch.manual_seed(0)
    dalle = DALLE(vae=DiscreteVAE(**spec["vae"]), **spec["dalle"])
    checkpoint = os.path.join(directory, f"{name}.pt")
    torch.save({"hparams": spec["dalle"], "vae_params": spec["vae"], "weights": dalle.state_dict()}, checkpoint)
    tensors, metadata = convert_dalle_pytorch.convert(torch.load(checkpoint, map_location="cpu", weights_only=False))
    bundle = os.path.join(directory, f"{name}.safetensors")
    save_file(tensors, bundle, metadata=metadata)
    params = sum(p.numel() for n, p in dalle.named_parameters() if not n.startswith("vae."))
    return checkpoint, bundle, params


def run_child(kind, path, batch, threads):
    out = subprocess.run([sys.executable, __file__, "--child", kind, path, str(batch), str(threads)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="small,large")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=0, help="threads on both sides (0: every core)")
    ap.add_argument("--keep", help="write the checkpoints and bundles here (default: a temporary folder)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, path, batch, threads = args.child
        fn = child_libdalle if kind == "libdalle" else child_reference
        print(json.dumps(fn(path, int(batch), int(threads))))
        return
    threads = args.threads or os.cpu_count()
    directory = args.keep or tempfile.mkdtemp(prefix="bench_generate-")
    os.makedirs(directory, exist_ok=True)
    print(f"threads {threads}; prompt {PROMPT!r}; image tokens per second (batch x image tokens / s), peak RSS")
    print(f"{'config':<8} {'params':>8} {'batch':>5} | {'libdalle s':>10} {'tok/s':>8} {'RSS MiB':>8} | "
          f"{'DALLE-pt s':>10} {'tok/s':>8} {'RSS MiB':>8} | {'speed-up':>8}")
    for name in args.configs.split(","):
        checkpoint, bundle, params = make_model(name, CONFIGS[name], directory)
        for batch in [int(b) for b in args.batches.split(",")]:
            ours = run_child("libdalle", bundle, batch, threads)
            ref = run_child("reference", checkpoint, batch, threads)
            rate, ref_rate = ours["tokens"] / ours["seconds"], ref["tokens"] / ref["seconds"]
            print(f"{name:<8} {params / 1e6:>7.1f}M {batch:>5} | {ours['seconds']:>10.2f} {rate:>8.1f} {ours['rss']:>8.0f} | "
                  f"{ref['seconds']:>10.2f} {ref_rate:>8.1f} {ref['rss']:>8.0f} | {rate / ref_rate:>7.2f}x", flush=True)
        if not args.keep:
            os.remove(checkpoint)
            os.remove(bundle)
    if not args.keep:
        os.rmdir(directory)


if __name__ == "__main__":
    main()
