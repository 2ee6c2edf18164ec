#!/usr/bin/env python3
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
"""Which daemon file calls which, from the object files' symbol tables.

usage: tools/callgraph.py [--check] BUILD_DIR MODULE...

Prints one line per file: the files whose functions it calls. With --check, exits 1
if any two files call each other, directly or around a longer circle (calls must go
one way: lower layers never call back up). Calls through function pointers (a
relay's teardown hook) do not show in symbol tables, which is the point of them.
"""
import subprocess
import sys


def symbols(obj, flags):
    out = subprocess.run(["nm", *flags, obj], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def graph(build, modules):
    defined = {m: symbols(f"{build}/{m}.o", ["--defined-only", "-g"]) for m in modules}
    owner = {s: m for m, syms in defined.items() for s in syms}
    return {m: sorted({owner[s] for s in symbols(f"{build}/{m}.o", ["-u"])
                       if s in owner and owner[s] != m}) for m in modules}


def cycles(edges):
    """Strongly connected components with more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def main():
    args = sys.argv[1:]
    check = args[:1] == ["--check"]
    if check:
        args = args[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    edges = graph(args[0], args[1:])
    for m in sorted(edges):
        print(f"{m:14} -> {' '.join(edges[m]) or '-'}")
    circles = cycles(edges)
    for c in circles:
        print(f"circular calls between: {' '.join(c)}", file=sys.stderr)
    if check and circles:
        sys.exit("callgraph: files call each other; move the shared part down a layer "
                 "or report through a return code")


if __name__ == "__main__":
    main()
