#!/usr/bin/env python3
"""Lengths of the functions defined in C++ sources, from the line where a definition's
signature begins to its closing brace.

Usage: tools/function_lengths.py [--max N] [--top K] DIR_OR_FILE...
Lists the K longest functions; with --max, exits 1 (naming them) if any is longer than N lines.
The house rule (tests/house) is --max 149 over src/: every function under 150 lines..

A small lexer, not a compiler: it skips comments, string and character literals, and takes a
brace block to be a function body when the text before it, at namespace or class scope, ends
in a parameter list (optionally followed by const, noexcept, override, a trailing return type
or a constructor's initialisers).
"""
import argparse
import os
import re
import sys

CONTROL = re.compile(r'\b(if|for|while|switch|catch|do|else|return)\b\s*$|^\s*(if|for|while|switch|catch)\b')
TYPE = re.compile(r'(^|[\s;}])(namespace|class|struct|union|enum)\b[^()]*$')


def strip(text):
    """The text with comments and literals blanked, newlines kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i))
            i = j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif c == 'R' and text.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', text[i:])
            end = text.find(')' + m.group(1) + '"', i) if m else -1
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        elif c in '"\'':
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            j = min(n, j + 1)
            out.append(re.sub(r'[^\n]', ' ', text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return ''.join(out)


def functions(path):
    text = strip(open(path, encoding='utf-8', errors='replace').read())
    # Preprocessor lines carry no braces that matter.
    text = re.sub(r'(?m)^\s*#.*$', lambda m: ' ' * len(m.group(0)), text)
    scopes = []  # 'ns', 'type', 'fn', 'block'
    header_start = 0
    out = []
    starts = []  # per open brace: (kind, start offset)
    for i, c in enumerate(text):
        if c in ';':
            header_start = i + 1
        elif c == '{':
            header = text[header_start:i]
            outer = scopes[-1] if scopes else 'ns'
            kind = 'block'
            h = ' '.join(header.split())
            if outer in ('ns', 'type'):
                if TYPE.search(h) or h.startswith('extern "C"') or h == '':
                    kind = 'ns' if ('namespace' in h or h.startswith('extern')) else 'type'
                elif re.search(r'\)\s*(const|noexcept|override|final|mutable|&|&&|\s)*'
                               r'(->\s*[\w:<>,\s*&]+)?\s*$', h) or re.search(r'\)\s*:\s*\w', h):
                    if not CONTROL.search(h):
                        kind = 'fn'
                elif '=' in h or h.endswith(']'):
                    kind = 'block'  # an initialiser list or a table
                else:
                    kind = 'type'
            scopes.append(kind)
            first = len(header) - len(header.lstrip())
            starts.append(header_start + first)
            header_start = i + 1
        elif c == '}':
            if not scopes:
                continue
            kind = scopes.pop()
            start = starts.pop()
            if kind == 'fn':
                line0 = text.count('\n', 0, start) + 1
                line1 = text.count('\n', 0, i) + 1
                name = ' '.join(text[start:text.find('(', start)].split()[-1:])
                out.append((line1 - line0 + 1, path, line0, name))
            header_start = i + 1
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('paths', nargs='+')
    ap.add_argument('--max', type=int, default=0)
    ap.add_argument('--top', type=int, default=10)
    args = ap.parse_args()
    found = []
    for p in args.paths:
        files = [p] if os.path.isfile(p) else [
            os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs
            if f.endswith(('.cc', '.h', '.cpp', '.hpp'))]
        for f in sorted(files):
            found += functions(f)
    found.sort(reverse=True)
    for n, path, line, name in found[:args.top]:
        print(f'{n:5d}  {path}:{line}  {name}')
    if args.max:
        over = [f for f in found if f[0] > args.max]
        if over:
            print(f'{len(over)} function(s) longer than {args.max} lines')
            return 1
        print(f'every function is at most {args.max} lines (longest {found[0][0] if found else 0})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
