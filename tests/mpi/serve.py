#!/usr/bin/python3
"""alpa serve on the MPI backend, end to end: one device per process under mpirun.

- A tiny GPT-2 checkpoint (tests/serve/reference.py) split over a 1x2 mesh and over 2 pipeline
  stages in 2 processes answers /v1/completions with the text and log-probabilities of one
  device (`alpa generate`, greedy), and /metrics reports the split.
- SIGUSR1 to mpirun (which forwards it) while a long streamed request runs: the request
  finishes (finish_reason "length", [DONE]) and every process exits 0. Without a split flag
  the processes form a 1xN mesh.
- Each process holds its own device's part only (the stages hold the model once between them).
- A job whose process count does not match the split, and --backend mpi outside mpirun, are
  refused with errors that say what to run.

Usage: serve.py ALPA MPIRUN WORKDIR SOURCE_DIR
"""
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request

alpa, mpirun, work, source = sys.argv[1:5]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
model = os.path.join(work, "gpt2-long")
PROMPT, TOKENS = "hello world", 12


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def post(port, body, stream=False):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=120)


def start(split):
    cmd = [mpirun, "-np", "2", alpa, "serve", "--backend", "mpi", "--model", model, "--port", "0",
           "--threads", "1"] + split
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    banner = p.stdout.readline()
    if "127.0.0.1:" not in banner:
        p.kill()
        fail(f"{' '.join(split)}: no banner: {banner!r} {p.stderr.read()[-500:]}")
    port = int(banner.split("127.0.0.1:")[1].split(";")[0])
    return p, port, banner


if subprocess.run(["/usr/bin/python3", os.path.join(source, "tests/serve/reference.py"), model,
                   "gpt2-long", "f32", "1"]).returncode != 0:
    fail("reference.py could not write the checkpoint")

one = subprocess.run([alpa, "generate", "--model", model, "--prompt", PROMPT, "--max-tokens",
                      str(TOKENS), "--temperature", "0", "--ignore-eos", "--logprobs", "1",
                      "--json"], capture_output=True, text=True)
if one.returncode != 0:
    fail(f"alpa generate: {one.stderr[-500:]}")
want = json.loads(one.stdout)["choices"][0]

# No split flag: every process a shard of a 1x2 mesh (the default under --backend mpi).
for split, metric in (([], "alpa_tensor_parallel_devices 2"),
                      (["--pipeline", "2"], "alpa_pipeline_stages 2")):
    p, port, banner = start(split)
    try:
        got = json.load(post(port, {"prompt": PROMPT, "max_tokens": TOKENS, "temperature": 0,
                                    "ignore_eos": True, "logprobs": 1}))["choices"][0]
        if got["text"] != want["text"]:
            fail(f"{split}: text {got['text']!r} vs one device {want['text']!r}")
        a, b = got["logprobs"]["token_logprobs"], want["logprobs"]["token_logprobs"]
        worst = max(abs(x - y) for x, y in zip(a, b))
        if len(a) != TOKENS or len(b) != TOKENS or worst > 1e-4:
            fail(f"{split}: log-probabilities differ from one device by {worst}")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()
        if metric not in metrics.decode():
            fail(f"{split}: /metrics lacks {metric!r}")
        print(f"{' '.join(split) or '(default)'}: {banner.strip()}; {TOKENS} tokens equal one device "
              f"(log-probabilities within {worst:.1e})")
        if not split:
            # Drain: SIGUSR1 after the first streamed token; the request still completes.
            r = post(port, {"prompt": "x", "max_tokens": 1500, "ignore_eos": True,
                            "stream": True})
            chunks, signalled = [], False
            for line in r:
                line = line.decode().strip()
                if not line.startswith("data: "):
                    continue
                chunks.append(line[6:])
                if not signalled:
                    p.send_signal(signal.SIGUSR1)
                    signalled = True
            if chunks[-1] != "[DONE]":
                fail(f"drain: the stream ended without [DONE] after {len(chunks)} chunks")
            last = json.loads(chunks[-2])["choices"][0]
            if last["finish_reason"] != "length":
                fail(f"drain: finish_reason {last['finish_reason']}")
            print(f"drain: SIGUSR1 to mpirun after the first token; {len(chunks) - 1} chunks, "
                  "finish_reason length")
        else:
            p.send_signal(signal.SIGUSR1)
        code = p.wait(timeout=60)
        err = p.stderr.read()
        if code != 0:
            fail(f"{split}: mpirun exited {code}: {err[-800:]}")
        drained = "draining 1 requests in flight" if not split else "draining"
        if drained not in err:
            fail(f"{split}: no {drained!r} message: {err[-500:]}")
        # Every process reads and holds its own device's part, not the whole model: a stage's
        # layers (the stages hold the model once between them), a shard of every layer.
        held = {int(m.group(1)): (int(m.group(2)), int(m.group(3)))
                for m in re.finditer(r"process (\d+) holds (\d+) of (\d+) parameters", err)}
        if sorted(held) != [0, 1] or any(h >= n for h, n in held.values()):
            fail(f"{split}: processes do not hold parts of the model: {held} {err[-500:]}")
        if split and sum(h for h, _ in held.values()) != held[0][1]:
            fail(f"{split}: the stages hold {held}, not the model once")
        print(f"{' '.join(split) or '(default)'}: parameters held per process "
              f"{[held[r][0] for r in (0, 1)]} of {held[0][1]}")
    finally:
        if p.poll() is None:
            p.kill()

bad = subprocess.run([mpirun, "-np", "2", alpa, "serve", "--backend", "mpi", "--model", model,
                      "--port", "0", "--mesh", "1x4"], capture_output=True, text=True, timeout=120)
if bad.returncode == 0 or "needs 4" not in bad.stderr:
    fail(f"2 processes for a 1x4 mesh: exit {bad.returncode}, {bad.stderr[-500:]!r}")
outside = subprocess.run([alpa, "serve", "--backend", "mpi", "--model", model, "--port", "0"],
                         capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items()
                              if not k.startswith(("OMPI_COMM", "PMIX", "OMPI_MCA_ess"))})
if outside.returncode == 0 or "not started by mpirun" not in outside.stderr:
    fail(f"--backend mpi outside mpirun: exit {outside.returncode}, {outside.stderr[-300:]!r}")
print("PASS: serve")
