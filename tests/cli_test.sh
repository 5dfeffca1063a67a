#!/usr/bin/env bash
# End-to-end tests of the dalle CLI against the dVAE golden model and vectors
# (Tests/DalleCoreTests/Golden/dvae, made by tools/make_golden_dvae.py). Needs python3 + numpy.
#   bash tests/cli_test.sh            uses build/bin/dalle (make build), else the SwiftPM build
set -u
cd "$(dirname "$0")/.."
DALLE=${DALLE:-build/bin/dalle}
[ -x "$DALLE" ] || DALLE="$(swift build -c release --show-bin-path)/dalle-cli"
[ -x "$DALLE" ] || { echo "cli_test: no dalle binary (run make build)"; exit 1; }
MODEL=Tests/DalleCoreTests/Golden/dvae/model.safetensors
source tests/checks.sh

# expect STATUS PATTERN -- COMMAND...: runs COMMAND, checks its exit status and that its
# stderr matches PATTERN (grep -E), and that it never crashed (no trap, no backtrace).
expect() {
    local status=$1 pattern=$2; shift 3
    checks=$((checks + 1))
    "$@" >"$T/stdout" 2>"$T/stderr"
    local got=$?
    [ "$got" = "$status" ] || fail "'$*' exited $got, expected $status: $(head -c 300 "$T/stderr")"
    grep -Eq -- "$pattern" "$T/stderr" "$T/stdout" || fail "'$*' output does not match '$pattern': $(head -c 300 "$T/stderr")"
    if grep -Eqi "fatal error|backtrace|crash|unexpectedly found nil" "$T/stderr"; then fail "'$*' crashed"; fi
}

python3 tests/cli_golden.py inputs "$T" || { echo "cli_test: cannot make the golden inputs"; exit 1; }

# Help and usage errors.
expect 0 "usage: dalle" -- "$DALLE" --help
expect 0 "usage: dalle" -- "$DALLE" encode -h
version=$(sed -n 's/^#define DALLE_VERSION_STRING "\(.*\)"$/\1/p' include/dalle.h)
expect 0 "^dalle $version$" -- "$DALLE" --version
[ "$(cat "$T/stdout")" = "dalle $version" ] || fail "--version printed '$(cat "$T/stdout")'"
# --help lists the commands, one line each; each command's help has its own options only.
expect 0 "^commands:" -- "$DALLE" --help
[ "$(wc -l <"$T/stdout")" -lt 30 ] || fail "dalle --help is $(wc -l <"$T/stdout") lines"
commands=$(awk '/^commands:/ { on = 1; next } on && NF == 0 { exit } on { print $1 }' "$T/stdout")
[ "$(echo $commands)" = "info encode decode tokenize generate vary interpolate rerank shapes judge eval candidates train bundle" ] \
    || fail "dalle --help lists: $(echo $commands)"
for c in $commands; do
    expect 0 "^usage: dalle $c" -- "$DALLE" help "$c"
    cp "$T/stdout" "$T/help-$c.txt"
    expect 0 "^usage: dalle $c" -- "$DALLE" "$c" --help
    cmp -s "$T/stdout" "$T/help-$c.txt" || fail "'dalle $c --help' differs from 'dalle help $c'"
done
grep -q -- "--prompt" "$T/help-generate.txt" && grep -q -- "--threads" "$T/help-generate.txt" \
    && ! grep -q -- "--dvae-schedule\|--caption TEXT\|--per-template" "$T/help-generate.txt" \
    || fail "generate's help: $(cat "$T/help-generate.txt")"
[ "$(wc -l <"$T/help-generate.txt")" -lt 30 ] || fail "generate's help is $(wc -l <"$T/help-generate.txt") lines"
grep -q -- "--dvae-schedule" "$T/help-train.txt" && ! grep -q -- "--prompt" "$T/help-train.txt" || fail "train's help"
grep -q "DALLE_MODEL" "$T/help-eval.txt" && ! grep -q "DALLE_MODEL" "$T/help-judge.txt" \
    || fail "the default-model note belongs to the commands that take --model"
expect 1 "unknown command 'frobnicate'" -- "$DALLE" help frobnicate
expect 1 "no command given" -- "$DALLE"
expect 1 "unknown command 'frobnicate'" -- "$DALLE" frobnicate
expect 1 "unknown option --colour" -- "$DALLE" encode --model "$MODEL" --image x.png --out y --colour red

# tokenize: CLIP's ids (golden: clip.tokenize), modes, truncation note, bad inputs.
TOK=Tests/DalleCoreTests/Golden/tokenizer/clip_bpe.safetensors
expect 0 "^49406 320 2442 736 7117 267 531 518 1823 256 49407 0" -- "$DALLE" tokenize --model "$TOK" "A small red circle, to the left!"
expect 0 "^585 568 261 15304$" -- "$DALLE" tokenize --model "$TOK" --mode raw "It's &amp; café"
[ "$(wc -w <"$T/stdout")" = 4 ] || fail "tokenize --mode raw printed padding"
expect 0 "truncated to 77 tokens" -- "$DALLE" tokenize --model "$TOK" --mode clip "$(printf 'word %.0s' $(seq 100))"
expect 1 "unknown --mode 'bpe'" -- "$DALLE" tokenize --model "$TOK" --mode bpe "a"
expect 1 "tokenize needs the TEXT" -- "$DALLE" tokenize --model "$TOK"
expect 1 "no tokenizer component" -- "$DALLE" tokenize --model "$MODEL" "a"

expect 1 "option --out needs a value" -- "$DALLE" encode --model "$MODEL" --image x.png --out
expect 1 "missing --image" -- "$DALLE" encode --model "$MODEL" --out "$T/t.txt"
expect 1 "--threads must be an integer" -- "$DALLE" decode --model "$MODEL" --tokens "$T/decode0.txt" --out "$T/o.png" --threads -2
expect 1 "info needs a MODEL" -- "$DALLE" info

