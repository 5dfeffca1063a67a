#!/usr/bin/env bash
# The Python package as a user installs it: `pip install ./bindings/python` into a fresh venv
# (--system-site-packages for numpy, setuptools and wheel; nothing downloaded), then
# examples/python/generate.py run from outside the source tree with no PYTHONPATH or
# DALLE_LIBRARY: the package must load the libdalle.so it carries. Then `make wheel`.
#   bash tests/python_package_test.sh
set -u
cd "$(dirname "$0")/.."
REPO=$(pwd)
source tests/checks.sh
GEN_MODEL="$REPO/Tests/DalleCoreTests/Golden/generate/model.safetensors"

make_build
check "python3 -m venv --system-site-packages" python3 -m venv --system-site-packages "$T/venv"
PY="$T/venv/bin/python"
check "pip install ./bindings/python" "$PY" -m pip install -q --no-index --no-build-isolation ./bindings/python
rm -rf bindings/python/build bindings/python/dalle.egg-info  # setuptools builds in place

cp examples/python/generate.py "$T/"
cd "$T"
unset PYTHONPATH DALLE_LIBRARY DALLE_MODEL
check "import dalle loads the library inside the installed package" "$PY" -c '
import os, sys, dalle, dalle._lib
package = os.path.dirname(dalle.__file__)
assert package.startswith(sys.argv[1] + "/lib/"), package
assert dalle._lib.lib._name == os.path.join(package, "libdalle.so"), dalle._lib.lib._name
assert dalle.version() == dalle.__version__ == "0.2.0"
assert os.path.exists(os.path.join(package, "py.typed"))
print(dalle.system_info())' "$T/venv"
check "examples/python/generate.py from outside the tree" "$PY" generate.py "$GEN_MODEL" "a red ball" "$T/images"
grep -q "^ok$" "$T/out" || fail "generate.py did not finish: $(cat "$T/out")"
check "the example saved its images" test -s "$T/images/000.png"
check "pip uninstall" "$PY" -m pip uninstall -q -y dalle
check "import dalle fails once uninstalled" bash -c "! '$PY' -c 'import dalle'"
cd "$REPO"

check "make wheel" make wheel
wheel=$(ls build/wheel/dalle-0.2.0-py3-none-linux_*.whl 2>/dev/null | head -1)
check "the wheel carries dalle/libdalle.so" bash -c "python3 -m zipfile -l '$wheel' | grep -q '^dalle/libdalle.so '"
echo "wheel: $wheel, $(du -k "$wheel" | cut -f1) KiB"
check "the wheel installs and loads" bash -c "'$PY' -m pip install -q --no-index '$wheel' && cd / && env -u PYTHONPATH '$PY' -c 'import dalle; print(dalle.default_model_candidates())'"

finish python_package_test
