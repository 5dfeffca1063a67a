# libdalle — build, test and benchmark entry points.
#   make          build libdalle.so, the dalle CLI and the header into build/
#   make test     every test: Swift (XCTest), C header/ABI/example, Python ctypes, CLI, install
#   make bench    benchmarks printed beside the reference (numpy / PyTorch)
#   make demo     the main job: text to images with the shipped default model (examples/demo.sh)
#   make install [PREFIX=/usr/local] [DESTDIR=]   the library, headers, pkg-config and CMake files,
#                 the CLI and the default model; make uninstall removes them
#   make wheel    the Python package, libdalle.so inside, as a wheel in build/wheel
#   make examples the C and C++ examples into build/examples, and examples/sdl when SDL2 is installed
#   make check-hostile   the hostile-input suite (tests/hostile/README.md) against the release build
#   make check-asan      the same against libdalle built with AddressSanitizer (.build-asan)
#   make check-valgrind  load/generate/encode/decode/rerank/free and the error paths under valgrind
#   make check-memory    every call under a ladder of address-space limits (ulimit -v) ends with a status

SWIFT_BUILD := swift build -c release
BIN := $(shell swift build -c release --show-bin-path 2>/dev/null)

VERSION := 0.2.0
# The SONAME's number (Package.swift links libdalle.so with -soname libdalle.so.$(SOVERSION)).
SOVERSION := 0
LIBFILE := libdalle.so.$(VERSION)
PREFIX ?= /usr/local
DEST = $(DESTDIR)$(PREFIX)

.PHONY: all build test test-swift test-native bench demo clean install uninstall wheel examples \
	check-hostile check-asan check-valgrind check-memory

all: build

build:
	$(SWIFT_BUILD)
	mkdir -p build/lib build/bin build/include
	# Replaced, not overwritten, so that a build works while the old binary runs (a training run).
	cp "$(BIN)/libdalle.so" build/lib/$(LIBFILE).new && mv -f build/lib/$(LIBFILE).new build/lib/$(LIBFILE)
	ln -sfn $(LIBFILE) build/lib/libdalle.so.$(SOVERSION)
	ln -sfn libdalle.so.$(SOVERSION) build/lib/libdalle.so
	cp "$(BIN)/dalle-cli" build/bin/dalle.new && mv -f build/bin/dalle.new build/bin/dalle
	cp include/dalle.h include/dalle.hpp build/include/

test: build test-swift test-native

test-swift:
	swift test -c release -Xswiftc -enable-testing --disable-swift-testing

# C header and ABI checks, the C, C++ and Python examples, the ctypes binding, the CLI,
# make install used from outside the tree (pkg-config, CMake), the Python package in a venv.
test-native: build
	bash tests/run_c_and_python.sh
	bash tests/cli_test.sh
	bash tests/install_test.sh
	bash tests/python_package_test.sh
	bash tests/sdl_test.sh

# Mutated model files run (0 = every one, about 80,000), drawn with HOSTILE_SEED.
HOSTILE_SAMPLE ?= 2000
HOSTILE_SEED ?= 42

check-hostile: build
	bash tests/hostile/run.sh release $(HOSTILE_SAMPLE) $(HOSTILE_SEED)

check-asan: build
	bash tests/hostile/run.sh asan $(HOSTILE_SAMPLE) $(HOSTILE_SEED)

check-valgrind: build
	bash tests/hostile/valgrind.sh

check-memory: build
	mkdir -p tests-out/hostile/memory
	$(CC) -std=c99 -O1 -Wall -Wextra -pedantic -Werror -Iinclude tests/hostile/driver.c -Lbuild/lib -ldalle \
		-o tests-out/hostile/memory/driver
	python3 tests/hostile/memory_limits.py --driver tests-out/hostile/memory/driver --lib-dir build/lib