# info
expect 0 "components: dvae" -- "$DALLE" info "$MODEL"
# DALL-E 2: the tiny unCLIP bundle (tools/make_golden_unclip.py) draws through generate, the same at 1 and 2 threads.
UNCLIP=Tests/DalleCoreTests/Golden/unclip/tiny_unclip_f16.safetensors
expect 0 "unclip \\(UnCLIPPipeline\\): [0-9]+ parameters; can generate" -- "$DALLE" info "$UNCLIP"
expect 0 "generated 2 image" -- "$DALLE" generate --model "$UNCLIP" --prompt "a red cat" --count 2 --seed 3 --threads 1 --out-dir "$T/unclip1"
expect 0 "generated 2 image" -- "$DALLE" generate --model "$UNCLIP" --prompt "a red cat" --count 2 --seed 3 --threads 2 --out-dir "$T/unclip2"
checks=$((checks + 1)); cmp -s "$T/unclip1/001.png" "$T/unclip2/001.png" || fail "unCLIP images differ between 1 and 2 threads"
expect 0 "generated 1 image" -- "$DALLE" generate --model "$UNCLIP" --prompt "a red cat" --prior-steps 3 --decoder-steps 2 --super-res-steps 2 --decoder-guidance 2 --out-dir "$T/unclip4"
# Caller-given noise (the chain's recorded noise for its first image): every draw given, so the seed does not matter.
NOISE=Tests/DalleCoreTests/Golden/unclip/noise_one_image.safetensors
expect 0 "generated 1 image" -- "$DALLE" generate --model "$UNCLIP" --prompt "a red cat on the mat" --noise "$NOISE" --seed 1 --out-dir "$T/unclip6"
expect 0 "generated 1 image" -- "$DALLE" generate --model "$UNCLIP" --prompt "a red cat on the mat" --noise "$NOISE" --seed 2 --out-dir "$T/unclip7"
checks=$((checks + 1)); cmp -s "$T/unclip6/000.png" "$T/unclip7/000.png" || fail "unCLIP images with all noise given depend on the seed"
expect 1 "'decoder_latents' has shape \[1, 3, 8, 8\], expected \[2, 3, 8, 8\]" -- "$DALLE" generate --model "$UNCLIP" --prompt "a red cat" --count 2 --noise "$NOISE" --out-dir "$T/unclip8"
expect 1 "unexpected noise tensor 'attention_mask'" -- "$DALLE" generate --model "$UNCLIP" --prompt "a red cat" --noise Tests/DalleCoreTests/Golden/unclip/chain.safetensors --out-dir "$T/unclip8"
expect 1 "unCLIP: 0 steps" -- "$DALLE" generate --model "$UNCLIP" --prompt "a red cat" --decoder-steps 0 --out-dir "$T/unclip5"
expect 0 "generated 2 image\\(s\\), kept the best 1" -- "$DALLE" generate --model "$UNCLIP" --prompt "a red cat" --count 2 --rerank 1 --prior-steps 2 --decoder-steps 2 --super-res-steps 2 --out-dir "$T/unclip3"
# Variations and interpolations (the bundle holds the image-variations pipeline's image encoder).
VARY_IN=Tests/DalleCoreTests/Golden/unclip/variation_input.png
expect 0 "generated 1 image" -- "$DALLE" vary --model "$UNCLIP" --image "$VARY_IN" --decoder-steps 5 --super-res-steps 3 --noise Tests/DalleCoreTests/Golden/unclip/variation_noise.safetensors --out-dir "$T/vary1"
expect 0 "generated 1 image" -- "$DALLE" vary --model "$UNCLIP" --image "$VARY_IN" --decoder-steps 5 --super-res-steps 3 --noise Tests/DalleCoreTests/Golden/unclip/variation_noise.safetensors --threads 2 --out-dir "$T/vary2"
checks=$((checks + 1)); cmp -s "$T/vary1/000.png" "$T/vary2/000.png" || fail "unCLIP variations differ between 1 and 2 threads"
expect 0 "generated 3 image" -- "$DALLE" interpolate --model "$UNCLIP" --from "a red cat" --to "two blue squares" --frames 3 --prior-steps 2 --decoder-steps 2 --super-res-steps 2 --out-dir "$T/interp1"
expect 0 "generated 2 image" -- "$DALLE" interpolate --model "$UNCLIP" --from-image "$VARY_IN" --to-image "$VARY_IN" --frames 2 --decoder-steps 2 --super-res-steps 2 --out-dir "$T/interp2"
expect 1 "give --from and --to" -- "$DALLE" interpolate --model "$UNCLIP" --from "a red cat" --to-image "$VARY_IN" --out-dir "$T/interp3"
expect 1 "cannot read the image" -- "$DALLE" vary --model "$UNCLIP" --image Tests/DalleCoreTests/Golden/unclip/chain.safetensors --out-dir "$T/vary3"
expect 0 "  dvae \\(openai\\): [0-9]+ parameters; can encode,decode,train" -- "$DALLE" info "$MODEL"
grep -q "32x32 RGB images <-> 4x4 token grids, vocabulary 128" "$T/stdout" || fail "info does not describe the dVAE: $(cat "$T/stdout")"
expect 1 "cannot open" -- "$DALLE" info "$T/missing.safetensors"
expect 1 "." -- "$DALLE" info "$T/image0.png"

# encode: every golden image gives the reference tokens, with any thread count.
for n in 0 1 2; do
    for threads in 1 2; do
        expect 0 "encoded" -- "$DALLE" encode --model "$MODEL" --image "$T/image$n.png" --out "$T/tokens$n.txt" --threads $threads
        cmp -s "$T/tokens$n.txt" "$T/expected$n.txt" || fail "image$n (threads $threads): tokens $(tr '\n' ' ' <"$T/tokens$n.txt") != reference $(tr '\n' ' ' <"$T/expected$n.txt")"
    done
done
expect 0 "encoded" -- "$DALLE" encode --model="$MODEL" --image="$T/image0.png" --out=-
cmp -s "$T/stdout" "$T/expected0.txt" || fail "encode --out - did not print the tokens"

