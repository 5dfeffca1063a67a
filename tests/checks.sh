# Sourced by tests/cli_test.sh, install_test.sh and python_package_test.sh: a temporary directory $T
# (removed at exit), `check DESCRIPTION COMMAND...` (runs COMMAND with its output in $T/out and
# counts a failure when it fails), `fail MESSAGE`, `make_build` and `finish NAME`, which prints
# "NAME: N passed, N failed" and returns non-zero after any failure.
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failures=0
checks=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

check() {
    local what=$1; shift
    checks=$((checks + 1))
    if "$@" >"$T/out" 2>&1; then echo "ok: $what"; else fail "$what: $(tail -c 800 "$T/out")"; fi
}

# make build, quietly; exits the test with the log's tail when it fails.
make_build() {
    make build >"$T/build.log" 2>&1 || { echo "make build failed"; tail -20 "$T/build.log"; exit 1; }
}

finish() {
    local passed=$((checks > failures ? checks - failures : 0))
    echo "$1: $passed passed, $failures failed"
    [ "$failures" -eq 0 ]
}
