#!/usr/bin/env python3
"""DALL·E 2 (unCLIP) speed and memory: `dalle generate` vs diffusers' UnCLIPPipeline, same random weights.

    python3 tools/bench_unclip.py [--runs N] [--threads 2] [--work DIR] [--dalle build/bin/dalle]
                                  [--python PYTHON] [--steps 25,25,7] [--guidance 4,8]
    python3 tools/bench_unclip.py --full DIR     one image at Karlo's full size (3.4 B parameters), libdalle alone

Builds ONE random-weight pipeline shaped like Kakao Brain's Karlo (`kakaobrain/karlo-v1-alpha`: the same
block types, depths, head width, 77 text tokens, a 64×64 decoder and 256×256 super-resolution) with every
width divided by 5 (UNet channels 64/128/192/256 for Karlo's 320/640/960/1280, a 512-wide 10-layer prior for
Karlo's 2048-wide 20 layers, a 6-layer text encoder (768 wide, as the prior's and text_proj's inputs are)) so that the reference finishes in minutes on 2
cores. It is saved with diffusers' `save_pretrained` (f32) and converted with tools/convert_unclip.py
(--dtype f16, the bundle libdalle runs). Then the two run in turn, A B A B … (`--runs` pairs: pairing keeps the
ratio meaningful on a machine shared with other work), each in its own child process, one image of the
same prompt with the same step counts and guidance (Karlo's 25/25/7, 4.0/8.0):
  libdalle:  `dalle generate --threads N` on the bundle; its progress bar (drawn on a pseudo-terminal) is
             timestamped to split the run into stages;
  diffusers: UnCLIPPipeline.from_pretrained + __call__ in f32 (CPU torch has no fast 16-bit path),
             torch.set_num_threads(N); the stages split where the decoder and super_res_first are first called.
Printed: seconds for loading and for each stage (prior = text encoder + prior loop; decoder = text_proj +
decoder loop; super-res = ×4 resize + both super-resolution UNets' loop), the whole process, its peak RSS
(the kernel's ru_maxrss of that child, from wait4), the stored weights' size, and the ratios per pair
(medians over the pairs, min–max beside them).

The random weights are drawn once and cached in --work (default build/bench-unclip); delete it to redraw.

--full DIR times one image at Karlo's full configuration (3.4 B parameters) with libdalle alone (diffusers
would take far longer on 2 cores). Its random weights (seeded, f16, 6.8 GB) are written once to
DIR/karlo-random-f16.safetensors straight in tools/convert_unclip.py's output layout (the same names, metadata
and configs, taken from the parts built on torch's meta device), one tensor at a time: a 3.4 B-parameter f32
pipeline folder and its conversion would not fit beside each other in 24 GB.
Needs: the reference Python (torch CPU, diffusers, transformers, numpy, safetensors: tools/setup.sh) and a
release build (`make build`).
"""
import argparse
import json
import os
import pty
import re
import select
import statistics
import subprocess
import sys
import time

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)
PROMPT = "a red cat on a blue mat"
MERGES = ["r e", "re d</w>", "c a", "ca t</w>", "o n</w>", "m a", "ma t</w>", "b l", "bl u", "blu e</w>"]
STAGES = ["prior", "decoder", "super_res"]
VENV_PYTHON = "/work/venv-ref/bin/python"

def unclip_configs(channels, prior_heads, prior_layers, text_layers, cross):
    """The parts' constructor arguments for Karlo's shape with these widths and depths (Karlo's own
    structure: 77 tokens, 768-wide CLIP embeddings, heads of 64, 3 res-blocks per level, 32 groups)."""
    return {
        "text_encoder": dict(hidden_size=768, intermediate_size=3072, projection_dim=768, num_hidden_layers=text_layers,
                             num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5),
        "prior": dict(num_attention_heads=prior_heads, attention_head_dim=64, num_layers=prior_layers, embedding_dim=768,
                      num_embeddings=77, additional_embeddings=4),
        "text_proj": dict(clip_extra_context_tokens=4, clip_embeddings_dim=768, time_embed_dim=4 * channels[0],
                          cross_attention_dim=cross),
        "decoder": dict(sample_size=64, in_channels=3, out_channels=6, layers_per_block=3,
                        down_block_types=("ResnetDownsampleBlock2D",) + ("SimpleCrossAttnDownBlock2D",) * 3,
                        up_block_types=("SimpleCrossAttnUpBlock2D",) * 3 + ("ResnetUpsampleBlock2D",),
                        mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=channels,
                        cross_attention_dim=cross, attention_head_dim=64, class_embed_type="identity",
                        resnet_time_scale_shift="scale_shift"),
        "super_res": dict(sample_size=256, in_channels=6, out_channels=3, layers_per_block=3,
                          down_block_types=("ResnetDownsampleBlock2D",) * 4, up_block_types=("ResnetUpsampleBlock2D",) * 4,
                          block_out_channels=channels, add_attention=False),
    }


