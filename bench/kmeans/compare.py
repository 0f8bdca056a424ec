#!/usr/bin/env python3
"""Side-by-side k-means benchmark: Spectra (`kmeans`), linfa (`kmeans_linfa`) and
scikit-learn `KMeans(init="k-means++", n_init=1, algorithm="lloyd")`.

Generates seeded blob mixtures under --workdir (default /tmp/spectra-kmeans-bench),
runs every tool as a child process timed the same way (fit time, excluding the file
load, reported by the tool itself), records each child's peak RSS with wait4, then
re-runs Spectra warm (--init = the cold fit's centroids) after moving 5% of the rows
to another blob. Prints a Markdown table.

    cargo build --release -p spectra-bench
    python3 bench/kmeans/compare.py
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    import sklearn  # noqa: F401
except ImportError:  # install what the script needs, then carry on
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "numpy", "scikit-learn"])
    import numpy as np

# (rows, columns, k, run linfa, run scikit-learn)
CASES = [
    (200_000, 48, 12, True, True),
    (1_000_000, 100, 20, False, True),
    (1_000_000, 200, 20, False, False),
]


def blobs(n, d, k, seed):
    """A mixture of k Gaussian blobs of unequal size and spread; returns X, labels, centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 0.5, size=(k, d))
    sizes = rng.dirichlet(np.full(k, 5.0))
    labels = rng.choice(k, size=n, p=sizes)
    spread = rng.uniform(0.7, 1.3, size=k)
    x = rng.standard_normal((n, d))
    x *= spread[labels, None]
    x += centres[labels]
    return x, labels, centres


def drift(x, labels, centres, share, seed):
    """Moves `share` of the rows to another blob (same offset from the new centre)."""
    rng = np.random.default_rng(seed + 1)
    k = centres.shape[0]
    moved = rng.choice(x.shape[0], size=int(share * x.shape[0]), replace=False)
    target = (labels[moved] + rng.integers(1, k, size=moved.size)) % k
    y = x.copy()
    y[moved] += centres[target] - centres[labels[moved]]
    return y


def run_child(cmd):
    """Runs a tool; returns its JSON line plus its peak RSS in MiB.

    The peak comes from GNU time's %M when /usr/bin/time exists: a child forked from
    this (large) Python process would otherwise report the parent's RSS at fork time.
    """
    with tempfile.NamedTemporaryFile(mode="r") as rss, tempfile.TemporaryFile() as err:
        timed = ["/usr/bin/time", "-f", "%M", "-o", rss.name] if os.path.exists("/usr/bin/time") else []
        proc = subprocess.Popen(timed + cmd, stdout=subprocess.PIPE, stderr=err)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed:\n{err.read().decode()}")
        kib = int(rss.read().strip().splitlines()[-1]) if timed else usage.ru_maxrss
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["peak_mib"] = round(kib / 1024)
    return result


def sklearn_child(args):
    """Child mode: fit scikit-learn and print the JSON line."""
    from sklearn.cluster import KMeans

    x = np.load(args.data)
    start = time.perf_counter()
    km = KMeans(n_clusters=args.k, init="k-means++", n_init=1, algorithm="lloyd",
                max_iter=args.max_iter, tol=args.tol, random_state=args.seed).fit(x)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "inertia": float(km.inertia_), "iterations": int(km.n_iter_)}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="/tmp/spectra-kmeans-bench")
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/spectra/target")
    p.add_argument("--bin-dir", default=os.path.join(target, "release"))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-iter", type=int, default=300)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--only", help="run only cases whose 'NxD' label contains this")
    p.add_argument("--sklearn-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--k", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.sklearn_child:
        return sklearn_child(args)

    os.makedirs(args.workdir, exist_ok=True)
    ours, linfa = (os.path.join(args.bin_dir, b) for b in ("kmeans", "kmeans_linfa"))
    common = ["--seed", str(args.seed), "--max-iter", str(args.max_iter), "--tol", str(args.tol)]
    rows = []
    for n, d, k, with_linfa, with_sklearn in CASES:
        label = f"{n}x{d}"
        if args.only and args.only not in label:
            continue
        x, labels, centres = blobs(n, d, k, args.seed)
        data = os.path.join(args.workdir, f"blobs_{label}.npy")
        drifted = os.path.join(args.workdir, f"blobs_{label}_drift.npy")
        cents = os.path.join(args.workdir, f"centroids_{label}.npy")
        np.save(data, x)
        np.save(drifted, drift(x, labels, centres, 0.05, args.seed))
        del x
        case = f"{n:,} × {d}, k={k}"
        print(f"# {case}", file=sys.stderr)
        cold = run_child([ours, data, "--k", str(k), "--save-centroids", cents] + common)
        rows.append((case, "spectra (cold)", cold))
        warm = run_child([ours, drifted, "--init", cents] + common)
        warm["speedup"] = cold["seconds"] / warm["seconds"]
        rows.append((case, "spectra (warm, 5% drifted)", warm))
        if with_linfa:
            rows.append((case, "linfa 0.8.1", run_child([linfa, data, "--k", str(k)] + common)))
        else:
            rows.append((case, "linfa 0.8.1", None))
        if with_sklearn:
            sk = run_child([sys.executable, __file__, "--sklearn-child", "--data", data,
                            "--k", str(k)] + common)
            rows.append((case, "scikit-learn", sk))
        for f in (data, drifted):
            os.remove(f)
    print_table(rows)


def print_table(rows):
    base = {}
    for case, tool, r in rows:
        if tool == "scikit-learn" and r:
            base[case] = r
    print("| data | tool | fit s | iterations | inertia | vs scikit-learn (time / inertia) | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---|---:|")
    for case, tool, r in rows:
        if r is None:
            print(f"| {case} | {tool} | skipped | | | | |")
            continue
        rel = ""
        sk = base.get(case)
        if sk and tool != "scikit-learn" and "warm" not in tool:
            rel = f"{r['seconds'] / sk['seconds']:.2f}× / {100 * (r['inertia'] / sk['inertia'] - 1):+.3f}%"
        if "speedup" in r:
            rel = f"{r['speedup']:.1f}× faster than cold"
        iters = r.get("iterations")
        print(f"| {case} | {tool} | {r['seconds']:.3f} | {iters if iters is not None else 'n/a'} | "
              f"{r['inertia']:.6e} | {rel} | {r['peak_mib']} |")


if __name__ == "__main__":
    main()
