#!/usr/bin/env python3
"""Makes the PNG decoder fixtures in Tests/DalleCoreTests/Golden/png/.

Each fixture NAME.png comes with NAME.rgb: the RGB8 pixels (row-major) that PNG.decode must
return, and a line "NAME WIDTH HEIGHT" in manifest.txt. Conversion rules (as PNG.decode does):
alpha and tRNS dropped, 16-bit samples keep their high byte, 1/2/4-bit gray scaled by
255 / (2^depth - 1).

Two sources:
  * a small PNG writer below, which covers what Pillow cannot write: every colour type and
    bit depth, Adam7, all five filters, stored/fixed/dynamic deflate blocks, split IDATs and
    ancillary chunks. Every such file is cross-checked by decoding it with Pillow.
  * files written by Pillow itself (RGB, L, LA, RGBA, P, 1-bit), as a real-world encoder.

    pip install pillow numpy
    python3 tools/make_png_fixtures.py              # regenerate the fixtures
    python3 tools/make_png_fixtures.py --check DIR  # check DIR/*.png against DIR/*.rgb with Pillow
"""
import os
import warnings
import struct
import sys
import zlib

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "DalleCoreTests", "Golden", "png")
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def chunk(kind, data):
    body = kind.encode() + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def filter_row(kind, row, prev, bpp):
    out = bytearray(len(row))
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
        out[i] = (x - pred) & 0xFF
    return bytes([kind]) + bytes(out)


def pack_row(samples, depth):
    """Packs one row of integer samples (already interleaved by channel) at `depth` bits."""
    if depth == 16:
        return b"".join(struct.pack(">H", int(s)) for s in samples)
    if depth == 8:
        return bytes(int(s) for s in samples)
    out, acc, nbits = bytearray(), 0, 0
    for s in samples:
        acc = (acc << depth) | int(s)
        nbits += depth
        if nbits == 8:
            out.append(acc)
            acc, nbits = 0, 0
    if nbits:
        out.append(acc << (8 - nbits))
    return bytes(out)


