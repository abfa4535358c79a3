#!/usr/bin/env bash
# The GPU checks of README's "GPU" section, on a machine with an NVIDIA GPU, its driver and a
# CUDA 13 PyTorch (whose wheels carry the cuBLAS, cuRAND and NVRTC libraries the binaries load),
# from the repository root, after scripts/gpu-prepare.sh filled gpu-run/ elsewhere:
#
#   1. the training bench (1M items) on cuda:0 at batch 512 and 8192, and the same model in
#      PyTorch on the same GPU (retrieval/benches/torch_train.py);
#   2. the rerank bench on the GPU and on this machine's CPU cores;
#   3. `recpipe evaluate` on ml-latest-small trained on the GPU (compare with the CPU run's
#      figures from the same seed, README "GPU").
#
# Every step has its own time limit and a failed step does not stop the others. Results go to
# $OUT (default gpu-run/out), one file per step, and a summary to summary.txt.
set -uo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
run="$repo/gpu-run"
out="${OUT:-$run/out}"
mkdir -p "$out"
summary="$out/summary.txt"
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }

cd "$run" || { note "no gpu-run/: run scripts/gpu-prepare.sh first"; exit 1; }
for b in recpipe train-bench rerank-bench; do
  [ -x "$b" ] || { gunzip -kf "$b.gz" && chmod +x "$b"; }
done

# The CUDA libraries the binaries load (cuBLAS, cuRAND, NVRTC, the runtime; CUDA 13): from the
# toolkit beside nvcc or under /usr/local/cuda, else from the PyTorch install's nvidia-* wheels
# (recent ones carry no cuRAND).
libs="$(python3 - <<'EOF'
import glob, os, shutil, site
names = ("libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "libnvrtc.so.13",
         "libcudart.so.13")
roots = []
nvcc = shutil.which("nvcc")
if nvcc:
    top = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    roots += [os.path.join(top, "lib64"), os.path.join(top, "targets", "x86_64-linux", "lib")]
roots += sorted(glob.glob("/usr/local/cuda*/lib64")) + sorted(
    glob.glob("/usr/local/cuda*/targets/x86_64-linux/lib"))
for base in site.getsitepackages() + [site.getusersitepackages()]:
    roots += sorted({os.path.dirname(f) for f in glob.glob(
        os.path.join(base, "nvidia", "**", "lib*.so*"), recursive=True)})
dirs = []
for name in names:
    for root in roots:
        if os.path.exists(os.path.join(root, name)):
            if root not in dirs:
                dirs.append(root)
            break
print(":".join(dirs))
EOF
)"
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
note "CUDA libraries from: $libs"
missing="$(ldd ./recpipe | grep 'not found' || true)"
[ -z "$missing" ] || note "missing libraries: $missing"
nvidia-smi >"$out/nvidia-smi.txt" 2>&1
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' \
  >>"$summary" 2>&1

step() { # name seconds command...
  local name="$1" limit="$2"
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$out/$name.txt" 2>&1
  local rc=$?
  note "$name: exit $rc in $((SECONDS - start)) s: $(grep -E 'examples/s|examples_per_second|candidates/s|test \(exact\)' "$out/$name.txt" | tail -1)"
}

step train-cuda-512 120 ./train-bench items=1000000 device=cuda:0 steps=40
step torch-cuda-512 120 python3 "$repo/retrieval/benches/torch_train.py" --device cuda \
  --batch-size 512 --steps 40
step train-cuda-8192 120 ./train-bench items=1000000 device=cuda:0 batch_size=8192 steps=10
step torch-cuda-8192 120 python3 "$repo/retrieval/benches/torch_train.py" --device cuda \
  --batch-size 8192 --steps 10
step rerank-cuda 120 ./rerank-bench youtube dcn_v2 device=cuda:0
step rerank-cpu 120 ./rerank-bench youtube dcn_v2 device=cpu
step evaluate-cuda 300 ./recpipe --device cuda:0 evaluate --data mlsmall \
  --json "$out/evaluate-cuda.json"
note "done: $out"
