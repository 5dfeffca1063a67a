"""Build hooks for pyproject.toml: the package carries libdalle.so (stripped), and the wheel is
tagged for this platform (it holds native code). The library comes from $DALLE_LIBRARY, else the
checkout's build/lib/libdalle.so (`make build`)."""
import os
import shutil
import subprocess

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildWithLibrary(build_py):
    """build_py, then libdalle.so copied into the built package as dalle/libdalle.so."""

    def run(self):
        super().run()
        source = os.environ.get("DALLE_LIBRARY") or os.path.join(HERE, "..", "..", "build", "lib", "libdalle.so")
        if not os.path.isfile(source):
            raise SystemExit(f"libdalle.so not found at {source}: run `make build` in the repository first, "
                             "or set DALLE_LIBRARY to the library's path")
        target = os.path.join(self.build_lib, "dalle", "libdalle.so")
        shutil.copyfile(source, target)  # the file behind the symlinks
        os.chmod(target, 0o755)
        strip = shutil.which("strip")
        if strip:  # debug info and local symbols: half the size; the exported C API stays
            subprocess.run([strip, target], check=True)


class NativeDistribution(Distribution):
    """Holds native code (libdalle.so): installed to platlib, a platform wheel."""

    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    """A wheel for this platform only, since it holds libdalle.so (any Python 3: no extension module)."""

    def get_tag(self):
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(distclass=NativeDistribution, cmdclass={"build_py": BuildWithLibrary, "bdist_wheel": PlatformWheel})
