#!/usr/bin/env bash
# Hostile input to the dalle CLI: absurd numbers, files that are not what they claim, text that
# is not UTF-8. Each case must end with exit status 1 and a message on stderr (0 where noted),
# never a signal, a Swift runtime trap ("Fatal error") or a sanitizer report. The ordinary error
# messages are checked by tests/cli_test.sh; this adds the hostile cases.
#   bash tests/hostile/cli_cases.sh DALLE SCRATCH_DIR
set -uo pipefail
cd "$(dirname "$0")/../.."
DALLE=${1:?usage: cli_cases.sh DALLE SCRATCH_DIR}
T=${2:?usage: cli_cases.sh DALLE SCRATCH_DIR}
GOLDEN=Tests/DalleCoreTests/Golden
GEN=$GOLDEN/generate/model.safetensors
DVAE=$GOLDEN/dvae/model.safetensors
CLIP=$GOLDEN/clip/clip_tiny.safetensors
mkdir -p "$T"
failures=0
cases=0

# expect STATUS -- COMMAND...: the exit status, a message when it is 1, no trap or sanitizer report.
expect() {
    local want=$1
    shift 2
    cases=$((cases + 1))
    local output status
    output=$(timeout 120 "$@" 2>&1 </dev/null)
    status=$?
    if [ "$status" -ne "$want" ] || grep -q -E "Fatal error|AddressSanitizer|ASan|runtime error:" <<<"$output" ||
        { [ "$status" -eq 1 ] && [ -z "$output" ]; }; then
        failures=$((failures + 1))
        printf 'FAIL (exit %s, expected %s): %.300s\n%s\n' "$status" "$want" "$*" "$(tail -c 2000 <<<"$output")"
    fi
}

# Files that are not what they claim.
printf '' > "$T/empty"
head -c 4096 /dev/urandom > "$T/random"
head -c 3000 "$GEN" > "$T/truncated.safetensors"
printf '\xff\xfe\xfd' > "$T/binary.txt"
for row in 0 1 2 3 4 5 6 7; do echo "$row 1 2 3 4 5 6 7"; done > "$T/grid8.txt"
printf '99999999999999999999 %s\n' "$(seq -s ' ' 1 63)" > "$T/overflow.txt"
printf -- '-1 %s\n' "$(seq -s ' ' 1 63)" > "$T/negative.txt"
printf '1e3 %s\n' "$(seq -s ' ' 1 63)" > "$T/float.txt"
cp "$GEN" "$T/model.png"
for model in "$T/empty" "$T/random" "$T/truncated.safetensors" "$T" /dev/null "$GOLDEN/png/big_rgb.png"; do
    expect 1 -- "$DALLE" info "$model"
    expect 1 -- "$DALLE" tokenize --model "$model" "a"
done
for image in "$T/empty" "$T/random" "$T/model.png" "$T" /dev/null; do
    expect 1 -- "$DALLE" encode --model "$DVAE" --image "$image" --out "$T/t.txt"
    expect 1 -- "$DALLE" rerank --model "$CLIP" --prompt "a red ball" "$image"
    expect 1 -- "$DALLE" judge --image "$image" --caption "a red circle"
done
for tokens in "$T/empty" "$T/binary.txt" "$T/overflow.txt" "$T/negative.txt" "$T/float.txt" "$T"; do
    expect 1 -- "$DALLE" decode --model "$GEN" --tokens "$tokens" --out "$T/o.png"
done
expect 0 -- "$DALLE" decode --model "$GEN" --tokens "$T/grid8.txt" --out "$T/o.png"

# Numbers out of range or not numbers.
for value in -1 abc "" 1e3 99999999999999999999 4294967296 " 1" 0x10; do
    expect 1 -- "$DALLE" generate --model "$GEN" --prompt "a" --out-dir "$T/g" --count "$value"
    expect 1 -- "$DALLE" generate --model "$GEN" --prompt "a" --out-dir "$T/g" --threads "$value"
    expect 1 -- "$DALLE" shapes --count "$value" --out-dir "$T/s"
    expect 1 -- "$DALLE" eval --model "$GEN" --per-template "$value"
done
for value in -1 abc 18446744073709551616 ""; do
    expect 1 -- "$DALLE" generate --model "$GEN" --prompt "a" --out-dir "$T/g" --seed "$value"
done
for value in nan inf -inf 0 -1 abc 1e39; do
    expect 1 -- "$DALLE" generate --model "$GEN" --prompt "a" --out-dir "$T/g" --temperature "$value"
    expect 1 -- "$DALLE" generate --model "$GEN" --prompt "a" --out-dir "$T/g" --top-p "$value"
done
for value in nan inf; do
    expect 1 -- "$DALLE" generate --model "$GEN" --prompt "a" --out-dir "$T/g" --cond-scale "$value"
done
expect 1 -- "$DALLE" generate --model "$GEN" --prompt "a" --out-dir "$T/g" --top-k -5
expect 1 -- "$DALLE" generate --model "$GEN" --prompt "a" --out-dir "$T/g" --count 2 --rerank 5

# Text that is not UTF-8 (refused, as the C API refuses it), and long text.
expect 1 -- "$DALLE" tokenize --model "$GEN" "$(printf 'a \xff\xfe b')"
expect 1 -- "$DALLE" generate --model "$GEN" --prompt "$(printf '\xc3')" --out-dir "$T/g"
expect 1 -- "$DALLE" decode --model "$GEN" --out "$(printf '\xff.png')" "$T/tokens.txt"
expect 1 -- "$DALLE" judge --image "$T/o.png" --caption "$(printf 'a red \xff circle')"
expect 0 -- "$DALLE" tokenize --model "$GEN" --mode raw "$(head -c 100000 /dev/zero | tr '\0' 'x')"
expect 0 -- "$DALLE" generate --model "$GEN" --prompt "$(printf 'a red ball %.0s' $(seq 5000))" --out-dir "$T/long" --seed 1

# Outputs that cannot be written.
expect 1 -- "$DALLE" generate --model "$GEN" --prompt "a" --out-dir /dev/null/x
expect 1 -- "$DALLE" generate --model "$GEN" --prompt "a" --out-dir "$T/model.png"
expect 1 -- "$DALLE" bundle --out /nonexistent/dir/b.safetensors "$GEN"
expect 1 -- "$DALLE" bundle --out "$T/b.safetensors" --dtype q3 "$GEN"
expect 1 -- "$DALLE" bundle --out "$T/b.safetensors" "$T/random"

printf 'CLI hostile input: %d cases, %d failed\n' "$cases" "$failures"
[ "$failures" -eq 0 ]
