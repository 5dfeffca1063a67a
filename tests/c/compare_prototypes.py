"""Checks that include/dalle.h and libdalle agree:

  1. the functions the header declares are exactly the dalle_* functions libdalle.so exports
     (`nm -D --defined-only`), and
  2. when a Swift-emitted header is given (`swiftc -emit-clang-header-path` over
     Sources/DalleCAPI), every prototype there matches the hand-written one.

usage: compare_prototypes.py include/dalle.h libdalle.so [swift-emitted.h]

Swift spells an opaque handle (`dalle_model *`) as `void *` and Swift's Int (size_t) as
NSInteger, and Bool as BOOL; all are the same C ABI and are normalised before comparing."""
import re
import subprocess
import sys

HANDLES = ("dalle_model", "dalle_context")


def strip_comments(text):
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S)


def normalize_type(t):
    t = re.sub(r"\b(_Nullable|_Nonnull|_Null_unspecified)\b", " ", t)
    t = t.replace("*", " * ")
    words = t.split()
    const = "const" in words and words.index("const") < len(words) and not words[-1] == "const"
    words = [w for w in words if w != "const"]
    base = [w for w in words if w != "*"]
    stars = words.count("*")
    name = " ".join(base)
    if name in HANDLES:
        name, const = "void", False  # an opaque handle
    if name == "NSInteger":
        name = "size_t"
    if name == "BOOL":
        name = "bool"  # Swift's Bool: one byte, as C's bool
    return ("const " if const and stars else "") + name + " *" * stars


def split_param(p):
    """Type of one parameter declaration (drops the parameter's name)."""
    p = p.strip()
    if p == "void":
        return None
    m = re.match(r"^(.*?[\s*])([A-Za-z_]\w*)$", p)
    return normalize_type(m.group(1) if m and m.group(1).strip() else p)


def prototypes(text, prefix):
    """{name: (return type, [parameter types])} of every function declared after `prefix`."""
    text = strip_comments(text)
    result = {}
    for m in re.finditer(prefix + r"\s+([^;{}()]*?)\b(dalle_\w+)\s*\(([^;{}]*?)\)\s*[A-Z_ ]*;", text):
        ret, name, params = m.groups()
        types = [split_param(p) for p in params.split(",")] if params.strip() else []
        result[name] = (normalize_type(ret), [t for t in types if t is not None])
    return result


def main():
    header_path, library = sys.argv[1], sys.argv[2]
    header = prototypes(open(header_path).read(), r"DALLE_API")
    failures = []

    nm = subprocess.run(["nm", "-D", "--defined-only", library], capture_output=True, text=True, check=True)
    exported = {line.split()[-1] for line in nm.stdout.splitlines() if line.split()[1:2] in (["T"], ["W"])}
    dalle = {s for s in exported if s.startswith("dalle_")}
    for name in sorted(set(header) - dalle):
        failures.append(f"declared in dalle.h but not exported by libdalle.so: {name}")
    for name in sorted(dalle - set(header)):
        failures.append(f"exported by libdalle.so but not declared in dalle.h: {name}")
    other = sorted(exported - dalle)
    print(f"exports: {len(dalle)} dalle_* functions, {len(header)} declared in dalle.h"
          + (f"; other exported functions: {', '.join(other)}" if other else ""))

    if len(sys.argv) > 3:
        swift = prototypes(open(sys.argv[3]).read(), r"SWIFT_EXTERN")
        for name in sorted(set(header) | set(swift)):
            if name not in swift:
                failures.append(f"{name}: declared in dalle.h, no @_cdecl implementation in Swift")
            elif name not in header:
                failures.append(f"{name}: @_cdecl in Swift, not declared in dalle.h")
            elif header[name] != swift[name]:
                failures.append(f"{name}: dalle.h says {header[name]}, Swift implements {swift[name]}")
        print(f"prototypes: {len(swift)} Swift @_cdecl functions compared with dalle.h")

    for f in failures:
        print("FAIL:", f)
    if not failures:
        print("ok: dalle.h, the Swift implementation and the exports agree")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
