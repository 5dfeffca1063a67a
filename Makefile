# libdalle — build, test and benchmark entry points.
#   make          build libdalle.so, the dalle CLI and the header into build/
#   make test     every test: Swift (XCTest), C header/ABI/example, Python ctypes, CLI
#   make bench    benchmarks printed beside the reference (numpy / PyTorch)
#   make demo     the main job: text to images with the shipped default model (examples/demo.sh)

SWIFT_BUILD := swift build -c release
BIN := $(shell swift build -c release --show-bin-path 2>/dev/null)

.PHONY: all build test test-swift test-native bench demo clean

all: build

build:
	$(SWIFT_BUILD)
	mkdir -p build/lib build/bin build/include
	# Replaced, not overwritten, so that a build works while the old binary runs (a training run).
	cp "$(BIN)/libdalle.so" build/lib/libdalle.so.new && mv -f build/lib/libdalle.so.new build/lib/libdalle.so
	cp "$(BIN)/dalle-cli" build/bin/dalle.new && mv -f build/bin/dalle.new build/bin/dalle
	cp include/dalle.h build/include/

test: build test-swift test-native

test-swift:
	swift test -c release -Xswiftc -enable-testing --disable-swift-testing

# C header and ABI checks, the C and Python examples, the ctypes binding, the CLI.
test-native: build
	bash tests/run_c_and_python.sh
	bash tests/cli_test.sh

bench: build
	python3 tools/bench.py gemm --threads 2 --bench "$(BIN)/dalle-bench"
	python3 tools/bench.py dvae --threads 2 --bench "$(BIN)/dalle-bench" --fresh-pages
	python3 tools/bench_generate.py --threads 2
	python3 tools/bench_clip.py --threads 2 --batch 8

demo: build
	bash examples/demo.sh

clean:
	rm -rf .build build
