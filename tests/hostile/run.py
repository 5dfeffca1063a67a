#!/usr/bin/env python3
"""The hostile-input suite: mutated model files, one subprocess per case.

Each case is a model file made from a valid seed file by one mutation (a truncation, a header
length, a crafted JSON header, a tensor's dtype, shape or data offsets, a metadata value, a
nested config value, a quantized tensor's block count, its bytes). tests/hostile/driver.c
loads it and exercises whatever it loaded. A case passes when the driver exits 0 (the library
answered with DALLE_OK or an error status and a message); a signal, a sanitizer report, a
finding of the driver (exit 3: DALLE_INTERNAL_ERROR, a failure without a message, an output
not zeroed) or a run past --timeout fails it, and the case file is kept in --out.

    python3 tests/hostile/run.py --driver DRIVER [--lib-dir DIR] [--sample N] [--seed S]
                                 [--jobs J] [--only SUBSTRING] [--list]

The cases are generated in a fixed order from the seed files; --sample N runs N of them drawn
with --seed (the same N cases for the same seed), spread evenly over every seed file and kind
of mutation, plus the cases of regressions.txt (each once found a bug). Needs the Python standard library only.
"""
import argparse
import concurrent.futures
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(REPO, "Tests", "DalleCoreTests", "Golden")

# The seed files: the shipped default model and a small file of every component kind.
SEEDS = {
    "shapes-world": os.path.join(REPO, "models", "shapes-world.safetensors"),
    "dvae-openai": os.path.join(REPO, "models", "checkpoints", "dvae-4800-f16.safetensors"),
    "dvae-dalle-pytorch": os.path.join(GOLDEN, "dvae", "model.safetensors"),
    "tokenizer": os.path.join(GOLDEN, "tokenizer", "clip_bpe.safetensors"),
    "transformer": os.path.join(GOLDEN, "generate", "model.safetensors"),
    "clip": os.path.join(GOLDEN, "clip", "clip_tiny.safetensors"),
    "unclip": os.path.join(GOLDEN, "unclip", "tiny_unclip_f16.safetensors"),
}
# Quantized seeds are made from the transformer seed with `dalle bundle --dtype q8|q4`.
QUANTIZED = {"transformer-q8_0": "q8", "transformer-q4_0": "q4"}

# Cases that once found a bug, run with every sample.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "regressions.txt")) as f:
    REGRESSIONS = {line.rstrip("\n") for line in f if line.strip() and not line.startswith("#")}

ABSURD_STRINGS = ["", "0", "1", "-1", "2", "3", "7", "31", "33", "2147483647", "2147483648", "4294967295",
                  "4294967296", "9223372036854775807", "18446744073709551616", "1e308", "-1e308", "nan", "inf",
                  "-0", "0.5", "abc", "1,2", ",", ",,", " 1", "1 ", "\u0000", "\u00e9", "x" * 100000,
                  "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0"]
ABSURD_JSON = [0, -1, 1, 2, 7, 2 ** 31, 2 ** 32, 2 ** 63, 2 ** 64, -2 ** 63, 1e308, -1e308, 0.5, None, True, "x", "",
               [], [0], [-1], [2 ** 31] * 3, {}, {"a": 1}]
DTYPES = ["F32", "F16", "BF16", "U8", "I8", "I16", "I32", "I64", "F64", "BOOL", "F8_E4M3", "Q8_0", "", "f16", 5, None]


# ---- the file format --------------------------------------------------------------------------

def parse(data):
    """(header dict in file order, body bytes) of a safetensors file."""
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def serialize(header, body, raw_header=None):
    """A safetensors file: the header (padded with spaces to 8 bytes, as the writers do), the body."""
    text = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def tensors_of(header):
    return [name for name in header if name != "__metadata__"]


def rebuild(header, body, name, data):
    """The file with tensor `name`'s bytes replaced by `data` and every offset recomputed."""
    header = json.loads(json.dumps(header))
    parts, offset = [], 0
    for other in sorted(tensors_of(header), key=lambda t: header[t]["data_offsets"][0]):
        begin, end = header[other]["data_offsets"]
        chunk = data if other == name else body[begin:end]
        header[other]["data_offsets"] = [offset, offset + len(chunk)]
        parts.append(chunk)
        offset += len(chunk)
    return serialize(header, b"".join(parts))


# ---- the mutations ------------------------------------------------------------------------------