# decode: the golden token grids give the reference images (within one level), same bytes for any thread count.
for n in 0 1; do
    expect 0 "decoded" -- "$DALLE" decode --model "$MODEL" --tokens "$T/decode$n.txt" --out "$T/decoded$n.png" --threads 1
    python3 tests/cli_golden.py check-decoded "$T/decoded$n.png" $n || fail "decode$n differs from the reference"
    expect 0 "decoded" -- "$DALLE" decode --model "$MODEL" --tokens "$T/decode$n.txt" --out "$T/decoded${n}b.png" --threads 2
    cmp -s "$T/decoded$n.png" "$T/decoded${n}b.png" || fail "decode$n depends on the thread count"
done
# Round trip through stdin: decode tokens read from standard input.
expect 0 "decoded" -- sh -c "cat '$T/decode0.txt' | '$DALLE' decode --model '$MODEL' --tokens - --out '$T/stdin.png'"
cmp -s "$T/stdin.png" "$T/decoded0.png" || fail "decode --tokens - differs"
# --scale N: nearest neighbour (every pixel an NxN block) or bicubic; the output format follows the
# file name (.ppm: PPM), and a name promising JPEG is refused before any work.
expect 0 "to a 96x96 image" -- "$DALLE" decode --model "$MODEL" --tokens "$T/decode0.txt" --out "$T/scaled3.png" --scale 3
checks=$((checks + 1)); python3 tests/cli_golden.py check-scaled "$T/decoded0.png" "$T/scaled3.png" 3 nearest || fail "decode --scale 3"
expect 0 "to a 64x64 image" -- "$DALLE" decode --model "$MODEL" --tokens "$T/decode0.txt" --out "$T/bicubic2.png" --scale 2 --scale-filter bicubic
checks=$((checks + 1)); python3 tests/cli_golden.py check-scaled "$T/decoded0.png" "$T/bicubic2.png" 2 bicubic || fail "decode --scale 2 bicubic"
expect 0 "decoded" -- "$DALLE" decode --model "$MODEL" --tokens "$T/decode0.txt" --out "$T/decoded0.ppm"
checks=$((checks + 1)); python3 tests/cli_golden.py check-ppm "$T/decoded0.ppm" "$T/decoded0.png" || fail "decode --out .ppm"
expect 1 "o.jpg: dalle writes PNG and PPM images, not JPG; name the file .png" -- "$DALLE" decode --model "$MODEL" --tokens "$T/decode0.txt" --out "$T/o.jpg"
expect 1 "not JPEG; name the file .png" -- "$DALLE" decode --model "$MODEL" --tokens "$T/none.txt" --out "$T/o.JPEG"
checks=$((checks + 1)); [ ! -e "$T/o.jpg" ] && [ ! -e "$T/o.JPEG" ] || fail "decode wrote a .jpg file"
expect 1 "--scale must be an integer from 1 to 16, got 17" -- "$DALLE" decode --model "$MODEL" --tokens "$T/decode0.txt" --out "$T/o.png" --scale 17
expect 1 "--scale must be a number, got 'x2'" -- "$DALLE" decode --model "$MODEL" --tokens "$T/decode0.txt" --out "$T/o.png" --scale x2
expect 1 "--scale-filter must be nearest or bicubic, got 'lanczos'" -- "$DALLE" decode --model "$MODEL" --tokens "$T/decode0.txt" --out "$T/o.png" --scale-filter lanczos
expect 1 "option --grid takes no value" -- "$DALLE" decode --model "$MODEL" --tokens "$T/decode0.txt" --out "$T/o.png" --grid=yes

# Bad inputs: clear errors, exit status 1, no crash.
printf '1 2 3 4\n5 6 7\n' >"$T/ragged.txt"
expect 1 "line 2 has 3 ids" -- "$DALLE" decode --model "$MODEL" --tokens "$T/ragged.txt" --out "$T/o.png"
printf '1 2\n3 4\n' >"$T/small.txt"
expect 1 "2x2 token grid; this model decodes 4x4" -- "$DALLE" decode --model "$MODEL" --tokens "$T/small.txt" --out "$T/o.png"
printf '0 0 0 0\n0 0 0 0\n0 0 128 0\n0 0 0 0\n' >"$T/range.txt"
expect 1 "128" -- "$DALLE" decode --model "$MODEL" --tokens "$T/range.txt" --out "$T/o.png"
expect 1 "cannot open" -- "$DALLE" decode --model "$MODEL" --tokens "$T/none.txt" --out "$T/o.png"
expect 1 "cannot create" -- "$DALLE" decode --model "$MODEL" --tokens "$T/decode0.txt" --out "$T/no/such/dir/o.png"
head -c 100 "$T/image0.png" >"$T/truncated.png"
expect 1 "cannot read the image .*truncated.png: PNG" -- "$DALLE" encode --model "$MODEL" --image "$T/truncated.png" --out "$T/t.txt"
expect 1 "not a PNG" -- "$DALLE" encode --model "$MODEL" --image "$T/decode0.txt" --out "$T/t.txt"
expect 1 "is 130x96; this model encodes 32x32" -- "$DALLE" encode --model "$MODEL" --image Tests/DalleCoreTests/Golden/png/big_rgb.png --out "$T/t.txt"

# Shapes World: render a few samples, each passes the judge against its own caption, fails a wrong one.
expect 0 "wrote 12 Shapes World images" -- "$DALLE" shapes --count 12 --seed 7 --out-dir "$T/shapes"
for i in 000 005 011; do
    expect 0 "^pass$" -- "$DALLE" judge --caption "$(cat "$T/shapes/$i.txt")" "$T/shapes/$i.png"
