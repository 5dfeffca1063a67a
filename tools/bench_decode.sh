#!/usr/bin/env bash
# Per-step decoding time of a 320 M-parameter DALLE-pytorch-shaped transformer (dim 1024, depth 12,
# 16 heads of 64, 32 text + 16x16 image tokens, 8192 codes; random weights) stored as f32, f16,
# bf16, q8_0 and q4_0, at batch 1 and 8, beside the read-bandwidth bound measured in the same process, with the
# resident memory after loading. Usage: tools/bench_decode.sh [THREADS] [CONFIG: 320m|small]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
config=${2:-320m}
bench="$(swift build -c release --show-bin-path)/dalle-bench"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
first=1
for dtype in F32 F16 BF16 Q8_0 Q4_0; do
    "$bench" decode-model "$config" "$dtype" "$dir/model.safetensors" >/dev/null
    for batch in 1 8; do
        # Each run in its own process, so its resident memory is its own.
        "$bench" decode "$config" "$dir/model.safetensors" --batch "$batch" --threads "$threads" \
            | grep -v '^#' | if [ $first = 1 ]; then cat; else tail -n 1; fi
        first=0
    done
done