def cases_for(seed, data):
    """Yields (name, make) pairs: make() returns the mutated file's bytes."""
    header, body = parse(data)
    header_len = struct.unpack("<Q", data[:8])[0]
    names = tensors_of(header)
    metadata = header.get("__metadata__", {})

    def with_header(mutate):
        def make():
            copy = json.loads(json.dumps(header))
            mutate(copy)
            return serialize(copy, body)
        return make

    # Truncations.
    for size in sorted({0, 1, 7, 8, 9, 8 + header_len // 2, 8 + header_len - 1, 8 + header_len,
                        8 + header_len + 1, 8 + header_len + len(body) // 2, len(data) - 1}):
        if 0 <= size < len(data):
            yield f"{seed}/truncate/{size}", (lambda size=size: data[:size])
    # The header's length field.
    for value in [0, 1, 7, header_len - 1, header_len + 1, len(data) - 8, len(data) - 7, len(data), 2 ** 31,
                  2 ** 32, 100_000_000, 2 ** 63 - 1, 2 ** 64 - 1]:
        yield f"{seed}/header-length/{value}", (lambda value=value: struct.pack("<Q", value % 2 ** 64) + data[8:])
    # Crafted JSON headers over the original body.
    crafted = {
        "empty": b"", "spaces": b"        ", "null": b"null", "array": b"[]", "string": b'"x"', "number": b"1",
        "open-brace": b"{", "unterminated-string": b'{"a', "trailing-comma": b'{"a":1,}', "empty-object": b"{}",
        "deep-arrays": b"[" * 100000, "deep-objects": b'{"a":' * 100000, "huge-number": b'{"a":1e999999}',
        "long-number": b'{"a":' + b"9" * 100000 + b"}", "lone-surrogate": b'{"\\ud800":1}',
        "bad-escape": b'{"\\x41":1}', "invalid-utf8": b'{"\xff\xfe":1}', "nul-in-key": b'{"a\x00b":1}',
        "control-char": b'{"a\nb":1}', "metadata-number": b'{"__metadata__":5}',
        "metadata-nested": b'{"__metadata__":{"format":{"a":1}}}',
        "tensor-not-object": b'{"t":5}', "tensor-missing-fields": b'{"t":{}}',
        "one-f32": b'{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        "zero-sized": b'{"t":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}',
    }
    for name, text in crafted.items():
        yield f"{seed}/json/{name}", (lambda text=text: serialize(None, body, raw_header=text))

    def duplicate_first(_):
        text = json.dumps(header, separators=(",", ":")).encode()
        first = names[0]
        entry = json.dumps({first: header[first]}, separators=(",", ":")).encode()[1:-1]
        return text[:-1] + b"," + entry + b"}"
    if names:
        yield f"{seed}/json/duplicate-tensor", (lambda: serialize(None, body, raw_header=duplicate_first(None)))
    yield f"{seed}/json/no-metadata", with_header(lambda h: h.pop("__metadata__", None))

    # Metadata: every key removed, set to absurd strings and to non-strings; numbers off by one.
    for key, value in metadata.items():
        yield f"{seed}/metadata/{key}/removed", with_header(lambda h, key=key: h["__metadata__"].pop(key))
        values = list(ABSURD_STRINGS)
        try:
            number = int(value)
            values += [str(number - 1), str(number + 1), str(number * 2), str(number // 2), str(-number)]
        except ValueError:
            pass
        for i, absurd in enumerate(values):
            yield (f"{seed}/metadata/{key}/{i}:{absurd[:24]!r}",
                   with_header(lambda h, key=key, absurd=absurd: h["__metadata__"].__setitem__(key, absurd)))
        for i, absurd in enumerate([5, None, [], {}]):
            yield (f"{seed}/metadata/{key}/type{i}",
                   with_header(lambda h, key=key, absurd=absurd: h["__metadata__"].__setitem__(key, absurd)))
        # A value that is itself JSON (unCLIP's configs): every field removed or set to absurd values.
        if isinstance(value, str) and value.lstrip().startswith("{"):
            try:
                config = json.loads(value)
            except ValueError:
                continue
            for field in config:
                def set_field(h, key=key, field=field, absurd=None, remove=False):
                    inner = json.loads(h["__metadata__"][key])
                    if remove:
                        inner.pop(field)
                    else:
                        inner[field] = absurd
                    h["__metadata__"][key] = json.dumps(inner)
                yield f"{seed}/config/{key}/{field}/removed", with_header(lambda h, f=set_field: f(h, remove=True))
                for i, absurd in enumerate(ABSURD_JSON):
                    yield (f"{seed}/config/{key}/{field}/{i}:{json.dumps(absurd)[:24]}",
                           with_header(lambda h, f=set_field, absurd=absurd: f(h, absurd=absurd)))

    # Tensors: dtype, shape, offsets, removal, and the bytes themselves.
    total = len(body)
    for name in names:
        entry = header[name]
        shape, (begin, end) = entry["shape"], entry["data_offsets"]
        for dtype in DTYPES:
            if dtype != entry["dtype"]:
                yield (f"{seed}/dtype/{name}/{dtype}",
                       with_header(lambda h, name=name, dtype=dtype: h[name].__setitem__("dtype", dtype)))
        shapes = [[], [0], shape + [1], shape[:-1], [-1], [2 ** 62, 2 ** 62], [2 ** 31] * 4, ["a"], [1.5], 5, None,
                  [2 ** 64]]
        if shape:
            shapes += [[shape[0] + 1] + shape[1:], [shape[0] - 1] + shape[1:], shape[::-1], [shape[0] * 2] + shape[1:]]
        for i, new_shape in enumerate(shapes):
            yield (f"{seed}/shape/{name}/{i}:{json.dumps(new_shape)[:24]}",
                   with_header(lambda h, name=name, s=new_shape: h[name].__setitem__("shape", s)))
        offsets = [[end, begin], [begin, end + 1], [begin, end - 1], [begin, total + 8], [0, 0], [-1, end],
                   [begin, 2 ** 64], [begin, 2 ** 63], [begin], "x", None, [begin - 1, end - 1], [0, end - begin],
                   [total, total + end - begin]]
        for i, new_offsets in enumerate(offsets):
            yield (f"{seed}/offsets/{name}/{i}:{json.dumps(new_offsets)[:24]}",
                   with_header(lambda h, name=name, o=new_offsets: h[name].__setitem__("data_offsets", o)))
        yield f"{seed}/tensor/{name}/removed", with_header(lambda h, name=name: h.pop(name))
        yield (f"{seed}/tensor/{name}/renamed",
               with_header(lambda h, name=name: h.__setitem__(name + ".extra", h.pop(name))))
        tensor = body[begin:end]
        byte_mutations = {
            "half": tensor[: len(tensor) // 2], "empty": b"", "doubled": tensor + tensor,
            "ff": b"\xff" * len(tensor), "zeros": bytes(len(tensor)),
            "random": random.Random(name).randbytes(len(tensor)),
        }
        for label, new_bytes in byte_mutations.items():
            yield (f"{seed}/bytes/{name}/{label}",
                   (lambda name=name, b=new_bytes: rebuild(header, body, name, b)))
        # Shape and bytes changed together, consistently (right size, wrong count of rows or blocks).
        if entry["dtype"] == "U8" and len(shape) == 2 and name + ".quantization" in metadata:
            rows, row_bytes = shape
            block = 34 if metadata[name + ".quantization"] == "q8_0" else 18
            for label, (new_rows, new_row_bytes) in {
                "row-less": (rows - 1, row_bytes), "row-more": (rows + 1, row_bytes),
                "block-less": (rows, row_bytes - block), "block-more": (rows, row_bytes + block),
                "odd-bytes": (rows, row_bytes - 1), "one-block": (rows, block), "flat": (1, rows * row_bytes),
            }.items():
                def make(name=name, r=new_rows, c=new_row_bytes):
                    copy = json.loads(json.dumps(header))
                    copy[name]["shape"] = [r, c]
                    new_bytes = (tensor * 2)[: max(r * c, 0)]
                    return rebuild(copy, body, name, new_bytes)
                yield f"{seed}/quantized/{name}/{label}", make
            other = "q4_0" if metadata[name + ".quantization"] == "q8_0" else "q8_0"
            yield (f"{seed}/quantized/{name}/as-{other}",
                   with_header(lambda h, name=name, q=other: h["__metadata__"].__setitem__(name + ".quantization", q)))
    yield f"{seed}/tensor/unknown-added", with_header(
        lambda h: h.__setitem__("zz.unknown", {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}))


def all_cases(seed_paths):
    cases = []
    for seed, path in seed_paths.items():
        with open(path, "rb") as f:
            data = f.read()
        cases.extend(cases_for(seed, data))
    return cases


def stratified_sample(cases, count, seed):
    """`count` cases drawn with `seed`, spread evenly over the groups (seed file and kind of mutation:
    "unclip/shape"), so that a small sample still tries every kind on every file."""
    rng = random.Random(seed)
    groups = {}
    for case in cases:
        groups.setdefault("/".join(case[0].split("/")[:2]), []).append(case)
    for members in groups.values():
        rng.shuffle(members)
    queues = [groups[key] for key in sorted(groups)]
    chosen = []
    while len(chosen) < count:
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop())
    return chosen


# ---- running ------------------------------------------------------------------------------------

def classify(proc):
    """'ok', or what went wrong."""
    text = proc.stderr
    if "AddressSanitizer" in text or "LeakSanitizer" in text or "runtime error:" in text:
        return "sanitizer report"
    if proc.returncode < 0:
        return f"signal {-proc.returncode}"
    if proc.returncode == 3:
        return "finding"
    if proc.returncode != 0:
        return f"exit {proc.returncode}"
    return "ok"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--driver", help="the compiled tests/hostile/driver.c")
    parser.add_argument("--lib-dir", default=os.path.join(REPO, "build", "lib"), help="where libdalle.so.0 is")
    parser.add_argument("--dalle", default=os.path.join(REPO, "build", "bin", "dalle"),
                        help="the CLI, to make the quantized seeds")
    parser.add_argument("--sample", type=int, default=0, help="run this many cases drawn with --seed (0: all)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120, help="seconds a case may take")
    parser.add_argument("--only", help="run the cases whose name contains this")
    parser.add_argument("--list", action="store_true", help="print the case names and stop")
    parser.add_argument("--out", default=os.path.join(REPO, "tests-out", "hostile"), help="failing cases go here")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="dalle-hostile-")
    try:
        seeds = dict(SEEDS)
        for seed, dtype in QUANTIZED.items():
            path = os.path.join(work, seed + ".safetensors")
            subprocess.run([args.dalle, "bundle", "--out", path, "--dtype", dtype, SEEDS["transformer"]],
                           check=True, capture_output=True)
            seeds[seed] = path
        cases = all_cases(seeds)
        total = len(cases)
        if args.only:
            cases = [c for c in cases if args.only in c[0]]
        if args.sample and args.sample < len(cases):
            sample = stratified_sample(cases, args.sample, args.seed)
            chosen = {name for name, _ in sample}
            cases = sample + [case for case in cases if case[0] in REGRESSIONS and case[0] not in chosen]
        if args.list:
            for name, _ in cases:
                print(name)
            return 0
        if not args.driver:
            parser.error("--driver is needed to run the cases")

        env = dict(os.environ, LD_LIBRARY_PATH=args.lib_dir)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=0")

        def run(index_case):
            index, (name, make) = index_case
            path = os.path.join(work, f"case{index}.safetensors")
            with open(path, "wb") as f:
                f.write(make())
            # Every fourth case loads from memory (dalle_model_load_buffer), the rest from the file.
            command = [args.driver] + (["--buffer"] if index % 4 == 3 else []) + [path]
            try:
                proc = subprocess.run(command, capture_output=True, text=True, errors="replace", env=env,
                                      timeout=args.timeout)
                verdict = classify(proc)
                loaded = verdict == "ok" and proc.stdout.startswith("loaded")
                detail = proc.stderr[-3000:]
            except subprocess.TimeoutExpired:
                verdict, loaded, detail = f"timeout after {args.timeout:.0f} s", False, ""
            if verdict != "ok":
                os.makedirs(args.out, exist_ok=True)
                shutil.copy(path, os.path.join(args.out, f"case{index}.safetensors"))
            os.remove(path)
            return name, index, verdict, loaded, detail

        start = time.monotonic()
        failures, loaded_count = [], 0
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for name, index, verdict, loaded, detail in pool.map(run, enumerate(cases)):
                loaded_count += loaded
                if verdict != "ok":
                    failures.append(name)
                    print(f"FAIL {name} (kept as {args.out}/case{index}.safetensors): {verdict}\n{detail}",
                          flush=True)
        seconds = time.monotonic() - start
        print(f"hostile models: {len(cases)} of {total} cases run in {seconds:.0f} s ({args.jobs} jobs): "
              f"{loaded_count} loaded and exercised, {len(cases) - loaded_count - len(failures)} rejected "
              f"with a status, {len(failures)} failed")
        return 1 if failures else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
