#!/usr/bin/python3
"""PyTorch DDP baseline for bench/mpi_data_parallel.py: GPT training steps data-parallel.

The model of bench/torch_gpt_step.py (the same GPT as alpa-cpp's), wrapped in
DistributedDataParallel with the gloo backend: --procs processes of --threads threads each on
this machine, the global batch split evenly. Prints one JSON line from rank 0:
{"procs", "threads", "step_times_s", "median_s", "loss", "torch"}.
Run with Debian's interpreter: /usr/bin/python3 bench/torch_ddp_step.py --procs 2 --threads 1
"""
import argparse
import json
import os
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_gpt_step import Gpt, add_model_arguments  # noqa: E402


def worker(rank, a, port, queue):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo", rank=rank, world_size=a.procs)
    torch.manual_seed(0)
    net = Gpt(a.layers, a.hidden, a.heads, a.seq, a.vocab)
    # The causal mask is a constant bool buffer, which gloo cannot broadcast.
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(net, ["mask"])
    model = DistributedDataParallel(net)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    local = a.batch // a.procs
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, a.vocab, (a.batch, a.seq), generator=g)[rank * local:(rank + 1) * local]
    labels = torch.randint(0, a.vocab, (a.batch, a.seq), generator=g)[rank * local:(rank + 1) * local]
    times, loss = [], None
    for step in range(a.steps + 2):
        dist.barrier()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(tokens, labels)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if step >= 2:
            times.append(dt)
    if rank == 0:
        queue.put({"procs": a.procs, "threads": a.threads, "step_times_s": times,
                   "median_s": statistics.median(times), "loss": loss.item(),
                   "torch": torch.__version__})
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    add_model_arguments(ap)
    a = ap.parse_args()
    # PyTorch's BLAS here is the system OpenBLAS, whose own thread pool ignores
    # torch.set_num_threads: pin it too, or the processes oversubscribe the cores. Its
    # SkylakeX kernels are forced, as in bench/train_step.py (Debian's OpenBLAS otherwise falls
    # back to Prescott kernels on this CPU). Set before the workers start (they inherit it).
    os.environ["OPENBLAS_NUM_THREADS"] = str(a.threads)
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    os.environ.setdefault("OPENBLAS_CORETYPE", "SkylakeX")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.start_processes(worker, args=(a, port, queue), nprocs=a.procs, start_method="spawn")
    print(json.dumps(queue.get()))


if __name__ == "__main__":
    main()
