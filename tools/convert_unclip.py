#!/usr/bin/env python3
"""Convert a diffusers unCLIP pipeline folder (DALL·E 2 / Kakao Brain's Karlo) into one libdalle bundle.

    python3 tools/convert_unclip.py PIPELINE_DIR OUT.safetensors [--dtype f16|bf16|f32] [--variant fp16]
                                    [--image-encoder VARIATIONS_DIR]

PIPELINE_DIR is a folder as diffusers' `save_pretrained` writes it (the layout `kakaobrain/karlo-v1-alpha`
and `karlo-v1-alpha-image-variations` are published in): `model_index.json`; one folder per model with
its `config.json` and state dict (`*.safetensors`, or `*.bin` pickles, single or sharded with an
`*.index.json`; `--variant fp16` picks `*.fp16.*` files); `*_scheduler/scheduler_config.json`; and
`tokenizer/` with `vocab.json` + `merges.txt` (or, as newer transformers save it, `tokenizer.json`).

--image-encoder adds the `image_encoder/` (CLIPVisionModelWithProjection) and `feature_extractor/` of an
image-variations pipeline folder (`karlo-v1-alpha-image-variations`, whose other parts are Karlo's) to a
text-to-image bundle: one file then makes images from prompts, variations of images, interpolations
between either, and reranks by CLIP.

Nothing about widths, depths, heads or sizes is assumed: every tensor is kept under its diffusers /
transformers name with a component prefix, and every config file is kept verbatim as a metadata string:

  tensors   unclip.<part>.<name>   for each model part (text_encoder, prior, text_proj, decoder,
                                   super_res_first, super_res_last, and image_encoder when present),
                                   floating point in --dtype (default f16), other dtypes as stored
            tokenizer.merges       U8, the BPE merges as tools/bundle_tokenizer.py writes them
  metadata  format=libdalle, format_version=1, components=unclip,tokenizer
            unclip.pipeline        model_index.json
            unclip.pipeline_class  its _class_name (UnCLIPPipeline or UnCLIPImageVariationPipeline)
            unclip.parts           the model parts, comma-separated, in the order above
            unclip.<part>.class    the part's class from model_index.json
            unclip.<part>.config   the part's config.json
            unclip.<scheduler>.config   prior_scheduler / decoder_scheduler / super_res_scheduler
            unclip.tokenizer.config, unclip.tokenizer.special_tokens_map, unclip.feature_extractor.config
                                   (each when the file exists)
            unclip.dtype           f16, bf16 or f32
            tokenizer.kind=clip-bpe, tokenizer.vocab_size

The vocabulary must be the one CLIP's BPE implies (256 byte symbols, the same with "</w>", one token
per merge in rank order, then <|startoftext|> and <|endoftext|>), as Karlo's is; any other is an error
that says where it differs. Each scheduler config is checked against what libdalle's UnCLIPScheduler
supports (squaredcos_cap_v2; fixed_small_log or learned_range; epsilon or sample).

Requirements: numpy, safetensors; torch (CPU) only for `.bin` state dicts and --dtype bf16.
"""
import argparse
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bundle_tokenizer import tokenizer_tensors_and_metadata  # noqa: E402

MODEL_PARTS = ["text_encoder", "prior", "text_proj", "decoder", "super_res_first", "super_res_last", "image_encoder"]
SCHEDULERS = ["prior_scheduler", "decoder_scheduler", "super_res_scheduler"]
PREFIXES = {part: f"unclip.{part}." for part in MODEL_PARTS}
REQUIRED = {
    "UnCLIPPipeline": ["text_encoder", "prior", "text_proj", "decoder", "super_res_first", "super_res_last",
                       "prior_scheduler", "decoder_scheduler", "super_res_scheduler", "tokenizer"],
    "UnCLIPImageVariationPipeline": ["text_encoder", "text_proj", "decoder", "super_res_first", "super_res_last",
                                     "image_encoder", "decoder_scheduler", "super_res_scheduler", "tokenizer"],
}
FLOAT_DTYPES = {"f32": np.float32, "f16": np.float16}


class ConversionError(Exception):
    pass


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def variant_of(filename):
    """'diffusion_pytorch_model.fp16.safetensors' -> 'fp16'; 'model.safetensors' -> None."""
    base = re.sub(r"\.(safetensors|bin)(\.index\.json)?$", "", filename)
    return base.split(".")[-1] if "." in base else None


def state_dict_files(folder, variant=None):
    """The state dict files of one part: an index's shards, or the single file; safetensors first."""
    names = sorted(os.listdir(folder))
    for ext in (".safetensors", ".bin"):
        indexes = [n for n in names if n.endswith(ext + ".index.json") and variant_of(n) == variant]
        if indexes:
            weight_map = json.loads(read_text(os.path.join(folder, indexes[0])))["weight_map"]
            return [os.path.join(folder, n) for n in sorted(set(weight_map.values()))]
        singles = [n for n in names if n.endswith(ext) and variant_of(n) == variant]
        if len(singles) > 1:
            raise ConversionError(f"{folder}: several state dicts {singles} and no index")
        if singles:
            return [os.path.join(folder, singles[0])]
    raise ConversionError(f"{folder}: no state dict (*.safetensors or *.bin"
                          + (f", variant {variant}" if variant else "") + ")")


