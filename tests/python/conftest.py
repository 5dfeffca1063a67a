import os
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "bindings", "python"))
MODEL = os.path.join(REPO, "Tests", "DalleCoreTests", "Golden", "dvae", "model.safetensors")
