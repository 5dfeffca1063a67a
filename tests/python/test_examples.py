"""The Python example runs end to end."""
import os
import subprocess
import sys

from conftest import MODEL, REPO


def test_python_roundtrip_example():
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "bindings", "python"))
    result = subprocess.run([sys.executable, os.path.join(REPO, "examples", "python", "roundtrip.py"), MODEL],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "bad token rejected: dalle_decode: invalid argument" in result.stdout
    assert result.stdout.rstrip().endswith("ok")
