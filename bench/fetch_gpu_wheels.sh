#!/usr/bin/env bash
# Download, into .whl/ at the repository root (ignored by git), the wheels that the GPU machine of
# `bench/gpu_check.sh` lacks: the backend's dependencies that are not in its image (diffusers,
# PyMCubes, xatlas, trimesh, fast-simplification), their own missing dependencies, and nerfacc for
# the GPU tests. CPython 3.12 manylinux x86-64 wheels only, never torch (the machine's CUDA build
# stays), one version of each, no dependency resolution (--no-deps: every wheel is named here).
#
# The machine has no network: these wheels travel with the `run` tool's `carry` (64 MiB in all,
# the working tree included), and gpu_check.py installs them offline with --no-index --no-deps.
#
# Usage: bench/fetch_gpu_wheels.sh    (prints the folder's size at the end)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$REPO/.whl"
PYTHON="${PYTHON:-python3}"

# Versions: those the backend is tested with on the development machine (ENVIRONMENT.md), which
# work with the machine's numpy 2 and transformers 5. importlib-metadata (with its lazy-importer):
# diffusers imports it and the machine's image lacks both. nerfacc is pure Python (its CUDA code compiles on first use).
WHEELS=(
  diffusers==0.42.1
  importlib-metadata==10.2.0
  lazy-importer==0.1.0
  PyMCubes==0.1.6
  xatlas==0.0.11
  trimesh==5.2.0
  fast-simplification==0.2.0
  nerfacc==0.5.3
)

rm -rf "$DEST"
mkdir -p "$DEST"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
  -d "$DEST" "${WHEELS[@]}"

if ls "$DEST" | grep -qi '^torch-'; then
  echo "error: a torch wheel was downloaded into $DEST; the machine's CUDA torch must stay" >&2
  exit 1
fi
ls -l "$DEST"
du -sh "$DEST"