done
cmp -s <("$DALLE" shapes --count 12 --seed 7 --out-dir "$T/shapes2" 2>&1; cat "$T/shapes2"/*.txt) \
    <(echo "dalle: wrote 12 Shapes World images (seed 7) with captions to $T/shapes2"; cat "$T/shapes"/*.txt) \
    || fail "dalle shapes is not deterministic"
expect 1 "^fail: expected 2 objects, found 3" -- "$DALLE" judge --caption "two large purple triangles" "$T/shapes/000.png"
expect 1 "word 3 'circel': expected a shape" -- "$DALLE" judge --caption "a red circel" "$T/shapes/000.png"
expect 1 "judges 64x64 images; this one is 130x96" -- "$DALLE" judge --caption "a red circle" Tests/DalleCoreTests/Golden/png/big_rgb.png
expect 1 "--count must be an integer" -- "$DALLE" shapes --count -1 --out-dir "$T/shapes3"
expect 1 "cannot create the directory" -- "$DALLE" shapes --count 1 --out-dir "$T/no/such/dir"

# generate: the golden generate bundle (tools/make_golden_generate.py), same seed -> same tokens
# whatever the thread count; bad sampling options and --rerank without CLIP are errors.
GEN=Tests/DalleCoreTests/Golden/generate/model.safetensors
expect 0 "generated 2 image\(s\) with seed 3" -- "$DALLE" generate --model "$GEN" --prompt "a red apple" --count 2 \
    --seed 3 --out-dir "$T/gen1" --tokens-out "$T/gen1.txt" --threads 2
expect 0 "generated 2 image" -- "$DALLE" generate --model "$GEN" --prompt "a red apple" --count 2 \
    --seed 3 --out-dir "$T/gen2" --tokens-out "$T/gen2.txt" --threads 1
checks=$((checks + 1))
[ -s "$T/gen1/000.png" ] && [ -s "$T/gen1/001.png" ] && [ "$(wc -l < "$T/gen1.txt")" = 2 ] || fail "generate did not write 2 images and 2 token lines"
cmp -s "$T/gen1.txt" "$T/gen2.txt" || fail "generate depends on the thread count"
cmp -s "$T/gen1/001.png" "$T/gen2/001.png" || fail "generated images depend on the thread count"
# --grid: one contact sheet of the images (2x2 cells for 3, the last black), at --scale; decode --grid draws
# the same sheet from generate's --tokens-out (one grid per line); several grids without --grid are refused.
expect 0 "generated 3 image" -- "$DALLE" generate --model "$GEN" --prompt "a red apple" --count 3 --seed 3 --out-dir "$T/sheet" \
    --tokens-out "$T/sheet.txt" --grid --scale 2
checks=$((checks + 1)); python3 tests/cli_golden.py check-sheet "$T/sheet/grid.png" "$T/sheet/000.png" "$T/sheet/001.png" "$T/sheet/002.png" \
    || fail "generate --grid"
python3 tests/cli_golden.py check-scaled "$T/gen1/001.png" "$T/sheet/001.png" 2 nearest || fail "generate --scale 2"
expect 0 "decoded 3 grids of 8x8 tokens to a 128x128 image" -- "$DALLE" decode --model "$GEN" --tokens "$T/sheet.txt" --grid --scale 2 --out "$T/sheet.png"
checks=$((checks + 1)); cmp -s "$T/sheet.png" "$T/sheet/grid.png" || fail "decode --grid of generate's tokens differs from generate --grid"
expect 1 "holds 3 token grids, one per line; pass --grid" -- "$DALLE" decode --model "$GEN" --tokens "$T/sheet.txt" --out "$T/o.png"
expect 1 "--scale must be an integer from 1 to 16, got 0" -- "$DALLE" generate --model "$GEN" --prompt "x" --out-dir "$T/gen3" --scale 0
expect 1 "temperature is 0.0" -- "$DALLE" generate --model "$GEN" --prompt "x" --out-dir "$T/gen3" --temperature 0
expect 1 "top_p is 1.5" -- "$DALLE" generate --model "$GEN" --prompt "x" --out-dir "$T/gen3" --top-p 1.5
expect 1 "no clip component" -- "$DALLE" generate --model "$GEN" --prompt "x" --out-dir "$T/gen3" --rerank 1
expect 1 "no transformer component" -- "$DALLE" generate --model "$MODEL" --prompt "x" --out-dir "$T/gen3"

# rerank: CLIP scores best first against the tiny golden bundle (tools/make_golden_clip.py;
# reference logits for "a photo of a cat": 150x257 -1.886, 48x40 -2.099, 224x224 -2.144, 300x200 -2.286).
CLIP=Tests/DalleCoreTests/Golden/clip
expect 0 "image_" -- "$DALLE" rerank --model "$CLIP/clip_tiny.safetensors" --prompt "a photo of a cat" \
    "$CLIP/image_300x200.png" "$CLIP/image_150x257.png" "$CLIP/image_224x224.png" "$CLIP/image_48x40.png"
checks=$((checks + 1))
order=$(awk '{ sub(".*/", "", $2); printf "%s ", $2 }' "$T/stdout")
[ "$order" = "image_150x257.png image_48x40.png image_224x224.png image_300x200.png " ] || fail "rerank order: $order"
awk 'NR == 1 { d = $1 + 1.8862; if (d < -0.001 || d > 0.001) exit 1 }' "$T/stdout" || fail "rerank best score: $(head -1 "$T/stdout")"
expect 1 "missing --prompt" -- "$DALLE" rerank --model "$CLIP/clip_tiny.safetensors" "$CLIP/image_48x40.png"
expect 1 "missing --prompt" -- "$DALLE" rerank --model "$CLIP/clip_tiny.safetensors" --prompt "" "$CLIP/image_48x40.png"
expect 1 "at least one IMAGE" -- "$DALLE" rerank --model "$CLIP/clip_tiny.safetensors" --prompt "a cat"
expect 1 "no clip component" -- "$DALLE" rerank --model "$MODEL" --prompt "a cat" "$CLIP/image_48x40.png"
expect 1 "cannot read the image" -- "$DALLE" rerank --model "$CLIP/clip_tiny.safetensors" --prompt "a cat" "$T/truncated.png"

# eval: the Shapes World table on a tiny four-component 64x64 bundle (tests/make_eval_bundle.py),
# the same whatever the thread count; the default model ($DALLE_MODEL, models/ beside the binary
# and in the current directory) and the error that says where it looked.
python3 tests/make_eval_bundle.py "$T/eval.safetensors" || fail "cannot make the eval bundle"
EVAL_ARGS=(--per-template 2 --per-held-out 1 --candidates 2 --reconstruction 3)
expect 0 "evaluated 9 captions x 2 candidates and 12 reconstructions" -- "$DALLE" eval --model "$T/eval.safetensors" "${EVAL_ARGS[@]}" --threads 1
checks=$((checks + 1))
cp "$T/stdout" "$T/eval1.txt"
grep -Eq "^\| one object +\| +2 \|" "$T/eval1.txt" && grep -Eq "^\| held-out pairs +\| +3 \|" "$T/eval1.txt" \
    && grep -Eq "^\| all captions +\| +9 \|" "$T/eval1.txt" && grep -Eq "^\| dVAE reconstruction +\| +12 \|" "$T/eval1.txt" \
    || fail "eval table: $(cat "$T/eval1.txt")"
# Not on a terminal, progress is a plain line at each tenth of the way, the last one at the end.
[ "$(grep -c '^dalle: eval [0-9]*/[0-9]*$' "$T/stderr")" -le 10 ] && grep -Eq '^dalle: eval ([0-9]+)/\1$' "$T/stderr" \
    || fail "eval progress lines: $(cat "$T/stderr")"
expect 0 "evaluated 9 captions" -- env DALLE_MODEL="$T/eval.safetensors" "$DALLE" eval "${EVAL_ARGS[@]}" --threads 2
cmp -s "$T/stdout" "$T/eval1.txt" || fail "eval with DALLE_MODEL at 2 threads differs: $(cat "$T/stdout")"
expect 0 "generated 1 image" -- env DALLE_MODEL="$GEN" "$DALLE" generate --prompt "a red apple" --seed 3 --out-dir "$T/gen4"
expect 1 "DALLE_MODEL is $T/none.safetensors, which cannot be read" -- env DALLE_MODEL="$T/none.safetensors" "$DALLE" eval
mkdir -p "$T/install/bin" "$T/elsewhere" && cp "$DALLE" "$T/install/bin/dalle"
expect 1 "no --model given and no default model found; looked at .*$T/models/shapes-world.safetensors, models/shapes-world.safetensors" \
    -- bash -c "cd '$T/elsewhere' && env -u DALLE_MODEL '$T/install/bin/dalle' eval"
mkdir -p "$T/models" && cp "$T/eval.safetensors" "$T/models/shapes-world.safetensors"
expect 0 "evaluating $T/models/shapes-world.safetensors" \
    -- bash -c "cd '$T/elsewhere' && env -u DALLE_MODEL '$T/install/bin/dalle' eval ${EVAL_ARGS[*]}"
cmp -s "$T/stdout" "$T/eval1.txt" || fail "eval with the default model beside the binary differs"
mkdir -p "$T/elsewhere/models" && cp "$T/eval.safetensors" "$T/elsewhere/models/shapes-world.safetensors" && rm "$T/models/shapes-world.safetensors"
expect 0 "evaluating models/shapes-world.safetensors" -- bash -c "cd '$T/elsewhere' && env -u DALLE_MODEL '$T/install/bin/dalle' eval ${EVAL_ARGS[*]}"
# A bundle's guidance scale (bundle --cond-scale) and reranking weight (--likelihood-weight) are what eval
# and generate use unless told otherwise: recorded_setting FLAG VALUE SHOWN NEUTRAL NEUTRAL_SHOWN.
recorded_setting() {
    expect 0 "bundle with" -- "$DALLE" bundle --dtype f32 --$1 $2 --out "$T/eval-$1.st" "$T/eval.safetensors"
    expect 0 "$3" -- "$DALLE" eval --model "$T/eval-$1.st" "${EVAL_ARGS[@]}"
    cp "$T/stdout" "$T/eval-$1.txt"
    expect 0 "$3" -- "$DALLE" eval --model "$T/eval.safetensors" --$1 $2 "${EVAL_ARGS[@]}"
    cmp -s "$T/stdout" "$T/eval-$1.txt" || fail "eval of the bundle with --$1 $2 recorded differs from --$1 $2"
    expect 0 "$5" -- "$DALLE" eval --model "$T/eval-$1.st" --$1 $4 "${EVAL_ARGS[@]}"
    cmp -s "$T/stdout" "$T/eval1.txt" || fail "eval of the bundle with --$1 $2 recorded at --$1 $4 differs from the plain bundle's"
}
recorded_setting cond-scale 2.5 "guidance scale 2.5, " 1 "guidance scale 1.0, "
recorded_setting likelihood-weight 1000 "likelihood weight 1000.0\)" 0 "likelihood weight 0.0\)"
# Quantized bundles (the linear layers as q8_0 / q4_0 blocks) load, and draw the same for any thread count.
for q in q8 q4; do
    expect 0 "bundle with" -- "$DALLE" bundle --dtype $q --out "$T/eval-$q.st" "$T/eval.safetensors"
    expect 0 "all captions" -- "$DALLE" eval --model "$T/eval-$q.st" --threads 1 "${EVAL_ARGS[@]}"
    cp "$T/stdout" "$T/eval-$q.txt"
    expect 0 "all captions" -- "$DALLE" eval --model "$T/eval-$q.st" --threads 2 "${EVAL_ARGS[@]}"
    checks=$((checks + 1)); cmp -s "$T/stdout" "$T/eval-$q.txt" || fail "eval of the $q bundle differs between 1 and 2 threads"
done
expect 1 "--dtype must be f32, f16, bf16, q8 or q4" -- "$DALLE" bundle --dtype q2 --out "$T/x.st" "$T/eval.safetensors"
expect 1 "likelihood_weight is -1.0" -- "$DALLE" eval --model "$T/eval.safetensors" --likelihood-weight -1 "${EVAL_ARGS[@]}"
expect 1 "judges 64x64 images; this model's dvae makes 32x32" -- "$DALLE" eval --model "$GEN" "${EVAL_ARGS[@]}"
expect 1 "no transformer component" -- "$DALLE" eval --model "$MODEL" "${EVAL_ARGS[@]}"
expect 1 "candidates is 300; it must be in 0 ... 256" -- "$DALLE" eval --model "$T/eval.safetensors" --candidates 300
expect 1 "--per-template must be a number" -- "$DALLE" eval --model "$T/eval.safetensors" --per-template many
# candidates: a judged candidate set of the training stream's captions, the same for any thread count.
expect 0 "3 captions x 2 candidates from .* candidates pass the judge" -- "$DALLE" candidates --model "$T/eval.safetensors" --captions 3 --candidates 2 --seed 1 --out "$T/cands.safetensors"
expect 0 "written to $T/cands2.safetensors" -- "$DALLE" candidates --model "$T/eval.safetensors" --captions 3 --candidates 2 --seed 1 --threads 2 --out "$T/cands2.safetensors"
checks=$((checks + 1)); cmp -s "$T/cands.safetensors" "$T/cands2.safetensors" || fail "candidate sets at 1 and 2 threads differ"
expect 1 "missing --captions" -- "$DALLE" candidates --model "$T/eval.safetensors" --out "$T/x.safetensors"
expect 1 "captions is 0; it must be in 1" -- "$DALLE" candidates --model "$T/eval.safetensors" --captions 0 --out "$T/x.safetensors"
expect 1 "--candidates must be a number" -- "$DALLE" candidates --model "$T/eval.safetensors" --captions 1 --candidates some --out "$T/x.safetensors"
expect 1 "judges 64x64 images; this model's dvae makes 32x32" -- "$DALLE" candidates --model "$GEN" --captions 1 --out "$T/x.safetensors"

# train: a tiny model end to end (tokenizer, dVAE, transformer, CLIP, bundle), resume, bad input.
TINY_DVAE="image_size=16,group_count=2,n_hid=8,n_blk_per_group=1,vocab_size=16,n_init=8"
TINY_TR="dim=16,depth=1,heads=2,dim_head=8,text_seq_len=12"
TINY_CLIP="embed_dim=8,image_resolution=16,vision_patch_size=8,vision_width=16,vision_layers=1,vision_heads=2,context_length=16,transformer_width=16,transformer_layers=1,transformer_heads=2"
expect 0 "tokenizer with 540 ids" -- "$DALLE" train --stage tokenizer --data shapes --vocab 540 --out "$T/tok.st"
# An interrupted run (SIGINT) saves a checkpoint and resumes from it.
"$DALLE" train --stage dvae --data shapes --config "$TINY_DVAE" --steps 100000 --batch 4 --every 0 --validation 4 --out "$T/long.st" 2>"$T/long.log" &
sleep 3; kill -INT $! ; wait $!
checks=$((checks + 1)); grep -q "stopped at step" "$T/long.log" || fail "SIGINT did not stop training cleanly: $(tail -c 300 "$T/long.log")"
expect 0 "resuming dvae from step [1-9]" -- timeout --preserve-status -s INT 3 "$DALLE" train --stage dvae --data shapes --steps 100000 --batch 4 --every 0 --validation 4 --out "$T/long.st"
expect 0 "training dvae .* for 6 steps" -- "$DALLE" train --stage dvae --data shapes --config "$TINY_DVAE" --steps 6 --batch 4 --every 2 --validation 4 --out "$T/dvae.st"
# In a log file: one plain line per validation (steps 2, 4, 6), no terminal redraws.
[ "$(grep -c '^step [246]/6 | loss -\?[0-9.]* (.*) | val -\?[0-9.]* |' "$T/stderr")" = 3 ] && [ "$(grep -c '^step' "$T/stderr")" = 3 ] \
    && ! grep -q $'[\r\e]' "$T/stderr" || fail "training log lines: $(cat -A "$T/stderr" | head -c 600)"
expect 0 "resuming dvae from step 6" -- "$DALLE" train --stage dvae --data shapes --steps 6 --batch 4 --every 2 --validation 4 --out "$T/dvae.st"
expect 0 "codebook seeded by k-means over the cells of 3 training images: [0-9]+ codes" -- "$DALLE" train --stage dvae --data shapes --config "$TINY_DVAE" --dvae-schedule kmeans=3 --steps 4 --stop-at 2 --batch 4 --every 0 --validation 4 --out "$T/kmeans.st"
expect 0 "stopped at step 2; checkpoint" -- "$DALLE" train --stage dvae --data shapes --steps 4 --stop-at 2 --batch 4 --every 0 --validation 4 --out "$T/kmeans.st"
expect 0 "resuming dvae from step 2" -- "$DALLE" train --stage dvae --data shapes --dvae-schedule kmeans=3 --steps 4 --batch 4 --every 0 --validation 4 --out "$T/kmeans.st"
expect 0 "dvae written" -- "$DALLE" train --stage dvae --data shapes:0,1,0 --config "$TINY_DVAE" --steps 2 --batch 4 --validation 4 --out "$T/mix.st"
# eval --candidates 0: the reconstructions alone, of a file with only a dVAE (a 64x64 one in training).
expect 0 "dvae written" -- "$DALLE" train --stage dvae --data shapes --config "image_size=64,group_count=3,n_hid=8,n_blk_per_group=1,vocab_size=16,n_init=8" \
    --steps 1 --batch 2 --validation 2 --out "$T/dvae64.st"
expect 0 "evaluated 5 reconstructions in" -- "$DALLE" eval --model "$T/dvae64.st" --candidates 0 --per-template 1 --per-held-out 0 --reconstruction 2
grep -Eq "^\| dVAE reconstruction +\| +5 \|" "$T/stdout" && [ "$(grep -c '^|' "$T/stdout")" = 3 ] || fail "eval --candidates 0 table: $(cat "$T/stdout")"
checks=$((checks + 1))
expect 1 "no transformer component" -- "$DALLE" eval --model "$T/dvae64.st" --per-template 1 --per-held-out 0 --reconstruction 2
expect 1 "shapes takes template weights as ':SINGLE,COUNTING,RELATION'" -- "$DALLE" train --stage dvae --data shapes:1,2 --config "$TINY_DVAE" --steps 1 --out "$T/x.st"
expect 1 "template weights must be 0.* with a positive sum" -- "$DALLE" train --stage dvae --data shapes:0,0,0 --config "$TINY_DVAE" --steps 1 --out "$T/x.st"
expect 1 "whole number of images up to 4096" -- "$DALLE" train --stage dvae --data shapes --config "$TINY_DVAE" --dvae-schedule kmeans=2.5 --steps 1 --batch 4 --out "$T/x.st"
expect 1 "stop-at must be an integer in 1...4" -- "$DALLE" train --stage dvae --data shapes --steps 4 --stop-at 5 --out "$T/x.st"
expect 1 "made with batch_size = 4" -- "$DALLE" train --stage dvae --data shapes --steps 6 --batch 5 --every 2 --validation 4 --out "$T/dvae.st"
expect 0 "transformer written" -- "$DALLE" train --stage transformer --data shapes --tokenizer "$T/tok.st" --dvae "$T/dvae.st" --config "$TINY_TR" --steps 3 --batch 2 --out "$T/tr.st"
# DALLE-pytorch's defaults (rotary positions, token shift) train too, and the result generates.
expect 0 "transformer written" -- "$DALLE" train --stage transformer --data shapes --tokenizer "$T/tok.st" --dvae "$T/dvae.st" \
    --config "$TINY_TR,rotary_emb=true,shift_tokens=true" --steps 2 --batch 2 --out "$T/tr-rotary.st"
expect 0 "bundle with" -- "$DALLE" bundle --out "$T/rotary.st" "$T/tok.st" "$T/dvae.st" "$T/tr-rotary.st"
python3 -c 'import json, struct, sys; f = open(sys.argv[1], "rb"); h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
assert h["transformer.transformer.pos_emb"]["dtype"] == "F32" and h["transformer.to_logits.1.weight"]["dtype"] == "F16"' "$T/rotary.st" \
    || fail "a 16-bit bundle must keep the rotary table (angles) in float32"
expect 0 "generated 1 image" -- "$DALLE" generate --model "$T/rotary.st" --prompt "a red circle" --seed 3 --out-dir "$T/rotary-out"
expect 0 "clip written" -- "$DALLE" train --stage clip --data shapes --tokenizer "$T/tok.st" --config "$TINY_CLIP" --steps 3 --batch 4 --out "$T/clip.st"
expect 0 "clip written" -- "$DALLE" train --stage clip --data shapes --tokenizer "$T/tok.st" --dvae "$T/dvae.st" --init "$T/clip.st" --steps 2 --batch 4 --validation 4 --out "$T/clip-recon.st"
expect 0 "3 captions with 2 judged candidates each from" -- "$DALLE" train --stage clip --data "$T/cands.safetensors" --tokenizer "$T/tok.st" --init "$T/clip.st" --steps 2 --batch 2 --out "$T/clip-cands.st"
grep -q "clip written" "$T/stderr" || fail "CLIP on a candidate set: $(tail -c 300 "$T/stderr")"
expect 0 "6 captions with 2 judged candidates each from" -- "$DALLE" train --stage clip --data "$T/cands.safetensors,$T/cands2.safetensors" --tokenizer "$T/tok.st" --init "$T/clip.st" --steps 2 --batch 2 --out "$T/clip-cands2.st"
expect 0 "clip written" -- "$DALLE" train --stage clip --data "$T/cands.safetensors" --tokenizer "$T/tok.st" --init "$T/clip.st" --caption-negatives 2 --steps 2 --batch 2 --out "$T/clip-cands-captions.st"
expect 1 "--caption-negatives must be an integer in 0...8" -- "$DALLE" train --stage clip --data shapes --tokenizer "$T/tok.st" --init "$T/clip.st" --caption-negatives 9 --steps 2 --out "$T/x.st"
expect 1 "cannot open .*missing.safetensors" -- "$DALLE" train --stage clip --data "$T/cands.safetensors,$T/missing.safetensors" --tokenizer "$T/tok.st" --init "$T/clip.st" --steps 2 --out "$T/x.st"
expect 1 "is not a libdalle candidate set" -- "$DALLE" train --stage clip --data "$T/eval.safetensors" --tokenizer "$T/tok.st" --init "$T/clip.st" --steps 2 --out "$T/x.st"
expect 0 "starting from the weights of .*clip.st" -- "$DALLE" train --stage clip --data shapes-near-misses --tokenizer "$T/tok.st" --init "$T/clip.st" --steps 2 --batch 4 --validation 4 --out "$T/clip-near.st"
expect 0 "clip written" -- "$DALLE" train --stage clip --data shapes-defects --tokenizer "$T/tok.st" --dvae "$T/dvae.st" --init "$T/clip.st" --steps 2 --batch 4 --validation 4 --out "$T/clip-defects.st"
expect 0 "bundle with .*transformer,clip" -- "$DALLE" bundle --out "$T/tiny.st" "$T/tok.st" "$T/dvae.st" "$T/tr.st" "$T/clip.st"
expect 0 "" -- "$DALLE" generate --model "$T/tiny.st" --prompt "a red circle" --count 2 --rerank 1 --out-dir "$T/tiny"
expect 0 "transformer written" -- "$DALLE" train --stage transformer --data shapes --tokenizer "$T/tok.st" --dvae "$T/dvae.st" --init "$T/tr.st" --caption-dropout 0.5 --freeze transformer.image_emb --steps 2 --batch 2 --out "$T/tr-null.st"
expect 1 "caption dropout is for the transformer stage" -- "$DALLE" train --stage clip --data shapes --tokenizer "$T/tok.st" --config "$TINY_CLIP" --steps 1 --caption-dropout 0.2 --out "$T/x.st"
expect 1 "no parameter of the clip starts with 'text.'" -- "$DALLE" train --stage clip --data shapes --tokenizer "$T/tok.st" --config "$TINY_CLIP" --steps 1 --freeze text. --out "$T/x.st"
expect 0 "bundle with" -- "$DALLE" bundle --cond-scale 2.5 --out "$T/guided.st" "$T/tok.st" "$T/dvae.st" "$T/tr-null.st" "$T/clip.st"
expect 0 "guidance scale 2.5, reranking likelihood weight 0.0 \(CLIP alone\)$" -- "$DALLE" info "$T/guided.st"
expect 0 "guidance scale 1.0 \(off\)" -- "$DALLE" info "$T/tiny.st"
expect 0 "bundle with" -- "$DALLE" bundle --likelihood-weight 2 --out "$T/weighted.st" "$T/tiny.st"
expect 0 "reranking likelihood weight 2.0$" -- "$DALLE" info "$T/weighted.st"
expect 0 "" -- "$DALLE" generate --model "$T/weighted.st" --prompt "a red circle" --count 2 --rerank 1 --likelihood-weight 0.5 --out-dir "$T/weighted"
# After --rerank, each line is "SCORE PATH (clip C + W x log-likelihood L)": the score the order used, so scores descend.
expect 0 "generated 5 image" -- "$DALLE" generate --model "$T/weighted.st" --prompt "a red circle" --count 5 --rerank 5 --seed 2 --out-dir "$T/weighted"
checks=$((checks + 1))
[ "$(grep -c "^-\?[0-9.e-]* $T/weighted/00[0-4].png (clip -\?[0-9.e-]* + 2.0 x log-likelihood -\?[0-9.e-]*)$" "$T/stdout")" = 5 ] \
    || fail "reranked score lines: $(cat "$T/stdout")"
awk '{ l = $9; sub(/\)$/, "", l); s = $4 + $6 * l; if (s - $1 > 1e-3 || $1 - s > 1e-3) exit 1; if (NR > 1 && $1 > last) exit 1; last = $1 }' "$T/stdout" \
    || fail "reranked scores are not CLIP + W x log-likelihood in descending order: $(cat "$T/stdout")"
# Words a model was never trained on: the tokenizer stage records its captions' words (and the Shapes World
# grammar), bundle carries them, generate warns; bundle --vocabulary records others.
expect 0 "vocabulary: 26 words, captions of the shapes-world grammar" -- "$DALLE" info "$T/tiny.st"
expect 0 "warning: the prompt has 2 words the model was never trained on \('photo', 'cat'\); its images will not show them" \
    -- "$DALLE" generate --model "$T/tiny.st" --prompt "a photo of a cat" --out-dir "$T/cat"
expect 0 "warning: the prompt is not a caption of the model's grammar \(caption 'red circle', word 1 'red'" \
    -- "$DALLE" generate --model "$T/tiny.st" --prompt "red circle" --out-dir "$T/cat"
expect 0 "generated 1 image" -- "$DALLE" generate --model "$T/tiny.st" --prompt "A small red circle." --out-dir "$T/cat"
checks=$((checks + 1)); ! grep -q "warning" "$T/stderr" || fail "a Shapes World caption was warned about: $(cat "$T/stderr")"
printf 'a cat\nTwo dogs!\n' >"$T/captions.txt"
expect 0 "bundle with" -- "$DALLE" bundle --vocabulary "$T/captions.txt" --out "$T/pets.st" "$T/tiny.st"
expect 0 "vocabulary: 4 words \(generate" -- "$DALLE" info "$T/pets.st"
expect 0 "warning: the prompt has 1 word the model was never trained on \('red'\); its images will not show it$" \
    -- "$DALLE" generate --model "$T/pets.st" --prompt "a red cat" --out-dir "$T/cat"
expect 1 "a vocabulary needs a tokenizer among the parts" -- "$DALLE" bundle --vocabulary shapes-world --out "$T/x.st" "$T/dvae.st"
# The shipped default model records the Shapes World's words.
expect 0 "vocabulary: 26 words, captions of the shapes-world grammar" -- "$DALLE" info models/shapes-world.safetensors
expect 1 "likelihood_weight is -1.0" -- "$DALLE" bundle --likelihood-weight -1 --out "$T/x.st" "$T/tiny.st"
expect 1 "--likelihood-weight must be a finite number" -- "$DALLE" bundle --likelihood-weight nan --out "$T/x.st" "$T/tiny.st"
expect 1 "needs a transformer among the parts" -- "$DALLE" bundle --cond-scale 2 --out "$T/x.st" "$T/tok.st" "$T/dvae.st"
expect 1 "--cond-scale must be a finite number" -- "$DALLE" bundle --cond-scale inf --out "$T/x.st" "$T/tr.st"
expect 1 "needs a tokenizer and a trained dVAE" -- "$DALLE" train --stage transformer --data shapes --out "$T/x.st"
expect 1 "unknown training stage 'vqgan'" -- "$DALLE" train --stage vqgan --data shapes --out "$T/x.st"
expect 1 "is not a training checkpoint" -- "$DALLE" train --stage dvae --data shapes --out "$T/tiny.st"
mkdir -p "$T/empty" "$T/jpgs" && touch "$T/jpgs/a.jpg"
expect 1 "the folder is empty" -- "$DALLE" train --stage dvae --data "$T/empty" --out "$T/x.st"
expect 1 "unsupported format" -- "$DALLE" train --stage dvae --data "$T/jpgs" --out "$T/x.st"
expect 1 "cannot open training folder" -- "$DALLE" train --stage dvae --data "$T/missing" --out "$T/x.st"
"$DALLE" shapes --count 6 --out-dir "$T/folder" 2>/dev/null && touch "$T/folder/extra.jpg" && rm "$T/folder/002.txt"
expect 0 "warning: .*without a caption" -- "$DALLE" train --stage dvae --data "$T/folder" --config "$TINY_DVAE" --steps 1 --batch 2 --validation 1 --out "$T/folder.st"

finish cli_test