def write_png(path, samples, color_type, depth, interlace=False, palette=None, trns=None,
              compress=lambda raw: zlib.compress(raw, 9), idat_size=None, extra_chunks=()):
    """samples: (h, w, channels) integer array of raw sample values."""
    h, w, ch = samples.shape
    bpp = max(1, ch * depth // 8)
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    raw = bytearray()
    row_index = 0
    for x0, y0, dx, dy in passes:
        sub = samples[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        prev = bytes(len(pack_row(sub[0].reshape(-1), depth)))
        for r in sub:
            packed = pack_row(r.reshape(-1), depth)
            raw += filter_row(row_index % 5, packed, prev, bpp)  # cycle through all five filters
            prev = packed
            row_index += 1
    data = compress(bytes(raw))
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk("IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0))
    for kind, body in extra_chunks:
        png += chunk(kind, body)
    if palette is not None:
        png += chunk("PLTE", bytes(palette.reshape(-1).astype(np.uint8)))
    if trns is not None:
        png += chunk("tRNS", trns)
    step = idat_size or len(data)
    for i in range(0, len(data), step):
        png += chunk("IDAT", data[i:i + step])
    png += chunk("IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


def expected_rgb(samples, color_type, depth, palette=None):
    """The RGB8 image PNG.decode should return for raw samples."""
    s = samples.astype(np.int64)
    if depth == 16:
        s = s >> 8
    if color_type == 3:
        return palette[s[..., 0]].astype(np.uint8)
    if color_type in (0, 4):
        g = s[..., 0]
        if depth < 8:
            g = g * 255 // ((1 << depth) - 1)
        return np.repeat(g[..., None], 3, axis=2).astype(np.uint8)
    return s[..., :3].astype(np.uint8)


def pillow_rgb(path):
    """Pillow's decoding of `path` reduced to RGB8 under the same rules as PNG.decode."""
    im = Image.open(path)
    im.load()
    if im.mode in ("I;16", "I;16B", "I"):  # 16-bit gray: Pillow keeps the full value
        g = (np.array(im).astype(np.int64) >> 8).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    return np.array(im.convert("RGB"))


def deflate(level=9, strategy=zlib.Z_DEFAULT_STRATEGY):
    def run(raw):
        c = zlib.compressobj(level, zlib.DEFLATED, 15, 9, strategy)
        return c.compress(raw) + c.flush()
    return run


def make():
    os.makedirs(OUT, exist_ok=True)
    warnings.filterwarnings("ignore", "Palette images with Transparency")
    rng = np.random.default_rng(1234)
    manifest = []

    def add(name, rgb):
        h, w, _ = rgb.shape
        with open(os.path.join(OUT, name + ".rgb"), "wb") as f:
            f.write(rgb.astype(np.uint8).tobytes())
        manifest.append(f"{name} {w} {h}")

    def smooth(h, w, ch, maxval):
        """A gradient plus noise: repeats for LZ77 and varied values for the filters."""
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([(x * 7 + y * 3 + 40 * c) for c in range(ch)], axis=-1)
        noise = rng.integers(0, 4, size=(h, w, ch))
        return (base * (maxval + 1) // 64 + noise) % (maxval + 1)

    # Every colour type and bit depth, plain and Adam7, odd sizes so passes and rows are partial.
    kinds = [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 1), (3, 2), (3, 4), (3, 8),
             (4, 8), (4, 16), (6, 8), (6, 16)]
    compressors = [("dyn", deflate(9)), ("fixed", deflate(9, zlib.Z_FIXED)), ("stored", deflate(0))]
    for n, (ct, depth) in enumerate(kinds):
        for interlace in (False, True):
            h, w = (13, 11) if interlace else (9, 14)
            ch = CHANNELS[ct]
            palette = trns = None
            if ct == 3:
                entries = min(256, 1 << depth) - (1 if depth > 1 else 0)  # not always a full palette
                palette = rng.integers(0, 256, size=(entries, 3))
                samples = rng.integers(0, entries, size=(h, w, 1))
                trns = bytes([128] * min(entries, 3))
            else:
                samples = smooth(h, w, ch, (1 << depth) - 1)
            cname, comp = compressors[(2 * n + interlace) % 3]
            name = f"ct{ct}_d{depth}_{'adam7' if interlace else 'plain'}_{cname}"
            extra = [("gAMA", struct.pack(">I", 45455)), ("tEXt", b"Comment\x00fixture")] if n % 2 else []
            write_png(os.path.join(OUT, name + ".png"), samples, ct, depth, interlace, palette, trns,
                      comp, idat_size=37 if n % 3 == 0 else None, extra_chunks=extra)
            add(name, expected_rgb(samples, ct, depth, palette))

    # A larger image written by this writer (long matches, several deflate blocks at level 9).
    big = smooth(96, 130, 3, 255)
    write_png(os.path.join(OUT, "big_rgb.png"), big, 2, 8, compress=deflate(9))
    add("big_rgb", big)

    # Files written by Pillow.
    rgb = smooth(40, 33, 3, 255).astype(np.uint8)
    Image.fromarray(rgb).save(os.path.join(OUT, "pillow_rgb.png"), optimize=True)
    add("pillow_rgb", rgb)
    gray = smooth(21, 17, 1, 255).astype(np.uint8)[..., 0]
    Image.fromarray(gray, "L").save(os.path.join(OUT, "pillow_l.png"))
    add("pillow_l", np.repeat(gray[..., None], 3, axis=2))
    rgba = smooth(19, 23, 4, 255).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(os.path.join(OUT, "pillow_rgba.png"))
    add("pillow_rgba", rgba[..., :3])
    la = smooth(10, 31, 2, 255).astype(np.uint8)
    Image.fromarray(la, "LA").save(os.path.join(OUT, "pillow_la.png"))
    add("pillow_la", np.repeat(la[..., :1], 3, axis=2))
    p = Image.fromarray(rgb).quantize(colors=16)
    p.save(os.path.join(OUT, "pillow_p4.png"), bits=4)
    add("pillow_p4", np.array(p.convert("RGB")))
    bw = (gray > 128)
    Image.fromarray(bw).convert("1").save(os.path.join(OUT, "pillow_1bit.png"))
    add("pillow_1bit", np.repeat((bw * 255).astype(np.uint8)[..., None], 3, axis=2))

    with open(os.path.join(OUT, "manifest.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")
    check(OUT)


def check(directory):
    """Decodes every DIR/NAME.png with Pillow and compares with DIR/NAME.rgb."""
    names = sorted(n[:-4] for n in os.listdir(directory) if n.endswith(".png"))
    for name in names:
        got = pillow_rgb(os.path.join(directory, name + ".png"))
        with open(os.path.join(directory, name + ".rgb"), "rb") as f:
            want = np.frombuffer(f.read(), dtype=np.uint8)
        if got.size != want.size or not np.array_equal(got.reshape(-1), want):
            sys.exit(f"{name}: Pillow decodes to different pixels")
    print(f"{len(names)} PNG files match their .rgb under Pillow")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    else:
        make()
