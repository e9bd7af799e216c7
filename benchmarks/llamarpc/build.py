"""llama.cpp's ggml-rpc-server and llama-bench, built from the source that the
llama-cpp-python sdist carries (a pinned version), cached outside the
repository: ``<exogpu cache>/llama.cpp-<version>/``.

The sdist comes through pip (``pip download --no-binary``); the build is a
Release CMake build with RPC on and no network features. A finished build is
marked by a stamp file that records its configuration, so a changed
configuration rebuilds and an interrupted one never counts as done.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from exogpu.profile import cache_dir

LLAMA_CPP_PYTHON = "0.3.36"
# sha256 of llama_cpp_python-0.3.36.tar.gz as PyPI serves it.
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
TARGETS = ("ggml-rpc-server", "llama-bench")
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_RPC=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
)


@dataclass(frozen=True)
class LlamaCpp:
    root: Path

    @property
    def rpc_server(self) -> Path:
        return self.root / "build" / "bin" / "ggml-rpc-server"

    @property
    def bench(self) -> Path:
        return self.root / "build" / "bin" / "llama-bench"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sdist(root: Path) -> Path:
    name = f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    path = root / name
    if not path.exists():
        print(f"downloading the llama-cpp-python {LLAMA_CPP_PYTHON} sdist with pip", flush=True)
        # --no-build-isolation: pip reads the sdist's metadata with the
        # scikit-build-core installed here instead of building CMake from source.
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--no-binary", "llama-cpp-python", "--no-build-isolation",
             f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", str(root)],
            check=True,
        )
    digest = _sha256(path)
    if digest != SDIST_SHA256:
        raise RuntimeError(f"{path}: sha256 {digest}, expected {SDIST_SHA256}")
    return path


def ensure_built(jobs: int = 2) -> LlamaCpp:
    """The built tools, building them first when the cache lacks them."""
    tools = LlamaCpp(cache_dir() / f"llama.cpp-{LLAMA_CPP_PYTHON}")
    stamp = tools.root / "built.json"
    config = {"version": LLAMA_CPP_PYTHON, "flags": list(CMAKE_FLAGS), "targets": list(TARGETS)}
    if stamp.exists() and json.loads(stamp.read_text()) == config:
        return tools
    tools.root.mkdir(parents=True, exist_ok=True)
    sdist = _sdist(tools.root)
    src = tools.root / "src"
    if not src.exists():
        tmp = tools.root / "src.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        (tmp / f"llama_cpp_python-{LLAMA_CPP_PYTHON}" / "vendor" / "llama.cpp").rename(src)
        shutil.rmtree(tmp)
    build = tools.root / "build"
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    print(f"building llama.cpp ({', '.join(TARGETS)}) in {build}: minutes", flush=True)
    subprocess.run(["cmake", "-S", str(src), "-B", str(build), *generator, *CMAKE_FLAGS],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(build), "-j", str(jobs), "--target", *TARGETS],
                   check=True, env={**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": str(jobs)})
    stamp.write_text(json.dumps(config))
    return tools


if __name__ == "__main__":
    built = ensure_built()
    print(built.rpc_server, built.bench)
