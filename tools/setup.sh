#!/usr/bin/env bash
# Installs what the scripts in tools/ need: the CPU torch wheel, the reference implementations
# (OpenAI's dall-e, DALLE-pytorch 1.6.6, openai-clip; diffusers and transformers for unCLIP, from
# requirements.txt) and their light dependencies. The
# reference packages go in with --no-deps, so none of them pulls a CUDA torch or torchvision;
# tools/stubs/ stands in for the optional modules they import.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m pip install -r requirements.txt
# openai-clip imports `packaging` from pkg_resources, which setuptools 70 dropped; the torch wheel
# declares setuptools>=77 (only its C++ extension builder uses it), so the older one goes in on its own.
python3 -m pip install "setuptools<70"
python3 -m pip install --no-deps dall-e==0.1 dalle-pytorch==1.6.6 openai-clip==1.0.1 rotary-embedding-torch
