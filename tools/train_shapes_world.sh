#!/usr/bin/env bash
# Trains the default Shapes World model from scratch with the dalle CLI (Swift, CPU only) and
# bundles it as models/shapes-world.safetensors. Every stage writes a checkpoint to RUN/ and
# resumes from it when re-run, so an interrupted run (Ctrl-C, a lost session) loses nothing.
#   bash tools/train_shapes_world.sh [RUN_DIR]        (default: run/; about an hour on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-run}
DALLE=${DALLE:-build/bin/dalle}
[ -x "$DALLE" ] || make build
mkdir -p "$RUN" models

# 1. A BPE vocabulary learned from Shapes World captions.
[ -f "$RUN/tokenizer.safetensors" ] || "$DALLE" train --stage tokenizer --data shapes --vocab 600 --out "$RUN/tokenizer.safetensors"
# 2. The dVAE: 64x64 images to an 8x8 grid of 512 codes (Gumbel-softmax, logit-Laplace, KL to uniform).
"$DALLE" train --stage dvae --data shapes --steps 1500 --batch 16 --lr 1e-3 --warmup 20 --kl-weight 1 \
    --every 100 --out "$RUN/dvae.safetensors"
# 3. CLIP for reranking (independent of the dVAE).
"$DALLE" train --stage clip --data shapes --tokenizer "$RUN/tokenizer.safetensors" --steps 1500 --batch 64 \
    --lr 1e-3 --warmup 100 --every 250 --validation 256 --out "$RUN/clip.safetensors"
# 4. The transformer on the dVAE's tokens (text loss 1/8, image loss 7/8).
"$DALLE" train --stage transformer --data shapes --tokenizer "$RUN/tokenizer.safetensors" \
    --dvae "$RUN/dvae.safetensors" --steps 2200 --batch 32 --lr 1e-3 --warmup 100 --every 200 \
    --validation 256 --out "$RUN/transformer.safetensors"
# 5. One 16-bit bundle, the CLI's default model.
"$DALLE" bundle --dtype f16 --out models/shapes-world.safetensors "$RUN/tokenizer.safetensors" \
    "$RUN/dvae.safetensors" "$RUN/transformer.safetensors" "$RUN/clip.safetensors"
"$DALLE" eval --model models/shapes-world.safetensors
