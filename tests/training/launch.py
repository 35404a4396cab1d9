"""Two processes on gloo under torchrun (CPU), running ddp_worker.py or `python -m lib`."""
import os
import subprocess
import sys

from lib.data.layout import PROJECT_ROOT


WORKER = PROJECT_ROOT / "tests" / "training" / "ddp_worker.py"


def torchrun(*args, timeout=240):
    """Run `torchrun --standalone --nproc-per-node 2 ARGS` from the project root; returns the CompletedProcess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *map(str, args)]
    return subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
