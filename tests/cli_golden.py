#!/usr/bin/env python3
"""Golden inputs and checks for tests/cli_test.sh, from the dVAE fixtures made by
tools/make_golden_dvae.py (Tests/DalleCoreTests/Golden/dvae/io.safetensors). Needs numpy only.

    cli_golden.py inputs DIR         writes DIR/image{0,1,2}.png (the golden encoder inputs),
                                     DIR/expected{0,1,2}.txt (their tokens) and
                                     DIR/decode{0,1}.txt (the golden decoder's token grids)
    cli_golden.py check-decoded PNG N  checks PNG against decoder_pixels[N] (within one level)
    cli_golden.py check-scaled SMALL BIG N nearest|bicubic   BIG is SMALL enlarged N times
    cli_golden.py check-sheet SHEET IMAGE...   SHEET tiles the IMAGEs row by row, ceil(sqrt(n)) columns, black after
    cli_golden.py check-ppm PPM PNG    PPM (binary P6) holds PNG's pixels
"""
import json
import os
import struct
import sys
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IO = os.path.join(ROOT, "Tests", "DalleCoreTests", "Golden", "dvae", "io.safetensors")


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + start:8 + n + end], dtype="<f4").reshape(info["shape"])
    return out


def write_png(path, rgb):
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def read_png_rgb8(path):
    """Reads a non-interlaced 8-bit RGB PNG (what the CLI writes)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, ctype, interlace) == (8, 2, 0)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride, out = w * 3, np.zeros((h, w * 3), dtype=np.int64)
    prev = np.zeros(stride, dtype=np.int64)
    for y in range(h):
        ftype, row = raw[y * (stride + 1)], np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        cur = np.zeros(stride, dtype=np.int64)
        for i in range(stride):
            a = cur[i - 3] if i >= 3 else 0
            b, c = prev[i], (prev[i - 3] if i >= 3 else 0)
            p = a + b - c
            pred = [0, a, b, (a + b) // 2,
                    a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else b if abs(p - b) <= abs(p - c) else c][ftype]
            cur[i] = (row[i] + pred) & 0xFF
        out[y], prev = cur, cur
    return out.reshape(h, w, 3)


def main():
    io = load_safetensors(IO)
    if sys.argv[1] == "inputs":
        d = sys.argv[2]
        for n, image in enumerate(io["images"]):
            write_png(os.path.join(d, f"image{n}.png"), np.rint(image.transpose(1, 2, 0) * 255).astype(np.uint8))
            grid = io["tokens"][n].astype(int)
            with open(os.path.join(d, f"expected{n}.txt"), "w") as f:
                f.write("".join(" ".join(map(str, row)) + "\n" for row in grid))
        for n, grid in enumerate(io["decoder_tokens"].astype(int)):
            with open(os.path.join(d, f"decode{n}.txt"), "w") as f:
                f.write("".join(" ".join(map(str, row)) + "\n" for row in grid))
    elif sys.argv[1] == "check-decoded":
        got = read_png_rgb8(sys.argv[2])
        want = np.rint(np.clip(io["decoder_pixels"][int(sys.argv[3])], 0, 1) * 255).transpose(1, 2, 0)
        diff = np.abs(got - want).max()
        if diff > 1:
            sys.exit(f"{sys.argv[2]}: differs from the golden decoder by up to {diff} levels")
    elif sys.argv[1] == "check-scaled":
        small, big, n = read_png_rgb8(sys.argv[2]), read_png_rgb8(sys.argv[3]), int(sys.argv[4])
        nearest = np.repeat(np.repeat(small, n, axis=0), n, axis=1)
        if big.shape != nearest.shape:
            sys.exit(f"{sys.argv[3]}: {big.shape}, expected {nearest.shape}")
        if sys.argv[5] == "nearest" and not np.array_equal(big, nearest):
            sys.exit(f"{sys.argv[3]}: not {sys.argv[2]} with every pixel repeated {n}x{n}")
        # Bicubic: smooth, so not the blocks, but near them (and exact where the image is flat).
        if sys.argv[5] == "bicubic" and (np.array_equal(big, nearest) or np.abs(big - nearest).mean() > 12):
            sys.exit(f"{sys.argv[3]}: mean difference {np.abs(big - nearest).mean():.1f} from the nearest-neighbour image")
    elif sys.argv[1] == "check-sheet":
        sheet, images = read_png_rgb8(sys.argv[2]), [read_png_rgb8(p) for p in sys.argv[3:]]
        columns = next(c for c in range(1, len(images) + 1) if c * c >= len(images))
        rows, (h, w, _) = -(-len(images) // columns), images[0].shape
        if sheet.shape != (rows * h, columns * w, 3):
            sys.exit(f"{sys.argv[2]}: {sheet.shape}, expected {(rows * h, columns * w, 3)}")
        for i in range(rows * columns):
            cell = sheet[(i // columns) * h:(i // columns + 1) * h, (i % columns) * w:(i % columns + 1) * w]
            want = images[i] if i < len(images) else np.zeros_like(images[0])
            if not np.array_equal(cell, want):
                sys.exit(f"{sys.argv[2]}: cell {i} is not {sys.argv[3 + i] if i < len(images) else 'black'}")
    elif sys.argv[1] == "check-ppm":
        with open(sys.argv[2], "rb") as f:
            data = f.read()
        png = read_png_rgb8(sys.argv[3])
        header = f"P6\n{png.shape[1]} {png.shape[0]}\n255\n".encode()
        if not data.startswith(header) or data[len(header):] != png.astype(np.uint8).tobytes():
            sys.exit(f"{sys.argv[2]}: not a P6 PPM of {sys.argv[3]}'s pixels")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
