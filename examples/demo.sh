#!/usr/bin/env bash
# The main job of this milestone: an image goes to dVAE tokens and back, through the CLI.
# Usage: examples/demo.sh [MODEL.safetensors IMAGE.png]
# Without arguments it uses the small random-weight test model and a 32x32 picture, so the
# reconstruction is noise; convert OpenAI's released weights (tools/convert_openai_dvae.py)
# and pass a 256x256 image for a real one.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-Tests/DalleCoreTests/Golden/dvae/model.safetensors}
image=${2:-examples/images/shapes32.png}
out=${OUT_DIR:-build/demo}
mkdir -p "$out"
build/bin/dalle info "$model"
build/bin/dalle encode --model "$model" --image "$image" --out "$out/tokens.txt"
echo "tokens ($out/tokens.txt):"
cat "$out/tokens.txt"
build/bin/dalle decode --model "$model" --tokens "$out/tokens.txt" --out "$out/decoded.png"
echo "decoded image: $out/decoded.png"
