#!/usr/bin/env bash
# The main job: text to images with the shipped default model, reranked by CLIP and judged by the
# Shapes World rules, then the best image through the dVAE and back — all through the CLI.
# Usage: examples/demo.sh [PROMPT [MODEL.safetensors]]
set -euo pipefail
cd "$(dirname "$0")/.."
prompt=${1:-"a red circle to the left of a blue square"}
model=${2:-models/shapes-world.safetensors}
out=${OUT_DIR:-build/demo}
mkdir -p "$out"
build/bin/dalle info "$model"
build/bin/dalle generate --model "$model" --prompt "$prompt" --count 8 --rerank 2 --seed 1 --out-dir "$out"
echo "judge of the best image: $(build/bin/dalle judge --caption "$prompt" "$out/000.png" || true)"
build/bin/dalle encode --model "$model" --image "$out/000.png" --out "$out/tokens.txt"
build/bin/dalle decode --model "$model" --tokens "$out/tokens.txt" --out "$out/roundtrip.png"
echo "images: $out/000.png $out/001.png; dVAE round trip of the best: $out/roundtrip.png"
