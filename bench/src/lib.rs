//! spectra-bench: benchmarks and side-by-side comparisons (in progress).
