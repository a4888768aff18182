#!/usr/bin/env bash
# One prepared GPU check, sized for under 8 minutes on one GPU (run from the repository root):
#   1. the CUDA tests (pytest -m cuda): fp16 AMP with a grad scaler, the sampler feeding a CUDA
#      model, torch k-means on the GPU, a real out-of-memory walking the inference fallback chain;
#   2. a 1-process nccl process group with DistributedDataParallel (one all-reduced step);
#   3. torch k-means on the GPU against the CPU (bench_kmeans.py);
#   4. the sbm-reddit mini-batch DGI epoch time and peak memory on the GPU, next to the PyAGC
#      scalability guide's Reddit figures (142 s for 200 epochs, 4.2 GB on an A100).
# Every step prints what it measured; a failing step is reported and the next one still runs.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export AGC_CACHE_DIR=${AGC_CACHE_DIR:-$(mktemp -d)}
status=0
step() {
  echo; echo "=== $1"; shift
  local t0=$SECONDS
  timeout "${STEP_TIMEOUT:-300}" "$@"; local rc=$?
  echo "--- rc=$rc, $((SECONDS - t0)) s"
  [ "$rc" = 0 ] || status=1
}
$PY - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), f"{torch.cuda.mem_get_info()[1] / 2**30:.0f} GiB")
PY
step "CUDA tests" $PY -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider
step "1-process nccl DDP" $PY - <<'PY'
import os, torch, torch.distributed as dist
os.environ.setdefault("MASTER_ADDR", "127.0.0.1"); os.environ.setdefault("MASTER_PORT", "29533")
dist.init_process_group("nccl", rank=0, world_size=1)
torch.cuda.set_device(0)
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(64, 8).cuda(), device_ids=[0])
loss = model(torch.randn(256, 64, device="cuda")).pow(2).mean()
loss.backward()
t = torch.ones(4, device="cuda"); dist.all_reduce(t)
print("nccl", dist.get_backend(), "world", dist.get_world_size(), "loss", float(loss),
      "all_reduce", t.tolist(), "grad norm", float(model.module.weight.grad.norm()))
dist.destroy_process_group()
PY
step "k-means on the GPU vs the CPU" $PY benchmarks/bench_kmeans.py --nodes 1000000 --dim 64 \
  --clusters 40 --device cuda --backends torch minibatch
STEP_TIMEOUT=360 step "sbm-reddit mini-batch DGI on the GPU" $PY benchmarks/bench_sbm_reddit_dgi.py \
  --device cuda --max-batches 40
echo; echo "gpu_check: $([ $status = 0 ] && echo all steps passed || echo some steps FAILED)"
exit $status
