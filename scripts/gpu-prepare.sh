#!/usr/bin/env bash
# Prepares the GPU checks of README's "GPU" section for a machine with an NVIDIA GPU and no
# Rust toolchain: builds recpipe and the training and rerank benches with the `cuda` feature
# (scripts/cuda-build.sh), strips and compresses them into gpu-run/ (ignored by git), with
# ml-latest-small imported as Parquet. Then, on the GPU machine, from the repository root:
#
#     bash scripts/gpu-checks.sh          # results under $OUT (default gpu-run/out)
#
# usage: scripts/gpu-prepare.sh [DATA_ROOT]   (default: ../shared/data, as in CI)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
data_root="${1:-$repo/../shared/data}"
run="$repo/gpu-run"
cd "$repo"

# recpipe, then both bench binaries, with the same toolkit and flags.
scripts/cuda-build.sh
json="$(mktemp)"
trap 'rm -f "$json"' EXIT
scripts/cuda-build.sh -p retrieval -p ranking --bench train --bench rerank \
  --message-format=json >"$json"
bench() {
  python3 - "$json" "$1" "$2" <<'EOF'
import json, sys
path, package, name = sys.argv[1:]
for line in open(path):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["name"] == name and m["package_id"].find(f"/{package}#") >= 0:
        print(m["executable"])
        break
else:
    sys.exit(f"no {package} bench {name} in cargo's output")
EOF
}
train="$(bench retrieval train)"
rerank="$(bench ranking rerank)"

rm -rf "$run"
mkdir -p "$run"
for pair in "recpipe:$repo/target/cuda/release/recpipe" "train-bench:$train" "rerank-bench:$rerank"; do
  name="${pair%%:*}"
  strip -o "$run/$name" "${pair#*:}"
  gzip -9 "$run/$name"
done
cargo run --release -q -p pipeline -- import movielens \
  --input "$data_root/ml-latest-small" --out "$run/mlsmall" >&2
du -sh "$run"/* >&2
echo "gpu-prepare: $run is ready (carry it: run ... carry=[\"gpu-run\"])" >&2
