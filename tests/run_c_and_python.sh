#!/usr/bin/env bash
# C header/ABI checks, the C example and the Python binding, against a release libdalle.so.
#   bash tests/run_c_and_python.sh        (builds with `swift build -c release` first)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
LIBDIR="$REPO/.build/release"
MODEL="$REPO/Tests/DalleCoreTests/Golden/dvae/model.safetensors"
GEN_MODEL="$REPO/Tests/DalleCoreTests/Golden/generate/model.safetensors"
OUT="$REPO/tests-out/c"
CC=${CC:-cc}
CXX=${CXX:-c++}
STRICT="-Wall -Wextra -pedantic -Werror"
mkdir -p "$OUT"

step() { printf '\n== %s\n' "$*"; }

step "swift build -c release"
swift build -c release
test -f "$LIBDIR/libdalle.so"

step "header: C99 and C++, strict warnings"
$CC -std=c99 $STRICT -Wstrict-prototypes -Iinclude tests/c/header_check.c -L"$LIBDIR" -ldalle -o "$OUT/header_check_c99"
$CXX -x c++ -std=c++11 $STRICT -Iinclude tests/c/header_check.c -L"$LIBDIR" -ldalle -o "$OUT/header_check_cxx"
LD_LIBRARY_PATH="$LIBDIR" "$OUT/header_check_c99"
LD_LIBRARY_PATH="$LIBDIR" "$OUT/header_check_cxx"

step "ABI: struct sizes and offsets (C compiler vs tests/c/abi_layout.txt)"
$CC -std=c99 $STRICT -Iinclude tests/c/abi_layout.c -o "$OUT/abi_layout"
"$OUT/abi_layout" > "$OUT/abi_layout.txt"
diff -u tests/c/abi_layout.txt "$OUT/abi_layout.txt"
echo "ok: layouts match"

step "exports and prototypes: dalle.h vs nm -D vs Swift's emitted header"
swiftc -frontend -typecheck -parse-as-library -module-name DalleCAPI -I "$LIBDIR/Modules" \
    -Xcc -fmodule-map-file=Sources/CDalle/module.modulemap Sources/DalleCAPI/*.swift \
    -emit-clang-header-path "$OUT/DalleCAPI-Swift.h"
python3 tests/c/compare_prototypes.py include/dalle.h "$LIBDIR/libdalle.so" "$OUT/DalleCAPI-Swift.h"

step "ldd: only the C/C++ runtime"
ldd "$LIBDIR/libdalle.so"
if ldd "$LIBDIR/libdalle.so" | grep -i swift; then echo "FAIL: libdalle.so needs a Swift runtime library"; exit 1; fi

step "examples/c/roundtrip.c"
$CC -std=c99 $STRICT examples/c/roundtrip.c -Iinclude -L"$LIBDIR" -ldalle -o "$OUT/roundtrip"
LD_LIBRARY_PATH="$LIBDIR" "$OUT/roundtrip" "$MODEL"

step "examples/c/generate.c"
$CC -std=c99 $STRICT examples/c/generate.c -Iinclude -L"$LIBDIR" -ldalle -o "$OUT/generate"
LD_LIBRARY_PATH="$LIBDIR" "$OUT/generate" "$GEN_MODEL" "a red ball on green grass"

step "examples/python/generate.py"
PYTHONPATH="$REPO/bindings/python" python3 examples/python/generate.py "$GEN_MODEL" "a red ball on green grass"

step "examples/c/rerank.c (CLIP)"
CLIP_MODEL="$REPO/Tests/DalleCoreTests/Golden/clip/clip_tiny.safetensors"
$CC -std=c99 $STRICT examples/c/rerank.c -Iinclude -L"$LIBDIR" -ldalle -o "$OUT/rerank"
LD_LIBRARY_PATH="$LIBDIR" "$OUT/rerank" "$CLIP_MODEL" "red and blue stripes"

step "examples/python/rerank.py (CLIP)"
PYTHONPATH="$REPO/bindings/python" python3 examples/python/rerank.py "$CLIP_MODEL" "red and blue stripes"

step "Python binding (pytest tests/python)"
python3 -m pytest -q tests/python

printf '\nall C and Python checks passed\n'
