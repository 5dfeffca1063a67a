#!/usr/bin/env bash
# Trains the default Shapes World model from scratch with the dalle CLI (Swift, CPU only) and
# bundles it as models/shapes-world.safetensors: the exact recipe of the shipped model (about
# 20 hours on 2 cores). Every stage writes a checkpoint to RUN/ and resumes from it when re-run,
# so an interrupted run (Ctrl-C, a lost session) loses nothing.
#   bash tools/train_shapes_world.sh [RUN_DIR]        (default: run/)
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-run}
DALLE=${DALLE:-build/bin/dalle}
[ -x "$DALLE" ] || make build
mkdir -p "$RUN" models

# 1. A BPE vocabulary learned from Shapes World captions (589 ids: every word one token).
[ -f "$RUN/tokenizer.safetensors" ] || "$DALLE" train --stage tokenizer --data shapes --vocab 600 --out "$RUN/tokenizer.safetensors"
# 2. The dVAE: 64x64 images to a 16x16 grid of 512 codes (~1 h on 2 threads at 45 examples/s). The codebook starts
#    from k-means over the cells of 256 training images; the usage term keeps >= 256 codes' worth in use;
#    tau anneals from 1 to 1/16 over the whole run; no KL term (models/shapes-world.md has what each part measured).
#    train_dvae STEPS OUT [BLOCKS WARMUP]: that recipe over STEPS steps of 8, with BLOCKS res-blocks per group (default 1)
#    and WARMUP warmup steps (default 20).
train_dvae() {
    "$DALLE" train --stage dvae --data shapes --config "group_count=3,n_blk_per_group=${3:-1}" --steps "$1" --batch 8 --lr 3e-3 \
        --warmup "${4:-20}" --kl-weight 0 \
        --dvae-schedule kmeans=256,usage=1,usage-floor=256,anneal=1,noise-warmup=0,fixed-scale=1,hard=1 --every 400 --out "$2"
}
train_dvae 19200 "$RUN/dvae.safetensors"
#    Its 16-bit copy, which the model ships: CLIP and the transformer learn on its tokens and pictures.
"$DALLE" bundle --dtype f16 --out "$RUN/dvae-f16.safetensors" "$RUN/dvae.safetensors"
# 3. CLIP for reranking: on clean renders (~15 min), then fine-tuned on the dVAE's reconstructions (--dvae:
#    each image encoded and decoded first), the kind of picture it reranks (500 steps at lr 5e-4, then 800
#    at 3e-4; ~31 min on 2 threads). (A fine-tune on --data shapes-near-misses ranks real renders' counts
#    better but picked worse among generated candidates: see models/shapes-world.md.)
"$DALLE" train --stage clip --data shapes --tokenizer "$RUN/tokenizer.safetensors" --steps 1500 --batch 64 \
    --lr 1e-3 --warmup 100 --every 250 --validation 256 --out "$RUN/clip.safetensors"
"$DALLE" train --stage clip --data shapes --tokenizer "$RUN/tokenizer.safetensors" --dvae "$RUN/dvae-f16.safetensors" \
    --init "$RUN/clip.safetensors" --steps 500 --batch 64 --lr 5e-4 --warmup 50 --every 250 --validation 256 --seed 13 \
    --out "$RUN/clip-reconstructions-first.safetensors"
"$DALLE" train --stage clip --data shapes --tokenizer "$RUN/tokenizer.safetensors" --dvae "$RUN/dvae-f16.safetensors" \
    --init "$RUN/clip-reconstructions-first.safetensors" --steps 800 --batch 64 --lr 3e-4 --warmup 50 --every 400 \
    --validation 256 --seed 14 --out "$RUN/clip-reconstructions.safetensors"