bench: build
	python3 tools/bench.py gemm --threads 2 --bench "$(BIN)/dalle-bench"
	python3 tools/bench.py dvae --threads 2 --bench "$(BIN)/dalle-bench" --fresh-pages
	python3 tools/bench_generate.py --threads 2
	python3 tools/bench_clip.py --threads 2 --batch 8
	bash tools/bench_decode.sh 2 320m
	python3 tools/bench_unclip.py --threads 2

demo: build
	bash examples/demo.sh

# The examples, linked to build/lib with a relative rpath (they run from build/examples as they are).
CC ?= cc
CXX ?= c++
EXAMPLE_FLAGS := -Iinclude -Lbuild/lib -ldalle -Wl,-rpath,'$$ORIGIN/../lib'
SDL_FLAGS := $(shell pkg-config --cflags --libs sdl2 2>/dev/null)
examples: build
	mkdir -p build/examples
	for f in examples/c/*.c; do $(CC) -std=c99 -O2 -Wall -Wextra $$f $(EXAMPLE_FLAGS) -o build/examples/$$(basename $$f .c) || exit 1; done
	$(CXX) -std=c++17 -O2 -Wall -Wextra examples/cpp/generate.cpp $(EXAMPLE_FLAGS) -o build/examples/generate_cpp
ifneq ($(SDL_FLAGS),)
	$(CC) -std=c99 -O2 -Wall -Wextra examples/sdl/dalle_sdl.c $(EXAMPLE_FLAGS) $(SDL_FLAGS) -o build/examples/dalle-sdl
else
	@echo "examples/sdl skipped: SDL2 not found by pkg-config (Debian: apt-get install libsdl2-dev)"
endif

# What install puts under $(DEST), relative to it (uninstall removes exactly these).
INSTALLED := lib/$(LIBFILE) lib/libdalle.so.$(SOVERSION) lib/libdalle.so include/dalle.h include/dalle.hpp \
	lib/pkgconfig/dalle.pc lib/cmake/dalle/dalleConfig.cmake lib/cmake/dalle/dalleConfigVersion.cmake \
	bin/dalle share/dalle/models/shapes-world.safetensors

install: build
	install -d "$(DEST)/lib/pkgconfig" "$(DEST)/lib/cmake/dalle" "$(DEST)/include" "$(DEST)/bin" "$(DEST)/share/dalle/models"
	install -m 755 build/lib/$(LIBFILE) "$(DEST)/lib/$(LIBFILE)"
	ln -sfn $(LIBFILE) "$(DEST)/lib/libdalle.so.$(SOVERSION)"
	ln -sfn libdalle.so.$(SOVERSION) "$(DEST)/lib/libdalle.so"
	install -m 644 include/dalle.h include/dalle.hpp "$(DEST)/include/"
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' packaging/dalle.pc.in > "$(DEST)/lib/pkgconfig/dalle.pc"
	install -m 644 packaging/dalleConfig.cmake "$(DEST)/lib/cmake/dalle/dalleConfig.cmake"
	sed -e 's|@VERSION@|$(VERSION)|g' packaging/dalleConfigVersion.cmake.in > "$(DEST)/lib/cmake/dalle/dalleConfigVersion.cmake"
	install -m 755 build/bin/dalle "$(DEST)/bin/dalle"
	install -m 644 models/shapes-world.safetensors "$(DEST)/share/dalle/models/shapes-world.safetensors"

# --no-build-isolation: setuptools and wheel from this Python (tests/requirements.txt), no download.
wheel: build
	rm -rf build/wheel bindings/python/build
	python3 -m pip wheel --no-deps --no-build-isolation --wheel-dir build/wheel ./bindings/python
	rm -rf bindings/python/build bindings/python/dalle.egg-info

uninstall:
	for f in $(INSTALLED); do rm -f "$(DEST)/$$f"; done
	for d in share/dalle/models share/dalle lib/cmake/dalle; do \
		[ ! -d "$(DEST)/$$d" ] || rmdir --ignore-fail-on-non-empty "$(DEST)/$$d"; done

clean:
	rm -rf .build .build-asan build
