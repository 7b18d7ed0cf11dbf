#!/usr/bin/python3
"""alpa generate --compiled on the MPI backend: one device per process under mpirun.

The tiny GPT-2 checkpoint of tests/serve/reference.py, its prefill and decode steps compiled for
a 1x2 mesh (the default split of 2 processes), 2 pipeline stages, and 2 stages of 1x2 meshes in
4 processes, prints the text one device prints with the engine (greedy), from process 0 only;
a job whose process count does not match the split is refused with what to run.

Usage: compiled.py ALPA MPIRUN WORKDIR SOURCE_DIR
"""
import json
import os
import shutil
import subprocess
import sys

alpa, mpirun, work, source = sys.argv[1:5]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
model = os.path.join(work, "gpt2")
FLAGS = ["--prompt", "hello world", "--max-tokens", "12", "--temperature", "0", "--ignore-eos",
         "--json"]


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


if subprocess.run(["/usr/bin/python3", os.path.join(source, "tests/serve/reference.py"), model,
                   "gpt2", "f32", "1"]).returncode != 0:
    fail("reference.py could not write the checkpoint")
one = subprocess.run([alpa, "generate", "--model", model] + FLAGS, capture_output=True, text=True)
if one.returncode != 0:
    fail(f"alpa generate: {one.stderr[-500:]}")
want = json.loads(one.stdout)["choices"][0]["text"]

for np, split, shape in ((2, [], "1x2"), (2, ["--pipeline", "2"], "1x1"),
                         (4, ["--pipeline", "2", "--mesh", "1x2"], "1x2")):
    r = subprocess.run([mpirun, "-np", str(np), alpa, "generate", "--model", model, "--compiled",
                        "--backend", "mpi"] + split + FLAGS, capture_output=True, text=True,
                       timeout=200)
    if r.returncode != 0:
        fail(f"{np} processes {split}: {r.stderr[-800:]}")
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    if len(lines) != 1:
        fail(f"{np} processes {split}: {len(lines)} lines printed, process 0's only expected")
    got = json.loads(lines[0])
    if got["text"] != want:
        fail(f"{np} processes {split}: {got['text']!r} vs one device {want!r}")
    decode = got["compiled"]["decode"]
    stages = 2 if "--pipeline" in split else 1
    if decode["mesh"] != shape or decode["stages"] != stages:
        fail(f"{np} processes {split}: compiled {decode['stages']} stages of {decode['mesh']}")
    print(f"{np} processes {' '.join(split) or '(1xN mesh)'}: the text of one device")

r = subprocess.run([mpirun, "-np", "2", alpa, "generate", "--model", model, "--compiled",
                    "--backend", "mpi", "--mesh", "1x3"] + FLAGS, capture_output=True, text=True,
                   timeout=200)
if r.returncode == 0 or "the split needs 3 devices, the job has 2" not in r.stdout + r.stderr:
    fail(f"a 1x3 mesh on 2 processes: {r.returncode} {r.stdout[-300:]} {r.stderr[-300:]}")
print("PASS: compiled")