# 4. A first transformer (dim 256, 8 heads of 32, 4 layers, token shift; 4.8 M parameters), whose
#    candidates teach CLIP the model's mistakes in step 5, on the tokens of the dVAE as shipped (its 16-bit
#    copy; text loss 1/8, image loss 7/8): 3,500 steps of 16 (~80 min on 2 threads at 11-12 examples/s),
#    then two further schedules of 1,400 steps, each from the last one's weights on fresh examples (stream
#    seeds 11-12; lr 5e-4, then 3e-4; ~25-30 min each on 2 threads). Every schedule has its own file, so a
#    run directory of an older recipe is never taken for a finished later schedule.
#    further_schedules DVAE PREFIX "NAME LR SEED"...: 1,400-step schedules on DVAE's tokens, each from
#    $transformer's weights, written to RUN/PREFIX-NAME; sets $transformer to the last.
further_schedules() {
    local dvae=$1 prefix=$2 name lr seed schedule; shift 2
    for schedule in "$@"; do
        read -r name lr seed <<< "$schedule"
        "$DALLE" train --stage transformer --data shapes --tokenizer "$RUN/tokenizer.safetensors" --dvae "$dvae" \
            --init "$transformer" --steps 1400 --batch 16 --lr "$lr" --warmup 50 --every 100 --seed "$seed" \
            --out "$RUN/$prefix-$name.safetensors"
        transformer="$RUN/$prefix-$name.safetensors"
    done
}
#    train_transformer DEPTH PREFIX "NAME LR SEED"...: the first schedule, then each further one; sets $transformer.
train_transformer() {
    local depth=$1 prefix=$2; shift 2
    transformer="$RUN/$prefix-first.safetensors"
    "$DALLE" train --stage transformer --data shapes --tokenizer "$RUN/tokenizer.safetensors" --dvae "$RUN/dvae-f16.safetensors" \
        --config dim=256,depth=$depth,heads=8,dim_head=32,text_seq_len=16,shift_tokens=true \
        --steps 3500 --batch 16 --lr 1e-3 --warmup 50 --every 100 --out "$transformer"
    further_schedules "$RUN/dvae-f16.safetensors" "$prefix" "$@"
}
train_transformer 4 transformer "second 5e-4 11" "third 3e-4 12"
# 5. A first bundle of the four parts, whose candidates teach CLIP the model's own mistakes: 8 candidates
#    for each of 24,000 training captions in eight resumable shards (seeds 41-48; ~20 min each on 2
#    threads), judged; then CLIP fine-tuned from the bundle's on them, each caption's passing candidates
#    in turn against up to two failing ones as hard negatives (2,500 steps of 32 at lr 3e-4; ~17 min on
#    2 threads at 85 examples/s).
#    clip_on_candidates MODEL OUT LR SEED STREAM_SEED...: that fine-tune of MODEL's CLIP on its own candidates for
#    3,000 captions of each training stream given.
clip_on_candidates() {
    local model=$1 out=$2 lr=$3 seed=$4 shard shards=()
    shift 4
    for stream in "$@"; do
        shard="${model%.safetensors}-candidates-$stream.safetensors"
        [ -f "$shard" ] || "$DALLE" candidates --model "$model" --captions 3000 --seed "$stream" --out "$shard"
        shards+=("$shard")
    done
    "$DALLE" train --stage clip --data "$(IFS=,; echo "${shards[*]}")" --tokenizer "$model" --init "$model" \
        --steps 2500 --batch 32 --lr "$lr" --warmup 50 --every 250 --validation 256 --seed "$seed" --out "$out"
}
"$DALLE" bundle --dtype f16 --out "$RUN/model-first.safetensors" "$RUN/tokenizer.safetensors" \
    "$RUN/dvae-f16.safetensors" "$transformer" "$RUN/clip-reconstructions.safetensors"
clip_on_candidates "$RUN/model-first.safetensors" "$RUN/clip-hard-negatives.safetensors" 3e-4 51 41 42 43 44 45 46 47 48
# 6. The shipped transformer: the same with 6 layers (6.9 M parameters) through the same schedules
#    (~95 min, then 35-40 min a schedule on 2 threads at 8-11 examples/s).
train_transformer 6 transformer-6-layers "second 5e-4 11" "third 3e-4 12"
# 7. A bundle of the four parts, CLIP's pick ranking by CLIP score + 5 x the transformer's log-likelihood
#    (chosen on tools/experiments/clip_pick.py's set 6: models/shapes-world.md): the previous default model.
"$DALLE" bundle --dtype f16 --likelihood-weight 5 --out "$RUN/model-6-layers.safetensors" "$RUN/clip-hard-negatives.safetensors" \
    "$transformer" "$RUN/model-first.safetensors"
# 8. The shipped dVAE: the recipe of step 2 over 38,400 steps (~2 h on 2 threads), then 4,800 steps at tau = 1/16
#    on twice the counting pictures (--data shapes:1,2,1; ~30 min), whose failures were merged same-coloured squares.
train_dvae 38400 "$RUN/dvae-38400.safetensors"
"$DALLE" train --stage dvae --data shapes:1,2,1 --init "$RUN/dvae-38400.safetensors" --steps 4800 --batch 8 --lr 1e-3 \
    --warmup 50 --kl-weight 0 --dvae-schedule anneal=0,usage=1,usage-floor=256,noise-warmup=0,fixed-scale=1,hard=1 \
    --every 400 --out "$RUN/dvae-counting.safetensors"
