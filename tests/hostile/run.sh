#!/usr/bin/env bash
# The hostile-input suite (tests/hostile/README.md) against one build of libdalle:
#   bash tests/hostile/run.sh release|asan [SAMPLE [SEED]]
# release: build/lib and build/bin/dalle (make build). asan: libdalle.so and the CLI built with
# AddressSanitizer into .build-asan (Swift's -sanitize=undefined is not supported on Linux), the
# C programs with clang -fsanitize=address, Python with the ASan runtime preloaded.
# SAMPLE: mutated model files to run (0 = all of them, about 80,000); SEED picks them.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
MODE=${1:?usage: run.sh release|asan [SAMPLE [SEED]]}
SAMPLE=${2:-2000}
SEED=${3:-42}
GOLDEN="$REPO/Tests/DalleCoreTests/Golden"
OUT="$REPO/tests-out/hostile/$MODE"
rm -rf "$OUT"
mkdir -p "$OUT/lib" "$OUT/scratch"
STRICT="-std=c99 -O1 -g -Wall -Wextra -pedantic -Werror"

step() { printf '\n== %s\n' "$*"; }

case "$MODE" in
release)
    LIBDIR="$REPO/build/lib"
    DALLE="$REPO/build/bin/dalle"
    CC=${CC:-cc}
    SAN_FLAGS=""
    PRELOAD=""
    ;;
asan)
    # The shared library leaves the ASan runtime to the program (-z defs would refuse that), so it
    # is linked against the runtime's shared form, which every program then loads first.
    RUNTIME=$(clang -print-file-name=libclang_rt.asan-x86_64.so)
    RUNTIME_DIR=$(dirname "$RUNTIME")
    step "swift build --sanitize=address (.build-asan)"
    swift build -c release --scratch-path .build-asan --sanitize=address --product dalle \
        -Xlinker -L"$RUNTIME_DIR" -Xlinker -lclang_rt.asan-x86_64 -Xlinker -rpath -Xlinker "$RUNTIME_DIR"
    # The CLI, a program, gets the static runtime as usual (gold's 2,000 lines of "Cannot export
    # local symbol" warnings about the runtime's symbols are dropped).
    swift build -c release --scratch-path .build-asan --sanitize=address --product dalle-cli 2>&1 |
        { grep -v "warning: Cannot export local symbol" || true; }
    BIN=$(swift build -c release --scratch-path .build-asan --show-bin-path)
    ln -sfn "$BIN/libdalle.so" "$OUT/lib/libdalle.so"
    ln -sfn "$BIN/libdalle.so" "$OUT/lib/libdalle.so.0"
    LIBDIR="$OUT/lib"
    DALLE="$BIN/dalle-cli"
    CC=clang
    SAN_FLAGS="-fsanitize=address -shared-libasan -Wl,-rpath,$RUNTIME_DIR"
    PRELOAD="$RUNTIME"
    # Leaks are make check-valgrind's; the misuse harness asks for 2^46 bytes on purpose.
    export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=0"
    ;;
*)
    echo "usage: run.sh release|asan [SAMPLE [SEED]]" >&2
    exit 2
    ;;
esac

step "C API misuse: every function of include/dalle.h"
python3 tests/hostile/coverage.py include/dalle.h tests/hostile/capi_misuse.c
$CC $STRICT -Iinclude tests/hostile/capi_misuse.c -L"$LIBDIR" -ldalle -lm $SAN_FLAGS -o "$OUT/capi_misuse"
LD_LIBRARY_PATH="$LIBDIR" "$OUT/capi_misuse" "$GOLDEN/generate/model.safetensors" "$GOLDEN/clip/clip_tiny.safetensors" \
    models/checkpoints/dvae-4800-f16.safetensors "$GOLDEN/unclip/tiny_unclip_f16.safetensors" "$OUT/scratch"

step "mutated model files: $SAMPLE cases (0 = all), seed $SEED, one process each"
$CC $STRICT -Iinclude tests/hostile/driver.c -L"$LIBDIR" -ldalle $SAN_FLAGS -o "$OUT/driver"
python3 tests/hostile/run.py --driver "$OUT/driver" --lib-dir "$LIBDIR" --dalle "$REPO/build/bin/dalle" \
    --sample "$SAMPLE" --seed "$SEED" --out "$OUT/failed"

step "Python binding: bad input"
LD_PRELOAD="$PRELOAD" DALLE_LIBRARY="$LIBDIR/libdalle.so.0" python3 -m pytest -q -p no:cacheprovider tests/python/test_hostile.py

step "CLI: bad input"
bash tests/hostile/cli_cases.sh "$DALLE" "$OUT/scratch"

printf '\nhostile-input suite (%s): passed\n' "$MODE"