# Kakao Brain's Karlo (karlo-v1-alpha, as diffusers' conversion script builds it): 3.4 B parameters.
KARLO = unclip_configs((320, 640, 960, 1280), prior_heads=32, prior_layers=20, text_layers=12, cross=1536)
# The benchmark's: every width / 5, the prior and the text encoder half as deep.
SCALED = unclip_configs((64, 128, 192, 256), prior_heads=8, prior_layers=10, text_layers=6, cross=384)
SCHEDULERS = {  # Karlo's scheduler configs
    "prior": dict(variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000,
                  clip_sample=True, clip_sample_range=5.0),
    "decoder": dict(variance_type="learned_range", prediction_type="epsilon", num_train_timesteps=1000),
    "super_res": dict(variance_type="fixed_small_log", prediction_type="epsilon", num_train_timesteps=1000),
}


def build_pipeline(folder):
    """The scaled random-weight pipeline, saved with save_pretrained (f32 safetensors)."""
    import torch
    from diffusers import PriorTransformer, UNet2DConditionModel, UNet2DModel
    from diffusers.pipelines.deprecated.unclip import UnCLIPPipeline, UnCLIPTextProjModel
    from diffusers.schedulers import UnCLIPScheduler
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer
    sys.path.insert(0, TOOLS)
    from convert_unclip import clip_vocabulary

    torch.manual_seed(0)
    tokenizer_dir = folder + ".tokenizer"
    os.makedirs(tokenizer_dir, exist_ok=True)
    vocab = clip_vocabulary([tuple(m.split(" ")) for m in MERGES])
    with open(os.path.join(tokenizer_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({tok: i for i, tok in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(tokenizer_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    tokenizer = CLIPTokenizer(os.path.join(tokenizer_dir, "vocab.json"), os.path.join(tokenizer_dir, "merges.txt"),
                              model_max_length=77)
    bos, eos = tokenizer.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"])
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(vocab_size=len(vocab), bos_token_id=bos, eos_token_id=eos,
                                                              pad_token_id=eos, **SCALED["text_encoder"]))
    models = dict(text_encoder=text_encoder, prior=PriorTransformer(**SCALED["prior"]),
                  text_proj=UnCLIPTextProjModel(**SCALED["text_proj"]), decoder=UNet2DConditionModel(**SCALED["decoder"]),
                  super_res_first=UNet2DModel(**SCALED["super_res"]), super_res_last=UNet2DModel(**SCALED["super_res"]))
    # Every parameter drawn (diffusers zero-initialises some output layers), small enough to stay finite.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in models.values():
            for name, p in sorted(m.named_parameters()):
                p.add_(torch.randn(p.shape, generator=g) * (0.02 if p.abs().max() > 0 else 0.2))
        models["prior"].clip_std.abs_().add_(0.5)
    pipe = UnCLIPPipeline(tokenizer=tokenizer, **{k: m.eval() for k, m in models.items()},
                          **{f"{k}_scheduler": UnCLIPScheduler(**v) for k, v in SCHEDULERS.items()})
    pipe.save_pretrained(folder)
    # Karlo's layout: vocab.json + merges.txt (transformers 5 saves tokenizer.json only).
    for name in ("vocab.json", "merges.txt"):
        with open(os.path.join(tokenizer_dir, name), "rb") as src, open(os.path.join(folder, "tokenizer", name), "wb") as dst:
            dst.write(src.read())


def synthetic_merges(count):
    """`count` BPE merges of two byte symbols each: with them CLIP's vocabulary rule gives Karlo's
    49408 tokens for 48894 merges (CLIP's own merges file is not needed for random weights)."""
    from convert_unclip import byte_symbols
    symbols = byte_symbols()
    return [(a, b) for a in symbols for b in symbols][:count]


def write_random_bundle(path, configs, seed=0):
    """A libdalle unCLIP bundle as tools/convert_unclip.py writes it (the same names, metadata and
    configs; convert_unclip.bundle makes the metadata) for a pipeline of `configs`, every tensor f16
    drawn from a seeded normal (std 0.02; norm weights and clip_std near 1), streamed to disk one tensor
    at a time (the models are built on torch's meta device, so no weights are held in memory)."""
    import numpy as np
    import torch
    from diffusers import PriorTransformer, UNet2DConditionModel, UNet2DModel
    from diffusers.pipelines.deprecated.unclip import UnCLIPTextProjModel
    from diffusers.schedulers import UnCLIPScheduler
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection
    sys.path.insert(0, TOOLS)
    from convert_unclip import MODEL_PARTS, bundle
    from bundle_tokenizer import tokenizer_tensors_and_metadata

    merges = synthetic_merges(49408 - 514)
    text_config = CLIPTextConfig(vocab_size=49408, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
                                 **configs["text_encoder"])
    with torch.device("meta"):
        models = dict(text_encoder=CLIPTextModelWithProjection(text_config), prior=PriorTransformer(**configs["prior"]),
                      text_proj=UnCLIPTextProjModel(**configs["text_proj"]), decoder=UNet2DConditionModel(**configs["decoder"]),
                      super_res_first=UNet2DModel(**configs["super_res"]), super_res_last=UNet2DModel(**configs["super_res"]))
    index = {"_class_name": "UnCLIPPipeline", **{k: ["diffusers", type(m).__name__] for k, m in models.items()}}
    index["text_encoder"][0] = "transformers"
    pipeline = {"index": json.dumps(index), "class": "UnCLIPPipeline",
                "models": {k: ({n: None for n in m.state_dict()}, None) for k, m in models.items()},
                "model_texts": {k: (type(m).__name__, text_config.to_json_string() if k == "text_encoder" else m.to_json_string())
                                for k, m in models.items()},
                "schedulers": {f"{k}_scheduler": UnCLIPScheduler(**v).to_json_string() for k, v in SCHEDULERS.items()},
                "tokenizer": (merges, {}), "feature_extractor": None}
    _, metadata = bundle(pipeline, "f16")
    shapes = {}
    for part in MODEL_PARTS:
        if part in models:
            for name, t in models[part].state_dict().items():
                shapes[f"unclip.{part}.{name}"] = tuple(t.shape)
    blob, _ = tokenizer_tensors_and_metadata(merges=merges)
    header, offset = {"__metadata__": metadata}, 0
    for name in sorted(shapes):
        size = 2 * int(np.prod(shapes[name], dtype=np.int64))
        header[name] = {"dtype": "F16", "shape": list(shapes[name]), "data_offsets": [offset, offset + size]}
        offset += size
    header["tokenizer.merges"] = {"dtype": "U8", "shape": list(blob.shape), "data_offsets": [offset, offset + blob.size]}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    rng = np.random.default_rng(seed)
    with open(path + ".partial", "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for name in sorted(shapes):
            values = rng.standard_normal(shapes[name], dtype=np.float32) * 0.02
            if re.search(r"(norm[^.]*|layer_norm\d?|ln_\w+)\.weight$|clip_std$", name):
                values += 1
            f.write(values.astype(np.float16).tobytes())
        f.write(blob.astype(np.uint8).tobytes())
    os.replace(path + ".partial", path)
    print(f"wrote {path}: {sum(int(np.prod(v)) for v in shapes.values()) / 1e9:.2f} B parameters, f16")


def run_reference(folder, threads, steps, guidance):
    """diffusers' pipeline in this process; prints one JSON line of stage seconds."""
    import torch
    torch.set_num_threads(threads)
    from diffusers import PriorTransformer, UNet2DConditionModel, UNet2DModel
    from diffusers.pipelines.deprecated.unclip import UnCLIPPipeline, UnCLIPTextProjModel
    from diffusers.schedulers import UnCLIPScheduler
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer
    start = time.perf_counter()
    # Part by part (as from_pretrained would: diffusers 0.42 no longer resolves the deprecated text_proj
    # class from model_index.json).
    parts = dict(tokenizer=CLIPTokenizer, text_encoder=CLIPTextModelWithProjection, prior=PriorTransformer,
                 text_proj=UnCLIPTextProjModel, decoder=UNet2DConditionModel, super_res_first=UNet2DModel,
                 super_res_last=UNet2DModel, prior_scheduler=UnCLIPScheduler, decoder_scheduler=UnCLIPScheduler,
                 super_res_scheduler=UnCLIPScheduler)
    pipe = UnCLIPPipeline(**{name: cls.from_pretrained(os.path.join(folder, name)) for name, cls in parts.items()})
    pipe.set_progress_bar_config(disable=True)
    loaded = time.perf_counter()
    marks = {}

    def mark_first_call(module, name):
        forward = module.forward

        def wrapped(*args, **kwargs):
            marks.setdefault(name, time.perf_counter())
            return forward(*args, **kwargs)
        module.forward = wrapped

    mark_first_call(pipe.decoder, "decoder")
    mark_first_call(pipe.super_res_first, "super_res")
    with torch.no_grad():
        pipe(PROMPT, num_images_per_prompt=1, prior_num_inference_steps=steps[0], decoder_num_inference_steps=steps[1],
             super_res_num_inference_steps=steps[2], prior_guidance_scale=guidance[0], decoder_guidance_scale=guidance[1],
             generator=torch.Generator().manual_seed(0), output_type="np")
    end = time.perf_counter()
    print(json.dumps(dict(load=loaded - start, prior=marks["decoder"] - loaded, decoder=marks["super_res"] - marks["decoder"],
                          super_res=end - marks["super_res"])))


def wait_with_rusage(process):
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024  # MiB


def measure_reference(args, folder, steps, guidance):
    log = os.path.join(os.path.dirname(folder), "diffusers.log")  # its warnings, shown only when it fails
    start = time.perf_counter()
    with open(log, "w") as errors:
        p = subprocess.Popen([args.python, os.path.abspath(__file__), "--child-reference", folder, "--threads", str(args.threads),
                              "--steps", ",".join(map(str, steps)), "--guidance", ",".join(map(str, guidance))],
                             stdout=subprocess.PIPE, stderr=errors, text=True)
        out = p.stdout.read()
        rss = wait_with_rusage(p)
    if p.returncode != 0:
        sys.exit(f"bench_unclip: the diffusers run failed ({p.returncode}): " + open(log).read()[-2000:])
    result = json.loads(out.strip().splitlines()[-1])
    result.update(total=time.perf_counter() - start, rss=rss)
    return result


def measure_libdalle(args, bundle, steps, guidance, out_dir):
    """`dalle generate` with stderr on a pseudo-terminal: its bar's k/total redraws are timestamped."""
    master, slave = pty.openpty()
    start = time.perf_counter()
    p = subprocess.Popen([args.dalle, "generate", "--model", bundle, "--prompt", PROMPT, "--count", "1", "--seed", "1",
                          "--threads", str(args.threads), "--out-dir", out_dir,
                          "--prior-steps", str(steps[0]), "--decoder-steps", str(steps[1]), "--super-res-steps", str(steps[2]),
                          "--prior-guidance", str(guidance[0]), "--decoder-guidance", str(guidance[1])],
                         stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    reached, text = {}, ""
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if not ready:
            if p.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 4096).decode(errors="replace")
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        now = time.perf_counter()
        text += chunk
        for match in re.finditer(r"(\d+)/(\d+)", chunk):
            reached.setdefault(int(match.group(1)), now)
    os.close(master)
    rss = wait_with_rusage(p)
    end = time.perf_counter()
    if p.returncode != 0:
        sys.exit(f"bench_unclip: dalle generate failed ({p.returncode}): {text[-2000:]}")
    bounds = [0, steps[0], steps[0] + steps[1], sum(steps)]
    if any(b not in reached for b in bounds):
        sys.exit(f"bench_unclip: could not read the progress of dalle generate: {text[-2000:]}")
    marks = [reached[b] for b in bounds]
    return dict(load=marks[0] - start, prior=marks[1] - marks[0], decoder=marks[2] - marks[1], super_res=marks[3] - marks[2],
                total=end - start, rss=rss)


def full_size(args, steps, guidance):
    os.makedirs(args.full, exist_ok=True)
    bundle = os.path.join(args.full, "karlo-random-f16.safetensors")
    if not os.path.exists(bundle):
        free = os.statvfs(args.full).f_bavail * os.statvfs(args.full).f_frsize
        if free < 8 * 2**30:
            sys.exit(f"bench_unclip: {free / 2**30:.1f} GiB free in {args.full}; the random Karlo bundle needs 7")
        subprocess.run([args.python, os.path.abspath(__file__), "--child-random", bundle], check=True)
    stored = os.path.getsize(bundle) / 2**20
    print(f"unCLIP at Karlo's full size, random f16 weights ({stored:.0f} MiB); libdalle, {args.threads} threads; "
          f"steps {steps}, guidance {guidance}", flush=True)
    r = measure_libdalle(args, bundle, steps, guidance, os.path.join(args.full, "images"))
    print("seconds: " + ", ".join(f"{k} {r[k]:.1f}" for k in ["load"] + STAGES + ["total"]))
    print(f"peak RSS libdalle: {r['rss']:.0f} MiB = {r['rss'] / stored:.2f} x its stored weights ({stored:.0f} MiB)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="pairs of runs (default 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default=os.path.join(REPO, "build", "bench-unclip"))
    parser.add_argument("--dalle", default=os.path.join(REPO, "build", "bin", "dalle"))
    parser.add_argument("--python", default=os.environ.get("REFERENCE_PYTHON", VENV_PYTHON if os.path.exists(VENV_PYTHON) else sys.executable),
                        help=f"the Python with torch and diffusers (default $REFERENCE_PYTHON, else {VENV_PYTHON} when present, else this one)")
    parser.add_argument("--steps", default="25,25,7", help="prior,decoder,super-res steps (default Karlo's 25,25,7)")
    parser.add_argument("--guidance", default="4.0,8.0", help="prior,decoder guidance (default Karlo's 4.0,8.0)")
    parser.add_argument("--full", metavar="DIR", help="instead: one image at Karlo's full size with libdalle alone, from random "
                        "f16 weights written to DIR/karlo-random-f16.safetensors when absent (6.8 GB)")
    parser.add_argument("--child-random", metavar="BUNDLE", help=argparse.SUPPRESS)
    parser.add_argument("--child-reference", metavar="PIPELINE_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--child-build", metavar="PIPELINE_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    guidance = [float(s) for s in args.guidance.split(",")]
    if args.child_build:
        build_pipeline(args.child_build)
        return
    if args.child_reference:
        run_reference(args.child_reference, args.threads, steps, guidance)
        return
    if args.child_random:
        write_random_bundle(args.child_random, KARLO)
        return
    if args.full:
        full_size(args, steps, guidance)
        return

    folder, bundle = os.path.join(args.work, "pipeline"), os.path.join(args.work, "karlo-scaled-f16.safetensors")
    os.makedirs(args.work, exist_ok=True)
    if not os.path.exists(os.path.join(folder, "model_index.json")):
        subprocess.run([args.python, os.path.abspath(__file__), "--child-build", folder], check=True)
    if not os.path.exists(bundle):
        subprocess.run([args.python, os.path.join(TOOLS, "convert_unclip.py"), folder, bundle, "--dtype", "f16"], check=True)
    stored = {"diffusers": sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs
                               if f.endswith(".safetensors")) / 2**20,
              "libdalle": os.path.getsize(bundle) / 2**20}
    print(f"unCLIP, Karlo's shape with widths / 5, random weights; {args.threads} threads; steps {steps}, guidance {guidance}; "
          f"{args.runs} pairs, libdalle and diffusers in turn")
    print(f"stored weights: libdalle {stored['libdalle']:.0f} MiB (f16 bundle), diffusers {stored['diffusers']:.0f} MiB (f32)")
    results = {"libdalle": [], "diffusers": []}
    for run in range(args.runs):
        results["libdalle"].append(measure_libdalle(args, bundle, steps, guidance, os.path.join(args.work, "images")))
        results["diffusers"].append(measure_reference(args, folder, steps, guidance))
        print(f"pair {run + 1}: " + "; ".join(f"{name} " + " ".join(f"{k} {v:.2f}" for k, v in r[-1].items())
                                              for name, r in results.items()), flush=True)
    keys = ["load"] + STAGES + ["total"]
    print(f"\n{'seconds (median [min-max])':28} {'libdalle':>22} {'diffusers':>22} {'diffusers/libdalle':>22}")
    for key in keys:
        cells = []
        for name in ("libdalle", "diffusers"):
            values = [r[key] for r in results[name]]
            cells.append(f"{statistics.median(values):8.2f} [{min(values):.2f}-{max(values):.2f}]")
        ratios = [d[key] / max(l[key], 1e-9) for l, d in zip(results["libdalle"], results["diffusers"])]
        cells.append(f"{statistics.median(ratios):8.2f} [{min(ratios):.2f}-{max(ratios):.2f}]")
        print(f"{key:28} " + " ".join(f"{c:>22}" for c in cells))
    for name in ("libdalle", "diffusers"):
        rss = statistics.median(r["rss"] for r in results[name])
        print(f"peak RSS {name}: {rss:.0f} MiB = {rss / stored[name]:.2f} x its stored weights ({stored[name]:.0f} MiB)")


if __name__ == "__main__":
    main()