"$DALLE" bundle --dtype f16 --out "$RUN/dvae-counting-f16.safetensors" "$RUN/dvae-counting.safetensors"
#    The 6-layer transformer carried over to its codes (each new code's rows from the old codes it co-occurs with
#    on 2,000 training images) and fine-tuned on its tokens: two schedules of 1,400 steps (~50 min each on one
#    thread); CLIP and the tokenizer stay.
[ -f "$RUN/transformer-carried.safetensors" ] || PYTHONPATH=bindings/python python3 tools/carry_transformer.py \
    "$RUN/model-6-layers.safetensors" "$RUN/dvae-counting-f16.safetensors" --out "$RUN/transformer-carried.safetensors"
transformer="$RUN/transformer-carried.safetensors"
further_schedules "$RUN/dvae-counting-f16.safetensors" transformer-carried "second 5e-4 11" "third 5e-4 12"
# 9. Their bundle (CLIP and the tokenizer from step 7's), whose own candidates then fine-tune its CLIP as in step 5:
#    3,000 captions of each of streams 41-44 (~35 min a shard, two at a time on one thread each), 2,500 steps of 32
#    at lr 1e-4 (~8 min on 2 threads at 170-190 examples/s).
"$DALLE" bundle --dtype f16 --likelihood-weight 5 --out "$RUN/model-carried.safetensors" "$transformer" \
    "$RUN/dvae-counting-f16.safetensors" "$RUN/model-6-layers.safetensors"
clip_on_candidates "$RUN/model-carried.safetensors" "$RUN/clip-carried-candidates.safetensors" 1e-4 52 41 42 43 44
# 10. The bundle with that CLIP: the previous default model.
"$DALLE" bundle --dtype f16 --likelihood-weight 5 --out "$RUN/model-carried-clip.safetensors" \
    "$RUN/clip-carried-candidates.safetensors" "$RUN/model-carried.safetensors"
# 11. A third schedule of the carried transformer (lr 5e-4, stream seed 13; ~30 min on 2 threads), and the mean of its
#     weights and those it started from, transformer-carried-third (a model soup: cleaner candidates than either);
#     its CLIP fine-tuned again on its own candidates for 6,000 captions (streams 61-62, ~43 min a shard two at a
#     time on one thread each; the fine-tune ~7 min).
further_schedules "$RUN/dvae-counting-f16.safetensors" transformer-carried "fourth 5e-4 13"
[ -f "$RUN/transformer-averaged.safetensors" ] || python3 tools/average_weights.py \
    "$RUN/transformer-carried-third.safetensors" "$transformer" --out "$RUN/transformer-averaged.safetensors"
"$DALLE" bundle --dtype f16 --likelihood-weight 5 --out "$RUN/model-averaged.safetensors" \
    "$RUN/transformer-averaged.safetensors" "$RUN/model-carried-clip.safetensors"
clip_on_candidates "$RUN/model-averaged.safetensors" "$RUN/clip-averaged-candidates.safetensors" 1e-4 53 61 62
# 12. The bundle with that CLIP: the previous default model.
"$DALLE" bundle --dtype f16 --likelihood-weight 5 --out "$RUN/model-averaged-clip.safetensors" \
    "$RUN/clip-averaged-candidates.safetensors" "$RUN/model-averaged.safetensors"
# 13. The shipped dVAE: step 2's recipe with two res-blocks per group (the paper's depth; 422,470 parameters) over
#     38,400 steps, warmed up over 400 (20 collapsed its codebook; ~2 h 30 min on 2 threads at 32-36 examples/s), and
#     its 16-bit copy; step 12's transformer carried over to its codes and fine-tuned on its tokens for two schedules
#     (~30 min each on 2 threads at 10-13 examples/s); CLIP and the tokenizer stay.
train_dvae 38400 "$RUN/dvae-deep.safetensors" 2 400
"$DALLE" bundle --dtype f16 --out "$RUN/dvae-deep-f16.safetensors" "$RUN/dvae-deep.safetensors"
"$DALLE" eval --model "$RUN/dvae-deep-f16.safetensors" --candidates 0  # its reconstructions alone (99.5 % at seed 0)
[ -f "$RUN/transformer-deep-carried.safetensors" ] || PYTHONPATH=bindings/python python3 tools/carry_transformer.py \
    "$RUN/model-averaged-clip.safetensors" "$RUN/dvae-deep-f16.safetensors" --out "$RUN/transformer-deep-carried.safetensors"
transformer="$RUN/transformer-deep-carried.safetensors"
further_schedules "$RUN/dvae-deep-f16.safetensors" transformer-deep-carried "second 5e-4 11" "third 5e-4 12"
# 14. The CLI's default model, and its table.
"$DALLE" bundle --dtype f16 --likelihood-weight 5 --vocabulary shapes-world --out models/shapes-world.safetensors \
    "$transformer" "$RUN/dvae-deep-f16.safetensors" "$RUN/model-averaged-clip.safetensors"
"$DALLE" eval --model models/shapes-world.safetensors
