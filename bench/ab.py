#!/usr/bin/env python3
"""Two builds of alpa side by side: the same commands, interleaved (A B A B ...), so drift of a
shared machine hits both alike. Prints, per case, the median of each build and the median of
the per-pair ratios A/B, and checks that both builds print the same results.

Usage: bench/ab.py A_BINARY B_BINARY [--runs N] [--warmups N] [--cases plan,train,paper]

Planning cases time the whole command (wall clock); training cases read the median step time
each run reports (`--json` step_time_s), which leaves start-up and compiling out. Results
(plans, losses) must agree between the builds: a plan's JSON without its timing fields, a
training run's losses bit for bit.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

from benchlib import cpu_name

PLAN = [
    ('plan GPT-1.3B mesh 2x4', ['plan', '--model', 'gpt', '--size', '1.3b', '--batch', '16',
                                '--cluster', 'p3.16xlarge', '--mesh', '2x4', '--json']),
    ('plan GPT-1.3B 4 GPUs', ['plan', '--model', 'gpt', '--size', '1.3b', '--batch', '1024',
                              '--cluster', 'p3.16xlarge', '--gpus', '4', '--json']),
]
# The paper's larger pipeline rows (minutes each with older builds): `--cases paper --runs 1
# --warmups 0`.
PAPER = [
    (f'plan {m.upper()}-{size.upper()} {gpus} GPUs',
     ['plan', '--model', m, '--size', size, '--batch', str(batch), '--cluster', 'p3.16xlarge',
      '--gpus', str(gpus), '--json'])
    for m, size, gpus, batch in [('gpt', '6.7b', 16, 1024), ('gpt', '15b', 32, 1024),
                                 ('gpt', '39b', 64, 1024), ('moe', '10b', 16, 1024),
                                 ('wresnet', '2b', 8, 1536)]
]
TRAIN = [
    ('train GPT-small 1 device', ['train', '--model', 'gpt', '--size', 'small', '--steps', '8',
                                  '--threads', '2', '--json']),
    ('train GPT-tiny mesh 2x2', ['train', '--model', 'gpt', '--size', 'tiny', '--mesh', '2x2',
                                 '--steps', '20', '--json']),
    ('train GPT-tiny pipeline 4', ['train', '--model', 'gpt', '--size', 'tiny', '--devices', '4',
                                   '--micro-batches', '4', '--steps', '20', '--json']),
]
TIMING = ('time', '_s', 'seconds', 'phases', 'planning', 'step_time', 'tokens_per_s',
          'gflops', 'samples_per_s', 'tflops', 'out', 'command')


def strip_timing(x):
    if isinstance(x, dict):
        return {k: strip_timing(v) for k, v in x.items()
                if not any(t in k for t in TIMING) or k in ('predicted_step_time_s',
                                                            'simulated_step_time_s')}
    if isinstance(x, list):
        return [strip_timing(v) for v in x]
    return x


def run(binary, args, train):
    t0 = time.monotonic()
    r = subprocess.run([binary] + args, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit(f'{binary} {" ".join(args)} failed:\n{r.stderr}')
    j = json.loads(r.stdout)
    if train:
        return j['step_time_s'], j['losses']
    return wall, strip_timing(j)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('a')
    ap.add_argument('b')
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--warmups', type=int, default=1)
    ap.add_argument('--cases', default='plan,train')
    o = ap.parse_args()
    kinds = o.cases.split(',')
    cases = ([(n, c, False) for n, c in PLAN] if 'plan' in kinds else []) + \
            ([(n, c, False) for n, c in PAPER] if 'paper' in kinds else []) + \
            ([(n, c, True) for n, c in TRAIN] if 'train' in kinds else [])
    print(f'# {cpu_name()}; A = {o.a}, B = {o.b}; {o.runs} interleaved runs each')
    print(f'{"case":28} {"measure":10} {"A median":>10} {"B median":>10} {"A/B":>7} '
          f'{"A/B min..max":>14}  same results')
    for name, args, train in cases:
        for _ in range(o.warmups):
            run(o.a, args, train)  # warm-up (page cache, CPU frequency)
        ta, tb, ratios, same = [], [], [], True
        for _ in range(o.runs):
            a, ra = run(o.a, args, train)
            b, rb = run(o.b, args, train)
            ta.append(a)
            tb.append(b)
            ratios.append(a / b)
            same = same and ra == rb
        unit = 'step' if train else 'wall'
        print(f'{name:28} {unit:10} {statistics.median(ta):10.4f} {statistics.median(tb):10.4f} '
              f'{statistics.median(ratios):7.3f} {min(ratios):6.3f}..{max(ratios):<6.3f}  '
              f'{"yes" if same else "NO"}')
        sys.stdout.flush()


if __name__ == '__main__':
    main()
