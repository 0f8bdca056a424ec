#!/usr/bin/env python3
"""DuckDB computing the aggregator's daily roll-up from the same raw Parquet.

Same semantics as `spectra aggregate`: every line identity (distributor_id, invoice_id,
line_no) counts once, its latest version by (kafka_timestamp_ms, source_partition,
source_offset, source_line) winning wherever its invoice date lies; then the daily
(outlet x SKU x day) and outlet-daily tables, written as date-partitioned Parquet.
Prints one JSON line with the time, then checks the result against Spectra's
features/daily tables in the same directory (per-day rows, lines, invoices, value).

usage: duckdb_rollup.py DIR [--threads N]
"""
import json
import os
import shutil
import sys
import time

import duckdb


def main() -> None:
    root = sys.argv[1]
    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 2
    out = f"{root}/duckdb"
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    started = time.perf_counter()
    con.execute(f"""
        CREATE TEMP TABLE lbi AS
        WITH latest AS (
          SELECT * FROM read_parquet('{root}/raw/invoices/*/*.parquet', hive_partitioning = false)
          QUALIFY row_number() OVER (
            PARTITION BY distributor_id, invoice_id, line_no
            ORDER BY kafka_timestamp_ms DESC, source_partition DESC, source_offset DESC,
                     source_line DESC) = 1)
        SELECT outlet_id, sku_id, invoice_date AS date, distributor_id, invoice_id,
               sum(net_value) AS net_value, sum(quantity) AS quantity, count(*) AS lines,
               sum(CASE WHEN net_value < 0 THEN net_value ELSE 0 END) AS returns_value
        FROM latest GROUP BY ALL""")
    con.execute(f"""
        COPY (SELECT outlet_id, sku_id, date, sum(net_value) AS net_value,
                     sum(quantity) AS quantity, sum(lines)::BIGINT AS lines,
                     count(*) AS invoices, sum(returns_value) AS returns_value
              FROM lbi GROUP BY ALL)
        TO '{out}/daily' (FORMAT parquet, PARTITION_BY (date))""")
    con.execute(f"""
        COPY (SELECT i.outlet_id, i.date, sum(i.net_value) AS net_value,
                     sum(i.quantity) AS quantity, sum(i.lines)::BIGINT AS lines,
                     count(*) AS invoices, sum(i.returns_value) AS returns_value,
                     max(s.distinct_skus) AS distinct_skus
              FROM (SELECT outlet_id, date, distributor_id, invoice_id,
                           sum(net_value) AS net_value, sum(quantity) AS quantity,
                           sum(lines) AS lines, sum(returns_value) AS returns_value
                    FROM lbi GROUP BY ALL) i
              JOIN (SELECT outlet_id, date, count(DISTINCT sku_id) AS distinct_skus
                    FROM lbi GROUP BY ALL) s USING (outlet_id, date)
              GROUP BY i.outlet_id, i.date)
        TO '{out}/outlet_daily' (FORMAT parquet, PARTITION_BY (date))""")
    seconds = time.perf_counter() - started

    per_day = """SELECT date::DATE AS date, count(*) AS rows, sum(lines) AS lines,
                        sum(invoices) AS invoices, round(sum(net_value), 4) AS value
                 FROM read_parquet('{}', hive_partitioning = {}) GROUP BY 1 ORDER BY 1"""
    ours = con.execute(per_day.format(f"{root}/features/daily/*/*.parquet", "false")).fetchall()
    theirs = con.execute(per_day.format(f"{out}/daily/*/*.parquet", "true")).fetchall()
    agree = ours == theirs
    lines = con.execute(f"SELECT sum(lines) FROM read_parquet('{out}/daily/*/*.parquet')").fetchone()[0]
    print(json.dumps({"step": "duckdb", "seconds": seconds, "threads": threads,
                      "duckdb": duckdb.__version__, "days": len(theirs),
                      "distinct_lines": int(lines), "daily_tables_agree": agree}))
    if not agree:
        diff = [(a, b) for a, b in zip(ours, theirs) if a != b][:5]
        print(f"daily tables differ (spectra, duckdb): {diff} ({len(ours)} vs {len(theirs)} days)",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
