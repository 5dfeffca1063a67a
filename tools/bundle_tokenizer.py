"""The tokenizer section of a libdalle bundle (see Sources/DalleCore/Text/Tokenizer.swift).

Metadata "tokenizer.kind" = "clip-bpe" and "tokenizer.vocab_size" (512 + merges + 2), and the
U8 tensor "tokenizer.merges": UTF-8 text, one merge a line ("first second"), in rank order,
no header. By default the merges are CLIP's (`bpe_simple_vocab_16e6.txt.gz` from the
openai-clip package, lines 1 .. 48894, as `SimpleTokenizer` reads them).

Converters import `tokenizer_tensors_and_metadata`; as a script it writes a bundle holding
only the tokenizer:

    python tools/bundle_tokenizer.py OUT.safetensors [--merges FILE]
"""
import argparse
import gzip
import os

import numpy as np

CLIP_MERGE_COUNT = 49152 - 256 - 2


def default_vocab_path():
    """CLIP's vocabulary file inside the installed openai-clip package (found without importing clip)."""
    import importlib.util
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("openai-clip is not installed; pass a merges file")
    return os.path.join(list(spec.submodule_search_locations)[0], "bpe_simple_vocab_16e6.txt.gz")


def read_merges(path=None):
    """Merges as (first, second) pairs in rank order. A CLIP-style vocabulary file (gzip, or a
    "#version" header line, as CLIP and DALLE-pytorch ship it) gives CLIP's first 48894 merges;
    any other file is read as bundle-format merges text."""
    path = path or default_vocab_path()
    raw = open(path, "rb").read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    lines = raw.decode("utf-8").split("\n")
    if path.endswith(".gz") or (lines and "#version" in lines[0]):
        lines = lines[1:CLIP_MERGE_COUNT + 1]
    elif lines and lines[-1] == "":
        lines = lines[:-1]
    merges = []
    for number, line in enumerate(lines, 1):
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path}: merge line {number} is not 'first second': {line!r}")
        merges.append((parts[0], parts[1]))
    return merges


def tokenizer_tensors_and_metadata(path=None, merges=None):
    """(u8 numpy array for "tokenizer.merges", {"tokenizer.kind": ..., "tokenizer.vocab_size": ...})."""
    merges = read_merges(path) if merges is None else merges
    text = "".join(f"{a} {b}\n" for a, b in merges)
    blob = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()
    metadata = {"tokenizer.kind": "clip-bpe", "tokenizer.vocab_size": str(512 + len(merges) + 2)}
    return blob, metadata


def write_tokenizer_bundle(out_path, path=None):
    """A libdalle bundle holding only the tokenizer. Written directly (the safetensors format:
    u64 little-endian header size, JSON header padded with spaces to 8 bytes, data) so the
    file is byte-for-byte reproducible; the reference writer orders metadata by hash."""
    import json
    import struct
    blob, metadata = tokenizer_tensors_and_metadata(path)
    metadata = {"format": "libdalle", "format_version": "1", "components": "tokenizer", **metadata}
    header = {"__metadata__": metadata,
              "tokenizer.merges": {"dtype": "U8", "shape": [blob.size], "data_offsets": [0, blob.size]}}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(out_path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + blob.tobytes())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output .safetensors bundle")
    parser.add_argument("--merges", help="CLIP vocabulary (.txt or .txt.gz) or bundle-format merges file (default: CLIP's)")
    args = parser.parse_args()
    write_tokenizer_bundle(args.out, args.merges)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
