#!/usr/bin/env bash
# make check-valgrind: load / generate / encode / decode / rerank / free, and the error paths
# (malformed models, every misuse of the C API), under valgrind's memcheck against the release
# build/lib. Fails on any memory error or any definitely or indirectly lost byte. No
# suppressions are needed: the Swift runtime's one-time allocations stay reachable.
#   bash tests/hostile/valgrind.sh          (after make build)
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
GOLDEN="$REPO/Tests/DalleCoreTests/Golden"
OUT="$REPO/tests-out/hostile/valgrind"
rm -rf "$OUT"
mkdir -p "$OUT/scratch"
CC=${CC:-cc}
STRICT="-std=c99 -O1 -g -Wall -Wextra -pedantic -Werror"
$CC $STRICT -Iinclude tests/hostile/driver.c -Lbuild/lib -ldalle -o "$OUT/driver"
$CC $STRICT -Iinclude tests/hostile/capi_misuse.c -Lbuild/lib -ldalle -lm -o "$OUT/capi_misuse"

# Malformed models for the error paths of loading.
python3 - "$GOLDEN/generate/model.safetensors" "$OUT" <<'EOF'
import struct, sys
data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
open(sys.argv[2] + "/truncated.safetensors", "wb").write(data[: 8 + n + 1000])
open(sys.argv[2] + "/bad-json.safetensors", "wb").write(struct.pack("<Q", n) + b"[" + data[9:])
header = data[8:8 + n].replace(b'"F16"', b'"F64"', 1)
open(sys.argv[2] + "/bad-dtype.safetensors", "wb").write(data[:8] + header + data[8 + n:])
EOF

memcheck() {
    local name=$1
    shift
    printf '\n== valgrind: %s\n' "$name"
    LD_LIBRARY_PATH="$REPO/build/lib" valgrind -q --leak-check=full --show-leak-kinds=definite,indirect \
        --errors-for-leak-kinds=definite,indirect --error-exitcode=99 "$@"
}

# A model with tokenizer, transformer and dVAE: load, tokenize, encode, decode, generate, free.
memcheck "generate model, from the file" "$OUT/driver" "$GOLDEN/generate/model.safetensors"
memcheck "generate model, from memory" "$OUT/driver" --buffer "$GOLDEN/generate/model.safetensors"
# CLIP: embeddings and rerank.
memcheck "CLIP model" "$OUT/driver" "$GOLDEN/clip/clip_tiny.safetensors"
for bad in truncated bad-json bad-dtype; do
    memcheck "$bad model" "$OUT/driver" "$OUT/$bad.safetensors"
done
memcheck "C API misuse" "$OUT/capi_misuse" "$GOLDEN/generate/model.safetensors" "$GOLDEN/clip/clip_tiny.safetensors" \
    models/checkpoints/dvae-4800-f16.safetensors "$GOLDEN/unclip/tiny_unclip_f16.safetensors" "$OUT/scratch"
printf '\nvalgrind: no memory errors, nothing lost\n'
