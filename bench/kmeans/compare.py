#!/usr/bin/env python3
"""Side-by-side k-means benchmark: Spectra (`kmeans`), scikit-learn
`KMeans(init="k-means++", n_init=1, algorithm="lloyd")`, scikit-learn-intelex (the
same estimator on oneDAL), FAISS (`faiss.Kmeans` on all points, 25 and 100
iterations) and linfa (`kmeans_linfa`, small case only).

For each seed (default 1, 2, 3) it generates a seeded blob mixture under --workdir
(default /tmp/spectra-kmeans-bench), runs every tool as a child process timed the
same way (fit time reported by the tool itself, excluding the file load; for Spectra
and FAISS including the conversion to float32), records each child's peak RSS, then
re-runs Spectra warm (--init = the cold fit's centroids) after moving 5% of the rows
to another blob. With --repeat N every tool runs N times per seed, each a process of
its own, and the median time is kept. Inertia is recomputed in float64 from each tool's labels and
centroids. Prints a Markdown table of medians over the seeds.

    cargo build --release -p spectra-bench
    python3 bench/kmeans/compare.py            # --only 200000x48, --seeds 1,2,3, --repeat 3
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

PEERS = ["numpy", "scikit-learn", "scikit-learn-intelex", "faiss-cpu"]
try:
    import numpy as np
    import sklearn  # noqa: F401
    import sklearnex  # noqa: F401
    import faiss  # noqa: F401
except ImportError:  # install what the script needs, then carry on
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q"] + PEERS)
    import numpy as np

# (rows, columns, k, run linfa, run the Python peers)
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


def run_median(cmd, repeat):
    """Runs a tool `repeat` times, each a process of its own; returns the run of the
    median fit time (the fits are deterministic: the same result each time) with
    the largest peak RSS. One run's time moves by a third on a busy machine."""
    runs = sorted((run_child(cmd) for _ in range(repeat)), key=lambda r: r["seconds"])
    result = dict(runs[len(runs) // 2])
    result["peak_mib"] = max(r["peak_mib"] for r in runs)
    result["runs"] = [r["seconds"] for r in runs]
    return result


def inertia_of(x, centres, labels):
    """Sum of squared distances in float64, in slices to bound memory."""
    total = 0.0
    for a in range(0, x.shape[0], 100_000):
        diff = x[a:a + 100_000] - centres[labels[a:a + 100_000]]
        total += float(np.einsum("ij,ij->", diff, diff))
    return total


def peer_child(args):
    """Child mode: fit one Python peer and print the JSON line."""
    x = np.load(args.data)
    if args.peer in ("scikit-learn", "scikit-learn-intelex"):
        if args.peer == "scikit-learn":
            from sklearn.cluster import KMeans
        else:
            from sklearnex.cluster import KMeans
        start = time.perf_counter()
        km = KMeans(n_clusters=args.k, init="k-means++", n_init=1, algorithm="lloyd",
                    max_iter=args.max_iter, tol=args.tol, random_state=args.seed).fit(x)
        seconds = time.perf_counter() - start
        centres, labels, iterations = km.cluster_centers_, km.labels_, int(km.n_iter_)
    else:  # faiss-N: N iterations on all points (no subsampling), then the assignment
        import faiss
        niter = int(args.peer.split("-")[1])
        start = time.perf_counter()
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        km = faiss.Kmeans(x.shape[1], args.k, niter=niter, seed=args.seed,
                          max_points_per_centroid=x.shape[0], verbose=False)
        km.train(x32)
        _, labels = km.index.search(x32, 1)
        seconds = time.perf_counter() - start
        centres, labels, iterations = km.centroids.astype(np.float64), labels[:, 0], niter
    print(json.dumps({"seconds": seconds, "inertia": inertia_of(x, centres, labels),
                      "iterations": iterations}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="/tmp/spectra-kmeans-bench")
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/spectra/target")
    p.add_argument("--bin-dir", default=os.path.join(target, "release"))
    p.add_argument("--seeds", default="1,2,3", help="comma-separated; data and k-means++ seed")
    p.add_argument("--max-iter", type=int, default=300)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--only", help="run only cases whose 'NxD' label contains this")
    p.add_argument("--repeat", type=int, default=1,
                   help="processes per tool and seed; the median fit time is kept")
    p.add_argument("--peer-child", dest="peer", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--k", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.peer:
        return peer_child(args)

    os.makedirs(args.workdir, exist_ok=True)
    ours, linfa = (os.path.join(args.bin_dir, b) for b in ("kmeans", "kmeans_linfa"))
    seeds = [int(v) for v in args.seeds.split(",")]
    results = {}  # (case, tool) -> [result per seed]
    order = []
    for n, d, k, with_linfa, with_peers in CASES:
        label = f"{n}x{d}"
        if args.only and args.only not in label:
            continue
        case = f"{n:,} × {d}, k={k}"
        for seed in seeds:
            x, labels, centres = blobs(n, d, k, seed)
            data = os.path.join(args.workdir, f"blobs_{label}.npy")
            drifted = os.path.join(args.workdir, f"blobs_{label}_drift.npy")
            cents = os.path.join(args.workdir, f"centroids_{label}.npy")
            np.save(data, x)
            np.save(drifted, drift(x, labels, centres, 0.05, seed))
            del x
            # The files' write-back would otherwise run beside the first fits.
            os.sync()
            print(f"# {case}, seed {seed}", file=sys.stderr)
            common = ["--seed", str(seed), "--max-iter", str(args.max_iter), "--tol", str(args.tol)]
            runs = []
            rep = args.repeat
            cold = run_median([ours, data, "--k", str(k), "--save-centroids", cents] + common, rep)
            runs.append(("spectra (cold)", cold))
            warm = run_median([ours, drifted, "--init", cents] + common, rep)
            warm["speedup"] = cold["seconds"] / warm["seconds"]
            print(f"#   cold {cold['iterations']} it. {cold['runs']} s, warm {warm['iterations']} it. "
                  f"{warm['runs']} s: {warm['speedup']:.1f}×", file=sys.stderr)
            runs.append(("spectra (warm, 5% drifted)", warm))
            if with_linfa:
                runs.append(("linfa 0.8.1", run_median([linfa, data, "--k", str(k)] + common, rep)))
            if with_peers:
                for peer in ("scikit-learn", "scikit-learn-intelex", "faiss-25", "faiss-100"):
                    runs.append((peer, run_median([sys.executable, __file__, "--peer-child", peer,
                                                   "--data", data, "--k", str(k)] + common, rep)))
            # Inertia relative to the best peer of this seed (Spectra's cold fit when
            # there is no peer).
            cold_runs = [r for t, r in runs if "warm" not in t]
            best = min(r["inertia"] for t, r in runs if "spectra" not in t) if with_peers or with_linfa \
                else min(r["inertia"] for r in cold_runs)
            for tool, r in runs:
                r["vs_best"] = r["inertia"] / best - 1
                if (case, tool) not in results:
                    results[(case, tool)] = []
                    order.append((case, tool))
                results[(case, tool)].append(r)
            for f in (data, drifted):
                os.remove(f)
    print_table(order, results, seeds, args.repeat)


def print_table(order, results, seeds, repeat):
    med = statistics.median
    each = f"; each fit time the median of {repeat} processes" if repeat > 1 else ""
    print(f"Medians over seeds {', '.join(map(str, seeds))} (min–max in brackets{each}).\n")
    print("| data | tool | fit s | iterations | inertia vs best peer | vs spectra (cold) time | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for case, tool in order:
        rs = results[(case, tool)]
        secs = [r["seconds"] for r in rs]
        iters = [r["iterations"] for r in rs if r.get("iterations") is not None]
        rel = [100 * r["vs_best"] for r in rs]
        ours = results.get((case, "spectra (cold)"))
        if "warm" in tool:
            versus = f"{med([r['speedup'] for r in rs]):.1f}× faster than cold (min {min(r['speedup'] for r in rs):.1f}×)"
        elif tool == "spectra (cold)" or not ours:
            versus = ""
        else:
            versus = f"{med(secs) / med([r['seconds'] for r in ours]):.2f}×"
        print(f"| {case} | {tool} | {med(secs):.3f} ({min(secs):.3f}–{max(secs):.3f}) | "
              f"{med(iters) if iters else 'n/a'} | {med(rel):+.3f}% (max {max(rel):+.3f}%) | {versus} | "
              f"{max(r['peak_mib'] for r in rs)} |")


if __name__ == "__main__":
    main()
