#!/usr/bin/env bash
# Builds recpipe with the `cuda` feature on a machine without a GPU or a CUDA install.
#
# The CUDA 13.0 compiler, headers and libraries come from NVIDIA's wheels on PyPI (pinned below)
# and are unpacked under $RECPIPE_CUDA_ROOT. The driver library (libcuda.so.1) is part of the
# GPU driver, not of any wheel, so the link uses a stub generated here from cuda.h; at run time
# the real driver is loaded. The binary is written to target/cuda/release/recpipe, apart from the
# CPU build, and needs the toolkit's lib folder on LD_LIBRARY_PATH where it runs (see README, GPU).
#
# usage: scripts/cuda-build.sh [extra cargo build arguments]
# env:   RECPIPE_CUDA_ROOT   where the toolkit goes (default ~/.cache/recpipe/cuda-13.0)
#        CUDA_COMPUTE_CAP    the GPU generation the kernels are compiled for (default 90: H100/H200)
set -euo pipefail

root="${RECPIPE_CUDA_ROOT:-$HOME/.cache/recpipe/cuda-13.0}"
cap="${CUDA_COMPUTE_CAP:-90}"
repo="$(cd "$(dirname "$0")/.." && pwd)"

wheels=(
  "nvidia-cuda-nvcc==13.0.88"
  "nvidia-cuda-crt==13.0.88"
  "nvidia-cuda-cccl==13.0.85"
  "nvidia-nvvm==13.0.88"
  "nvidia-cuda-runtime==13.0.96"
  "nvidia-cuda-nvrtc==13.0.88"
  "nvidia-cublas==13.0.2.14"
  "nvidia-curand==10.4.0.35"
)

if [ ! -x "$root/bin/nvcc" ]; then
  echo "cuda-build: installing the CUDA 13.0 toolkit wheels into $root" >&2
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps -d "$tmp/whl" "${wheels[@]}"
  mkdir -p "$tmp/unpacked"
  for w in "$tmp"/whl/*.whl; do
    python3 -m zipfile -e "$w" "$tmp/unpacked"
  done
  rm -rf "$root.partial"
  mkdir -p "$(dirname "$root")"
  mv "$tmp/unpacked/nvidia/cu13" "$root.partial"
  chmod +x "$root.partial"/bin/* "$root.partial"/nvvm/bin/*
  # The linker looks for unversioned names; the wheels carry only the versioned ones.
  for lib in cudart cublas cublasLt curand nvrtc; do
    so="$(cd "$root.partial/lib" && ls lib$lib.so.* | head -n 1)"
    ln -sf "$so" "$root.partial/lib/lib$lib.so"
  done
  # A stub of the driver library, exporting every function cuda.h declares (after its
  # versioned-name macros), so that the binary links here and loads the real driver there.
  mkdir -p "$root.partial/lib/stubs"
  gcc -E -P -I "$root.partial/include" "$root.partial/include/cuda.h" \
    | grep -oE '\bcu[A-Za-z0-9_]+[[:space:]]*\(' | tr -d '( \t' | sort -u \
    | awk '{ printf "int %s(void) { return 999; }\n", $1 }' > "$tmp/cuda_stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root.partial/lib/stubs/libcuda.so" "$tmp/cuda_stub.c"
  mv "$root.partial" "$root"
fi

export CUDA_ROOT="$root" CUDA_HOME="$root" CUDA_PATH="$root" NVCC="$root/bin/nvcc"
export PATH="$root/bin:$PATH"
export CUDA_COMPUTE_CAP="$cap"
export LIBRARY_PATH="$root/lib:$root/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
cd "$repo"
CARGO_TARGET_DIR="$repo/target/cuda" cargo build --release -p pipeline --features cuda "$@"
echo "cuda-build: built $repo/target/cuda/release/recpipe (compute capability $cap);" \
  "run it with LD_LIBRARY_PATH=$root/lib" >&2
