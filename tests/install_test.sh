#!/usr/bin/env bash
# `make install` and `make uninstall` into a temporary prefix, used from outside the source
# tree as a user would: the SONAME, a C program built with pkg-config (run through an rpath
# and through LD_LIBRARY_PATH), examples/cpp/generate.cpp built with CMake's
# find_package(dalle), the installed CLI with its default model, a DESTDIR staging, uninstall.
# Needs cc, c++, pkg-config and cmake.
#   bash tests/install_test.sh
set -u
cd "$(dirname "$0")/.."
REPO=$(pwd)
source tests/checks.sh
PREFIX="$T/prefix"

for tool in cc c++ pkg-config cmake; do
    command -v "$tool" >/dev/null || { echo "install_test: $tool is missing (.ci/run installs it)"; exit 1; }
done

make_build
check "make install PREFIX=$PREFIX" make install PREFIX="$PREFIX"
(cd "$PREFIX" && find . \( -type f -o -type l \) | sort) >"$T/tree.txt"
cat >"$T/expected-tree.txt" <<'EOF'
./bin/dalle
./include/dalle.h
./include/dalle.hpp
./lib/cmake/dalle/dalleConfig.cmake
./lib/cmake/dalle/dalleConfigVersion.cmake
./lib/libdalle.so
./lib/libdalle.so.0
./lib/libdalle.so.0.2.0
./lib/pkgconfig/dalle.pc
./share/dalle/models/shapes-world.safetensors
EOF
check "the installed files" diff -u "$T/expected-tree.txt" "$T/tree.txt"
check "lib/libdalle.so -> libdalle.so.0 -> libdalle.so.0.2.0" \
    test "$(readlink "$PREFIX/lib/libdalle.so")" = libdalle.so.0 -a "$(readlink "$PREFIX/lib/libdalle.so.0")" = libdalle.so.0.2.0
check "SONAME libdalle.so.0" grep -q "Library soname: \[libdalle.so.0\]" <(readelf -d "$PREFIX/lib/libdalle.so.0.2.0")
check "the CLI needs no Swift runtime" bash -c "! ldd '$PREFIX/bin/dalle' | grep -i swift"

# A C program outside the source tree, with pkg-config alone.
mkdir -p "$T/app"
cat >"$T/app/app.c" <<'EOF'
#include <stdio.h>
#include <string.h>
#include <dalle.h>

int main(void) {
    dalle_model *model = NULL;
    dalle_status status = dalle_model_load_file("/nonexistent.safetensors", NULL, &model);
    printf("libdalle %s; loading a missing file: %s (%s)\n", dalle_version(), dalle_status_string(status),
           dalle_last_error());
    return strcmp(dalle_version(), DALLE_VERSION_STRING) != 0 || status == DALLE_OK || model != NULL;
}
EOF
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig"
check "pkg-config --modversion dalle is 0.2.0" test "$(pkg-config --modversion dalle)" = 0.2.0
cd "$T/app"
check "cc app.c \$(pkg-config --cflags --libs dalle) -Wl,-rpath" \
    bash -c 'cc -std=c99 -Wall -Wextra -Werror app.c $(pkg-config --cflags --libs dalle) -Wl,-rpath,"$(pkg-config --variable=libdir dalle)" -o app-rpath'
check "the program needs libdalle.so.0" grep -q "Shared library: \[libdalle.so.0\]" <(readelf -d app-rpath)
check "run through its rpath" env -u LD_LIBRARY_PATH ./app-rpath
check "cc app.c \$(pkg-config --cflags --libs dalle)" bash -c 'cc -std=c99 app.c $(pkg-config --cflags --libs dalle) -o app'
check "without LD_LIBRARY_PATH the loader does not find it" bash -c '! env -u LD_LIBRARY_PATH ./app'
check "run with LD_LIBRARY_PATH" env LD_LIBRARY_PATH="$PREFIX/lib" ./app

# dalle_model_load_default: the installed library finds the installed model; a copy of the
# library alone finds none and says where it looked.
GEN_MODEL="$REPO/Tests/DalleCoreTests/Golden/generate/model.safetensors"
check "cc tests/c/files_check.c with pkg-config" bash -c "cc -std=c99 '$REPO/tests/c/files_check.c' \$(pkg-config --cflags --libs dalle) -o files_check"
check "dalle_model_load_default finds PREFIX/share/dalle/models" \
    env -u DALLE_MODEL LD_LIBRARY_PATH="$PREFIX/lib" ./files_check "$GEN_MODEL" found "$T/app"