def load_state_dict(folder, variant=None):
    """name -> numpy array (bf16 tensors widened to float32)."""
    state = {}
    for path in state_dict_files(folder, variant):
        if path.endswith(".safetensors"):
            from safetensors import safe_open
            with safe_open(path, "pt" if _has_torch() else "np") as f:
                part = {k: f.get_tensor(k) for k in f.keys()}
        else:
            import torch
            part = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(part, dict):
                raise ConversionError(f"{path}: not a state dict")
        for k, v in part.items():
            if k in state:
                raise ConversionError(f"{path}: tensor {k} appears twice")
            state[k] = _to_numpy(v)
    return state


def _has_torch():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def _to_numpy(v):
    if isinstance(v, np.ndarray):
        return v
    import torch
    v = v.detach().cpu()
    if v.dtype == torch.bfloat16:
        v = v.float()
    return v.numpy()


def read_tokenizer(folder):
    """BPE merges (pairs in rank order) checked against the vocabulary, and the config texts."""
    vocab_path, merges_path = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    if os.path.exists(vocab_path) and os.path.exists(merges_path):
        vocab = json.loads(read_text(vocab_path))
        lines = read_text(merges_path).split("\n")
        if lines and lines[0].startswith("#version"):
            lines = lines[1:]
        merges = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ConversionError(f"{merges_path}: line {number} is not 'first second': {line!r}")
            merges.append((parts[0], parts[1]))
    elif os.path.exists(os.path.join(folder, "tokenizer.json")):
        model = json.loads(read_text(os.path.join(folder, "tokenizer.json")))["model"]
        if model.get("type") != "BPE":
            raise ConversionError(f"{folder}/tokenizer.json: a {model.get('type')} model, not BPE")
        vocab = model["vocab"]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    else:
        raise ConversionError(f"{folder}: no vocab.json + merges.txt (nor tokenizer.json)")
    expected = clip_vocabulary(merges)
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if len(vocab) != len(expected) or any(tok != want or i != n for n, ((tok, i), want) in enumerate(zip(by_id, expected))):
        for n, ((tok, i), want) in enumerate(zip(by_id, expected)):
            if tok != want or i != n:
                raise ConversionError(f"{folder}: vocabulary id {n} is {tok!r} (id {i}); CLIP's BPE with these merges "
                                      f"has {want!r} there")
        raise ConversionError(f"{folder}: {len(vocab)} tokens; CLIP's BPE with {len(merges)} merges has {len(expected)}")
    configs = {}
    for key, name in (("config", "tokenizer_config.json"), ("special_tokens_map", "special_tokens_map.json")):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            configs[key] = read_text(path)
    return merges, configs


def clip_vocabulary(merges):
    """The token list CLIP's SimpleTokenizer builds from `merges`."""
    symbols = byte_symbols()
    return symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]


def byte_symbols():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def check_scheduler(name, text):
    config = json.loads(text)
    checks = [("num_train_timesteps", lambda v: isinstance(v, int) and 2 <= v <= 100_000),
              ("variance_type", lambda v: v in ("fixed_small_log", "learned_range")),
              ("prediction_type", lambda v: v in ("epsilon", "sample")),
              ("clip_sample", lambda v: isinstance(v, bool)),
              ("clip_sample_range", lambda v: isinstance(v, (int, float)) and v > 0),
              ("beta_schedule", lambda v: v == "squaredcos_cap_v2")]
    for key, ok in checks:
        if key in config and not ok(config[key]):
            raise ConversionError(f"{name}/scheduler_config.json: {key} = {config[key]!r} is not supported")


def read_pipeline(folder, variant=None):
    """{"index": model_index text, "class": pipeline class, "models": {part: (state, config dict)},
    "model_texts": {part: (class, config text)}, "schedulers": {name: text}, "tokenizer": (merges, configs),
    "feature_extractor": text or None}."""
    index_text = read_text(os.path.join(folder, "model_index.json"))
    index = json.loads(index_text)
    pipeline_class = index.get("_class_name")
    if pipeline_class not in REQUIRED:
        raise ConversionError(f"{folder}: model_index.json names {pipeline_class!r}, not one of {sorted(REQUIRED)}")
    missing = [p for p in REQUIRED[pipeline_class] if p not in index or not os.path.isdir(os.path.join(folder, p))]
    if missing:
        raise ConversionError(f"{folder}: {pipeline_class} lacks {', '.join(missing)}")
    models, texts = {}, {}
    for part in MODEL_PARTS:
        if part not in index:
            continue
        path = os.path.join(folder, part)
        config_text = read_text(os.path.join(path, "config.json"))
        state = load_state_dict(path, variant)
        if not state:
            raise ConversionError(f"{path}: empty state dict")
        models[part] = (state, json.loads(config_text))
        texts[part] = (index[part][1] if isinstance(index[part], list) else str(index[part]), config_text)
    schedulers = {}
    for name in SCHEDULERS:
        if name in index:
            text = read_text(os.path.join(folder, name, "scheduler_config.json"))
            check_scheduler(name, text)
            schedulers[name] = text
    feature = os.path.join(folder, "feature_extractor", "preprocessor_config.json")
    return {"index": index_text, "class": pipeline_class, "models": models, "model_texts": texts,
            "schedulers": schedulers, "tokenizer": read_tokenizer(os.path.join(folder, "tokenizer")),
            "feature_extractor": read_text(feature) if os.path.exists(feature) else None}


