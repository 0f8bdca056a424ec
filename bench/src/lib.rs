//! Spectra's benchmarks, run in release with fixed seeds and compared side by side with
//! their peers in one run: `ingest_bench` (ingest against a bare rdkafka consumer),
//! `aggregate_bench` (the roll-up against DuckDB, driven by `bench/aggregate/run.sh`),
//! `kmeans` and `kmeans_linfa` (against scikit-learn, driven by
//! `bench/kmeans/compare.py`), `movement_bench` (the change detector against plain
//! re-clustering on planted drift; [`movement`]). Results and the commands that produced them are in
//! `bench/*/RESULTS.md`.

pub mod movement;
