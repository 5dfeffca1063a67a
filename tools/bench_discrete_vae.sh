#!/usr/bin/env bash
# Encode and decode time of a DALLE-pytorch DiscreteVAE at 256x256 (3 layers, hidden 64, 1 res-block,
# 1024 codes of 512; random weights): `dalle decode` of a 32x32 token grid and `dalle encode` of the
# decoded image, whole processes, paired by farm-bench against a baseline build.
# Usage: tools/bench_discrete_vae.sh BASELINE_DALLE [DALLE] [THREADS]   (DALLE: this checkout's release build)
set -euo pipefail
cd "$(dirname "$0")/.."
base=$1
dalle=${2:-"$(swift build -c release --show-bin-path)/dalle-cli"}
threads=${3:-2}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 - "$dir" <<'PY'
import json, struct, sys
import numpy as np
out = sys.argv[1]
rng = np.random.default_rng(0)
S, L, T, D, H, R, C = 256, 3, 1024, 512, 64, 1, 3
tensors = {}
def conv(name, o, i, k, transposed=False):
    tensors[name + ".weight"] = rng.standard_normal((i, o, k, k) if transposed else (o, i, k, k)) / np.sqrt(i * k * k)
    tensors[name + ".bias"] = rng.standard_normal(o) * 0.1
tensors["dvae.codebook.weight"] = rng.standard_normal((T, D))
for i in range(L): conv(f"dvae.encoder.{i}.0", H, C if i == 0 else H, 4)
def res(p): conv(p + ".net.0", H, H, 3); conv(p + ".net.2", H, H, 3); conv(p + ".net.4", H, H, 1)
for r in range(R): res(f"dvae.encoder.{L + r}")
conv(f"dvae.encoder.{L + R}", T, H, 1)
conv("dvae.decoder.0", H, D, 1)
for r in range(R): res(f"dvae.decoder.{1 + r}")
for i in range(L): conv(f"dvae.decoder.{1 + R + i}.0", H, H, 4, transposed=True)
conv(f"dvae.decoder.{1 + R + L}", C, H, 1)
meta = {"format": "libdalle", "format_version": "1", "components": "dvae", "dvae.kind": "dalle-pytorch",
        "dvae.image_size": str(S), "dvae.num_layers": str(L), "dvae.num_tokens": str(T), "dvae.codebook_dim": str(D),
        "dvae.hidden_dim": str(H), "dvae.num_resnet_blocks": str(R), "dvae.channels": str(C),
        "dvae.normalization_mean": "0.5,0.5,0.5", "dvae.normalization_std": "0.5,0.5,0.5"}
header, blobs, offset = {"__metadata__": meta}, [], 0
for name, t in tensors.items():
    data = t.astype("<f4").tobytes()
    header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
    blobs.append(data)
    offset += len(data)
text = json.dumps(header).encode()
with open(f"{out}/vae.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
with open(f"{out}/tokens.txt", "w") as f:
    f.write("\n".join(" ".join(str(v) for v in rng.integers(0, T, S >> L)) for _ in range(S >> L)) + "\n")
PY
"$dalle" decode --model "$dir/vae.safetensors" --tokens "$dir/tokens.txt" --out "$dir/image.png" --threads "$threads"
for command in "decode --tokens $dir/tokens.txt --out $dir/out.png" "encode --image $dir/image.png --out $dir/out.txt"; do
    echo "== dalle ${command%% *} (A: $dalle, B: $base)"
    farm-bench -n 7 --vs "$base $command --model $dir/vae.safetensors --threads $threads" \
        -- "$dalle" $command --model "$dir/vae.safetensors" --threads "$threads" | grep -E '^(A|B) (wall|peak)|^A/B wall'
done
