#!/usr/bin/env bash
# C header/ABI checks, the C and C++ examples and the Python binding, against a release libdalle.so.
#   bash tests/run_c_and_python.sh        (builds with `make build` first)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
# build/lib: libdalle.so.0.2.0 with the links libdalle.so.0 (its SONAME, which programs load)
# and libdalle.so (what -ldalle finds).
LIBDIR="$REPO/build/lib"
MODEL="$REPO/Tests/DalleCoreTests/Golden/dvae/model.safetensors"
GEN_MODEL="$REPO/Tests/DalleCoreTests/Golden/generate/model.safetensors"
OUT="$REPO/tests-out/c"
CC=${CC:-cc}
CXX=${CXX:-c++}
STRICT="-Wall -Wextra -pedantic -Werror"
mkdir -p "$OUT"

step() { printf '\n== %s\n' "$*"; }

step "make build"
make build
test -f "$LIBDIR/libdalle.so" && test -f "$LIBDIR/libdalle.so.0"

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
swiftc -frontend -typecheck -parse-as-library -module-name DalleCAPI -I "$REPO/.build/release/Modules" \
    -Xcc -fmodule-map-file=Sources/CDalle/module.modulemap -Xcc -fmodule-map-file=Sources/CDlfcn/module.modulemap \
    -Xcc -fmodule-map-file="$REPO/.build/release/CDalleCPU.build/module.modulemap" \
    -Xcc -fmodule-map-file="$REPO/.build/release/CDalleKernels.build/module.modulemap" \
    Sources/DalleCAPI/*.swift \
    -emit-clang-header-path "$OUT/DalleCAPI-Swift.h"
python3 tests/c/compare_prototypes.py include/dalle.h "$LIBDIR/libdalle.so" "$OUT/DalleCAPI-Swift.h"

step "ldd: only the C/C++ runtime"
ldd "$LIBDIR/libdalle.so"
if ldd "$LIBDIR/libdalle.so" | grep -i swift; then echo "FAIL: libdalle.so needs a Swift runtime library"; exit 1; fi

step "tests/c/files_check.c: the default model (found in the checkout), PNG files"
$CC -std=c99 $STRICT -Wstrict-prototypes tests/c/files_check.c -Iinclude -L"$LIBDIR" -ldalle -o "$OUT/files_check"
LD_LIBRARY_PATH="$LIBDIR" "$OUT/files_check" "$GEN_MODEL" found "$OUT"

step "tests/c/generate_check.c: the model's tuned likelihood weight by default, words outside its vocabulary"
$CC -std=c99 $STRICT -Wstrict-prototypes tests/c/generate_check.c -Iinclude -L"$LIBDIR" -ldalle -o "$OUT/generate_check"
LD_LIBRARY_PATH="$LIBDIR" "$OUT/generate_check" "$REPO/models/shapes-world.safetensors"

step "examples/c/roundtrip.c"
$CC -std=c99 $STRICT examples/c/roundtrip.c -Iinclude -L"$LIBDIR" -ldalle -o "$OUT/roundtrip"
LD_LIBRARY_PATH="$LIBDIR" "$OUT/roundtrip" "$MODEL"

step "examples/c/generate.c"
$CC -std=c99 $STRICT examples/c/generate.c -Iinclude -L"$LIBDIR" -ldalle -o "$OUT/generate"
LD_LIBRARY_PATH="$LIBDIR" "$OUT/generate" "$GEN_MODEL" "a red ball on green grass"

step "include/dalle.hpp and examples/cpp/generate.cpp (C++17, the default model)"
$CXX -std=c++17 $STRICT examples/cpp/generate.cpp -Iinclude -L"$LIBDIR" -ldalle -o "$OUT/generate_cpp"
(cd "$OUT" && LD_LIBRARY_PATH="$LIBDIR" ./generate_cpp "a red circle" "$REPO/models/shapes-world.safetensors")
if $CXX -std=c++14 -fsyntax-only -Iinclude -x c++ include/dalle.hpp 2>/dev/null; then
    echo "FAIL: dalle.hpp compiled as C++14"; exit 1
fi

step "examples/python/generate.py"
PYTHONPATH="$REPO/bindings/python" python3 examples/python/generate.py "$GEN_MODEL" "a red ball on green grass"

step "examples/c/rerank.c (CLIP)"
CLIP_MODEL="$REPO/Tests/DalleCoreTests/Golden/clip/clip_tiny.safetensors"
$CC -std=c99 $STRICT examples/c/rerank.c -Iinclude -L"$LIBDIR" -ldalle -o "$OUT/rerank"
LD_LIBRARY_PATH="$LIBDIR" "$OUT/rerank" "$CLIP_MODEL" "red and blue stripes"

step "examples/python/rerank.py (CLIP)"
PYTHONPATH="$REPO/bindings/python" python3 examples/python/rerank.py "$CLIP_MODEL" "red and blue stripes"

step "examples/c/unclip.c and examples/python/unclip.py (DALL-E 2, the tiny unCLIP bundle)"
UNCLIP="$REPO/Tests/DalleCoreTests/Golden/unclip"
$CC -std=c99 $STRICT examples/c/unclip.c -Iinclude -L"$LIBDIR" -ldalle -o "$OUT/unclip"
LD_LIBRARY_PATH="$LIBDIR" "$OUT/unclip" "$UNCLIP/tiny_unclip_f16.safetensors" "a red cat" "$UNCLIP/variation_input.png" \
    "$UNCLIP/variation_noise.safetensors"
PYTHONPATH="$REPO/bindings/python" python3 examples/python/unclip.py "$UNCLIP/tiny_unclip_f16.safetensors" "a red cat" \
    "$UNCLIP/variation_input.png"

step "Python binding (pytest tests/python)"
python3 -m pytest -q tests/python

printf '\nall C and Python checks passed\n'
