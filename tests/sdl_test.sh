#!/usr/bin/env bash
# examples/sdl (dalle-sdl) under Xvfb with the default model: one prompt drawn to the end (the
# screenshot shows the candidates, ranked, the best framed), and one cancelled by Esc (the
# screenshot shows what arrived before it). Skips, passing, when SDL2 or Xvfb is not installed.
#   bash tests/sdl_test.sh
set -u
cd "$(dirname "$0")/.."
if ! pkg-config --exists sdl2 2>/dev/null; then
    echo "sdl_test: SKIPPED: SDL2 is not installed (Debian: apt-get install libsdl2-dev xvfb)"
    exit 0
fi
if ! command -v xvfb-run >/dev/null; then
    echo "sdl_test: SKIPPED: Xvfb is not installed (Debian: apt-get install xvfb)"
    exit 0
fi
source tests/checks.sh
MODEL=models/shapes-world.safetensors

make examples >"$T/make.log" 2>&1 || { cat "$T/make.log"; echo "sdl_test: make examples failed"; exit 1; }
[ -x build/examples/dalle-sdl ] || { echo "sdl_test: make examples did not build build/examples/dalle-sdl"; exit 1; }

# run NAME ARGS...: dalle-sdl on its own X server; stdout in $T/NAME.out, the screenshot in $T/NAME.bmp.
run() {
    local name=$1; shift
    checks=$((checks + 1))
    timeout 300 xvfb-run -a -s "-screen 0 800x600x24" build/examples/dalle-sdl --model "$MODEL" --threads 2 \
        --screenshot "$T/$name.bmp" "$@" >"$T/$name.out" 2>"$T/$name.err" \
        || fail "dalle-sdl $* exited $?: $(cat "$T/$name.err")"
    grep -q "^screenshot written to $T/$name.bmp$" "$T/$name.out" || fail "dalle-sdl $*: no screenshot: $(cat "$T/$name.out" "$T/$name.err")"
}

# check_screenshot NAME DRAWN RANKED: the window's candidates cells (4 in a row, 128 px, after the progress
# bar) -- the first DRAWN show images (varied pixels, not the placeholder), the rest are placeholders;
# with RANKED the best is framed in yellow and the bar is full.
check_screenshot() {
    checks=$((checks + 1))
    python3 - "$T/$1.bmp" "$2" "$3" <<'EOF' || fail "screenshot $1"
import struct, sys
import numpy as np
data = open(sys.argv[1], "rb").read()
assert data[:2] == b"BM", "not a BMP"
offset, = struct.unpack_from("<I", data, 10)
width, height, _, bpp = struct.unpack_from("<iiHH", data, 18)
assert bpp in (24, 32), f"{bpp} bits per pixel"
stride = (width * bpp // 8 + 3) // 4 * 4
rows = np.frombuffer(data, np.uint8, stride * abs(height), offset).reshape(abs(height), stride)
pixels = rows[:, :width * bpp // 8].reshape(abs(height), width, bpp // 8)[:, :, 2::-1].astype(int)  # BGR(A) -> RGB
if height > 0:
    pixels = pixels[::-1]
drawn, ranked = int(sys.argv[2]), sys.argv[3] == "ranked"
margin, bar, cell = 8, 14, 128
assert pixels.shape[:2] == (2 * margin + bar + cell + margin, margin + 4 * (cell + margin)), pixels.shape
for k in range(4):
    x, y = margin + k * (cell + margin), 2 * margin + bar
    region = pixels[y + 4:y + cell - 4, x + 4:x + cell - 4]
    placeholder = (region == (48, 48, 54)).all()
    if k < drawn:
        assert not placeholder and region.std() > 5 and len(np.unique(region.reshape(-1, 3), axis=0)) >= 2, \
            f"cell {k} shows no image (std {region.std():.1f})"
    else:
        assert placeholder, f"cell {k} should still be a placeholder"
frame = (pixels[2 * margin + bar - 2, margin:margin + cell] == (250, 210, 40)).all(axis=1).mean()
assert (frame > 0.9) == ranked, f"the best image's frame: {frame:.2f}"
filled = (pixels[margin + bar // 2, margin:-margin] == (80, 200, 120)).all(axis=1).mean()
assert (filled > 0.99) == ranked and (ranked or 0 < filled < 1), f"progress bar {filled:.2f}"
print(f"ok: {sys.argv[1]}: {pixels.shape[1]}x{pixels.shape[0]}, {drawn} images, pixel std {pixels.std():.1f}")
EOF
}

# Drawn to the end: four candidates, ranked best first by CLIP + the model's weight x log-likelihood.
run done --count 4 --seed 1 "a small red circle"
check_screenshot done 4 ranked
[ "$(grep -c '^candidate [0-3]: log-likelihood' "$T/done.out")" = 4 ] && [ "$(grep -c '^rank [0-3]: candidate' "$T/done.out")" = 4 ] \
    || fail "dalle-sdl output: $(cat "$T/done.out")"
awk '/^rank/ { s = $6 + 0; if (NR > 1 && seen && s > last) exit 1; last = s; seen = 1 }' "$T/done.out" \
    || fail "ranked scores do not descend: $(cat "$T/done.out")"

# Esc after 300 of the 4 x 256 token steps (the program presses it itself): dalle_cancel stops the
# second candidate; the first stays on screen, the rest are never drawn, and no ranking happens.
run cancelled --count 4 --seed 1 --press-escape-at 300 "a small red circle"
check_screenshot cancelled 1 unranked
grep -q "^Esc: cancelling$" "$T/cancelled.out" && grep -q "^cancelled after 1 of 4 candidates$" "$T/cancelled.out" \
    && ! grep -q "^rank" "$T/cancelled.out" || fail "dalle-sdl cancel: $(cat "$T/cancelled.out")"

finish sdl_test
