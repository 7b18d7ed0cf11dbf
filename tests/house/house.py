#!/usr/bin/env python3
"""The house rules of docs/architecture.md, checked mechanically.

Usage:
  house.py deps MODULE_DEPS_TXT
      Each module's allowed includes (written by src/CMakeLists.txt, one line
      "name: dep dep ...") obey the layering rules below.
  house.py include CXX MODULE_INCLUDE_DIR
      A backwards include fails to compile: a header a module may not see is not found from
      its include root, while a header it may see is (the positive control).
  house.py format CLANG_FORMAT DIR...
      Every .h/.cc under DIR is as clang-format writes it (.clang-format at the root).
"""
import os
import subprocess
import sys
import tempfile

# Modules a module may never see, whatever CMake lists (the rules of docs/architecture.md).
FORBIDDEN = {
    'support': {'*'},
    'ir': {'*'},  # below everything: only ir and support
    'data': {'*'},  # tokenizers and datasets: only data and support
    'sharding': {'*'},  # the vocabulary: only sharding, ir, support
    'program': {'*'},  # the format: only program, sharding, ir, support
    'intra': {'spmd', 'runtime', 'program', 'sim', 'compile', 'cli'},
    'inter': {'spmd', 'runtime', 'program', 'sim', 'compile', 'cli'},
    'runtime': {'cluster', 'cost', 'intra', 'inter', 'plan', 'spmd', 'sim', 'compile', 'cli'},
    'sim': {'runtime', 'intra', 'inter', 'plan', 'spmd', 'compile', 'cli'},
    'spmd': {'runtime', 'sim', 'compile', 'cli'},
    'compile': {'runtime', 'cli'},
}
# For the '*' entries: the whole allowed set.
ONLY = {
    'support': {'support'},
    'ir': {'ir', 'support'},
    'data': {'data', 'support'},
    'sharding': {'sharding', 'ir', 'support'},
    'program': {'program', 'sharding', 'ir', 'support'},
}


def read_deps(path):
    deps = {}
    with open(path) as f:
        for line in f:
            if ':' not in line:
                continue
            name, rest = line.split(':', 1)
            deps[name.strip()] = set(rest.split())
    return deps


def check_deps(path):
    deps = read_deps(path)
    errors = []
    for name in list(FORBIDDEN) + ['runtime', 'sim']:
        if name not in deps:
            errors.append(f'module {name} missing from {path}')
    for name, allowed in deps.items():
        if name not in allowed:
            errors.append(f'module {name} cannot see its own headers')
        if name in ONLY:
            extra = allowed - ONLY[name]
            if extra:
                errors.append(f'{name} may include only {sorted(ONLY[name])}, sees {sorted(extra)}')
        elif name in FORBIDDEN:
            bad = allowed & FORBIDDEN[name]
            if bad:
                errors.append(f'{name} must not include {sorted(bad)}, sees them')
    for e in errors:
        print('house rule broken:', e)
    if not errors:
        print(f'{len(deps)} modules obey the layering rules')
    return 1 if errors else 0


def compiles(cxx, root, header):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, 'probe.cc')
        with open(src, 'w') as f:
            f.write(f'#include "alpa/{header}"\n')
        r = subprocess.run([cxx, '-std=c++20', '-fsyntax-only', '-I', root, src],
                           capture_output=True, text=True)
        return r.returncode == 0, r.stderr


def check_include(cxx, include_dir):
    # (module, header, should it compile): headers with no outside dependencies.
    probes = [
        ('ir', 'ir/graph.h', True),
        ('ir', 'sharding/mesh.h', False),
        ('sharding', 'sharding/mesh.h', True),
        ('sharding', 'cost/mesh_links.h', False),
        ('program', 'program/program.h', True),
        ('program', 'runtime/tensor.h', False),
        ('intra', 'sharding/sharding_spec.h', True),
        ('intra', 'runtime/tensor.h', False),
        ('intra', 'spmd/lower.h', False),
        ('runtime', 'program/program.h', True),
        ('runtime', 'cost/compute.h', False),
        ('runtime', 'intra/strategy.h', False),
        ('sim', 'program/program.h', True),
        ('sim', 'runtime/executor.h', False),
    ]
    failures = 0
    for module, header, expect in probes:
        ok, err = compiles(cxx, os.path.join(include_dir, module), header)
        if ok != expect:
            failures += 1
            why = 'compiled' if ok else 'failed:\n' + err[:600]
            print(f'{module} including alpa/{header}: expected to '
                  f'{"compile" if expect else "fail"}, {why}')
        elif not expect and 'No such file' not in err and 'not found' not in err:
            failures += 1
            print(f'{module} including alpa/{header} failed for another reason:\n{err[:600]}')
        else:
            print(f'{module:9} alpa/{header:28} {"compiles" if ok else "refused (not found)"}')
    return 1 if failures else 0


def check_format(clang_format, dirs):
    files = []
    for d in dirs:
        for base, _, names in os.walk(d):
            files += [os.path.join(base, n) for n in sorted(names) if n.endswith(('.h', '.cc'))]
    r = subprocess.run([clang_format, '--dry-run', '--Werror'] + files,
                       capture_output=True, text=True)
    if r.returncode != 0:
        bad = sorted({line.split(':')[0] for line in r.stderr.splitlines() if 'error:' in line})
        print(r.stderr[:4000])
        print(f'{len(bad)} files differ from clang-format; run: clang-format -i ' + ' '.join(bad))
        return 1
    print(f'{len(files)} files formatted')
    return 0


def main(argv):
    if len(argv) >= 2 and argv[0] == 'deps':
        return check_deps(argv[1])
    if len(argv) == 3 and argv[0] == 'include':
        return check_include(argv[1], argv[2])
    if len(argv) >= 3 and argv[0] == 'format':
        return check_format(argv[1], argv[2:])
    print(__doc__)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