mkdir -p "$T/lone/lib" && cp "$PREFIX/lib/libdalle.so.0.2.0" "$T/lone/lib/libdalle.so.0"
check "a lone library finds no default model, and names where it looked" \
    env -u DALLE_MODEL LD_LIBRARY_PATH="$T/lone/lib" ./files_check "$GEN_MODEL" missing "$T/app"
grep -q "looked at \$DALLE_MODEL (unset), $T/lone/share/dalle/models/shapes-world.safetensors, $T/lone/lib/shapes-world.safetensors" "$T/out" \
    || fail "the places dalle_model_load_default looked at: $(cat "$T/out")"

# examples/cpp/generate.cpp (dalle.hpp) with CMake: find_package(dalle) + dalle::dalle.
mkdir -p "$T/cmake-app"
cp "$REPO/examples/cpp/generate.cpp" "$T/cmake-app/"
cat >"$T/cmake-app/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.16)
project(dalle_cpp_example CXX)
set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
find_package(dalle 0.2 REQUIRED)
add_executable(generate generate.cpp)
target_link_libraries(generate PRIVATE dalle::dalle)
EOF
check "cmake configure with CMAKE_PREFIX_PATH" cmake -S "$T/cmake-app" -B "$T/cmake-build" -DCMAKE_PREFIX_PATH="$PREFIX"
check "cmake --build" cmake --build "$T/cmake-build"
check "the C++ example on the installed default model (Model::load_default)" \
    env -u LD_LIBRARY_PATH -u DALLE_MODEL "$T/cmake-build/generate" "a red circle"
grep -q "^ok$" "$T/out" || fail "generate.cpp did not finish: $(cat "$T/out")"
sed -i 's/find_package(dalle 0.2 REQUIRED)/find_package(dalle 1.0 REQUIRED)/' "$T/cmake-app/CMakeLists.txt"
check "find_package(dalle 1.0) is refused" bash -c "! cmake -S '$T/cmake-app' -B '$T/cmake-build1' -DCMAKE_PREFIX_PATH='$PREFIX'"

# The installed CLI, run from elsewhere: its version, and generate with the installed default model.
check "bin/dalle --version" test "$("$PREFIX/bin/dalle" --version)" = "dalle 0.2.0"
check "bin/dalle generate without --model" \
    env -u DALLE_MODEL "$PREFIX/bin/dalle" generate --prompt "a red circle" --seed 1 --out-dir "$T/images"
check "generate wrote an image" test -s "$T/images/000.png"
check "eval without --model names the installed model" bash -c \
    "env -u DALLE_MODEL '$PREFIX/bin/dalle' eval --candidates 0 --per-template 1 --per-held-out 0 --reconstruction 1 2>&1 | grep -q 'evaluating $PREFIX/share/dalle/models/shapes-world.safetensors'"
cd "$REPO"

# DESTDIR: the same tree under DESTDIR/PREFIX, its files naming PREFIX alone.
STAGE="$T/stage"
check "make install DESTDIR=$STAGE PREFIX=/opt/dalle" make install DESTDIR="$STAGE" PREFIX=/opt/dalle
(cd "$STAGE/opt/dalle" && find . \( -type f -o -type l \) | sort) >"$T/staged.txt"
check "the staged files" diff -u "$T/expected-tree.txt" "$T/staged.txt"
check "dalle.pc names the prefix, not DESTDIR" grep -qx "prefix=/opt/dalle" "$STAGE/opt/dalle/lib/pkgconfig/dalle.pc"
check "pkg-config through PKG_CONFIG_SYSROOT_DIR" test "$(PKG_CONFIG_SYSROOT_DIR="$STAGE" \
    PKG_CONFIG_PATH="$STAGE/opt/dalle/lib/pkgconfig" pkg-config --cflags dalle | xargs)" = "-I$STAGE/opt/dalle/include"
check "make uninstall DESTDIR=$STAGE PREFIX=/opt/dalle" make uninstall DESTDIR="$STAGE" PREFIX=/opt/dalle
check "nothing of ours is left under DESTDIR" test -z "$(find "$STAGE" \( -type f -o -type l \))"

# uninstall: every installed file goes, a file of someone else's stays.
touch "$PREFIX/lib/other.so"
check "make uninstall PREFIX=$PREFIX" make uninstall PREFIX="$PREFIX"
check "only the other file is left" test "$(cd "$PREFIX" && find . \( -type f -o -type l \))" = ./lib/other.so
check "the dalle directories are gone" test ! -e "$PREFIX/share/dalle" -a ! -e "$PREFIX/lib/cmake/dalle"
check "uninstall again is harmless" make uninstall PREFIX="$PREFIX"

finish install_test
