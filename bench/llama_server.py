"""Build llama.cpp's `llama-server` from the sources vendored in llama-cpp-python's sdist.

The benchmark compares against the same llama.cpp that Allmende embeds. The build lands in
`bench/.build/` (git-ignored) and is reused; nothing built here is committed.

    python bench/llama_server.py          # build (about 10-20 minutes on 2 cores), print the path
"""

from __future__ import annotations

import glob
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

BUILD_ROOT = Path(__file__).resolve().parent / ".build"


def llama_cpp_python_version() -> str:
    return importlib.metadata.version("llama-cpp-python")


def ensure_llama_server(version: str | None = None, jobs: int | None = None) -> Path:
    """The path of a built `llama-server` for `version` (default: the installed one)."""
    version = version or llama_cpp_python_version()
    root = BUILD_ROOT / f"llama_cpp_python-{version}"
    binary = root / "build" / "bin" / "llama-server"
    if binary.exists():
        return binary
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    if not (root / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
        print(f"downloading the llama-cpp-python {version} sdist ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-binary",
                ":all:",
                "--no-deps",
                f"llama-cpp-python=={version}",
                "-d",
                str(BUILD_ROOT),
            ],
            check=True,
        )
        [archive] = glob.glob(str(BUILD_ROOT / f"llama_cpp_python-{version}.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(BUILD_ROOT, filter="data")
    source = root / "vendor" / "llama.cpp"
    build = root / "build"
    if shutil.which("cmake") is None:
        raise SystemExit("cmake is needed to build llama-server (apt-get install cmake)")
    print(f"configuring llama.cpp in {build} ...", flush=True)
    subprocess.run(
        [
            "cmake",
            "-S",
            str(source),
            "-B",
            str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DLLAMA_BUILD_SERVER=ON",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DLLAMA_CURL=OFF",
            "-DBUILD_SHARED_LIBS=OFF",
        ],
        check=True,
    )
    print("building llama-server (this takes a while on 2 cores) ...", flush=True)
    subprocess.run(
        [
            "cmake",
            "--build",
            str(build),
            "--target",
            "llama-server",
            "-j",
            str(jobs or os.cpu_count() or 2),
        ],
        check=True,
    )
    if not binary.exists():
        raise SystemExit(f"the build finished but {binary} is missing")
    return binary


if __name__ == "__main__":
    print(ensure_llama_server())