def add_image_encoder(pipeline, folder, variant=None):
    """Adds the image-variations pipeline `folder`'s image_encoder and feature_extractor to `pipeline`."""
    if "image_encoder" in pipeline["models"]:
        raise ConversionError("the pipeline already has an image_encoder; --image-encoder adds one to a text-to-image pipeline")
    index = json.loads(read_text(os.path.join(folder, "model_index.json")))
    path = os.path.join(folder, "image_encoder")
    feature = os.path.join(folder, "feature_extractor", "preprocessor_config.json")
    if "image_encoder" not in index or not os.path.isdir(path) or not os.path.exists(feature):
        raise ConversionError(f"{folder}: --image-encoder wants an image-variations pipeline with image_encoder/ and feature_extractor/")
    config_text = read_text(os.path.join(path, "config.json"))
    state = load_state_dict(path, variant)
    if not state:
        raise ConversionError(f"{path}: empty state dict")
    entry = index["image_encoder"]
    pipeline["models"]["image_encoder"] = (state, json.loads(config_text))
    pipeline["model_texts"]["image_encoder"] = (entry[1] if isinstance(entry, list) else str(entry), config_text)
    pipeline["feature_extractor"] = read_text(feature)


def bundle(pipeline, dtype="f16"):
    """(tensors, metadata) of the libdalle bundle."""
    tensors = {}
    for part, (state, _) in pipeline["models"].items():
        for name, value in state.items():
            tensors[PREFIXES[part] + name] = value
    merges, tokenizer_configs = pipeline["tokenizer"]
    blob, tokenizer_meta = tokenizer_tensors_and_metadata(merges=merges)
    tensors["tokenizer.merges"] = blob
    parts = [p for p in MODEL_PARTS if p in pipeline["models"]]
    metadata = {"format": "libdalle", "format_version": "1", "components": "unclip,tokenizer",
                "unclip.pipeline": pipeline["index"], "unclip.pipeline_class": pipeline["class"],
                "unclip.parts": ",".join(parts), "unclip.dtype": dtype, **tokenizer_meta}
    for part, (cls, text) in pipeline["model_texts"].items():
        metadata[f"unclip.{part}.class"] = cls
        metadata[f"unclip.{part}.config"] = text
    for name, text in pipeline["schedulers"].items():
        metadata[f"unclip.{name}.config"] = text
    for key, text in tokenizer_configs.items():
        metadata[f"unclip.tokenizer.{key}"] = text
    if pipeline["feature_extractor"] is not None:
        metadata["unclip.feature_extractor.config"] = pipeline["feature_extractor"]
    return tensors, metadata


def save(tensors, metadata, path, dtype):
    """Floating-point tensors in `dtype`; bf16 goes through torch (numpy has no bfloat16)."""
    if dtype == "bf16":
        import torch
        from safetensors.torch import save_file
        out = {}
        for k, v in tensors.items():
            t = torch.from_numpy(np.ascontiguousarray(v))
            out[k] = t.to(torch.bfloat16) if t.is_floating_point() else t
        save_file(out, path, metadata=metadata)
        return
    from safetensors.numpy import save_file
    target = FLOAT_DTYPES[dtype]
    save_file({k: np.ascontiguousarray(v.astype(target) if np.issubdtype(v.dtype, np.floating) else v)
               for k, v in tensors.items()}, path, metadata=metadata)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipeline_dir")
    parser.add_argument("out")
    parser.add_argument("--dtype", choices=["f16", "bf16", "f32"], default="f16")
    parser.add_argument("--variant", help="read the '<name>.<variant>.safetensors' state dicts (e.g. fp16)")
    parser.add_argument("--image-encoder", metavar="VARIATIONS_DIR",
                        help="add this image-variations pipeline's image_encoder and feature_extractor")
    args = parser.parse_args()
    try:
        pipeline = read_pipeline(args.pipeline_dir, args.variant)
        if args.image_encoder:
            add_image_encoder(pipeline, args.image_encoder, args.variant)
    except (ConversionError, OSError, KeyError, ValueError) as e:
        sys.exit(f"convert_unclip: {e}")
    tensors, metadata = bundle(pipeline, args.dtype)
    save(tensors, metadata, args.out, args.dtype)
    count = sum(int(np.prod(v.shape)) for k, v in tensors.items() if k.startswith("unclip."))
    print(f"wrote {args.out}: {len(tensors)} tensors ({count / 1e6:.1f} M parameters), parts {metadata['unclip.parts']}, "
          f"{args.dtype}")


if __name__ == "__main__":
    main()
