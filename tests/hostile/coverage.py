#!/usr/bin/env python3
"""Checks that tests/hostile/capi_misuse.c calls every function include/dalle.h declares.

    python3 tests/hostile/coverage.py include/dalle.h tests/hostile/capi_misuse.c"""
import re
import sys

header, harness = (open(path).read() for path in sys.argv[1:3])
declared = set(re.findall(r"DALLE_API\s[^;(]*?\b(dalle_\w+)\s*\(", header))
called = set(re.findall(r"\b(dalle_\w+)\s*\(", re.sub(r"/\*.*?\*/", " ", harness, flags=re.S)))
missing = sorted(declared - called)
if missing:
    sys.exit(f"capi_misuse.c never calls: {', '.join(missing)}")
print(f"capi_misuse.c calls all {len(declared)} functions of dalle.h")
