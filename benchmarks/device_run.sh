#!/bin/bash
# Device run of benchmarks/prune_latency.py (from the repository root, the
# wheels installed to /tmp/site): GPU on cores 0-3, the CPU
# condition of each model on two other pinned cores at the same time.
cd "$(dirname "$0")/.."
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nproc; lscpu | grep -i 'model name'; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c 'import torch, speechbrain; print(torch.__version__, speechbrain.__version__, torch.backends.cudnn.version())'
B="python3 benchmarks/prune_latency.py --out $OUT --formats csv md --deadline-s ${DEADLINE:-420}"
L=${LIMIT:-480}
pin() { command -v taskset >/dev/null && echo "taskset -c $1"; }
timeout $L $(pin 0-3) $B --device cuda --threads 4 --models librispeech_enc timit_ctc --tag cuda > /tmp/cuda.log 2>&1 &
timeout $L $(pin 8-9) $B --device cpu --threads 2 --models timit_ctc --tag cpu_h200host_timit > /tmp/cpu_timit.log 2>&1 &
timeout $L $(pin 10-11) $B --device cpu --threads 2 --models librispeech_enc --tag cpu_h200host_libri > /tmp/cpu_libri.log 2>&1 &
wait
uptime
for f in /tmp/cuda.log /tmp/cpu_timit.log /tmp/cpu_libri.log; do echo "=== $f"; grep -v -i 'warn' $f; done > $OUT/run.log
grep -v '^Latency stage' $OUT/run.log | tail -c 11000
