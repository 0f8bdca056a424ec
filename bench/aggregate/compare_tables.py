"""Row-by-row check of Spectra's daily tables against DuckDB's evaluation of their
definition on the same raw Parquet: the latest version of every line identity, then
`features/daily` by (outlet, SKU, date) and `features/outlet_daily` by (outlet, date),
including invoices, distinct SKUs and the distributor with the most value (smallest id
on a tie). Values rounded to 1e-6.

    python3 bench/aggregate/compare_tables.py DIR
"""
import duckdb,sys
root=sys.argv[1]
con=duckdb.connect(); con.execute("SET threads=2")
con.execute(f"""CREATE TEMP TABLE latest AS SELECT * FROM read_parquet('{root}/raw/invoices/*/*.parquet', hive_partitioning=false)
 QUALIFY row_number() OVER (PARTITION BY distributor_id, invoice_id, line_no ORDER BY kafka_timestamp_ms DESC, source_partition DESC, source_offset DESC, source_line DESC)=1""")
exp=con.execute("""
WITH d AS (SELECT outlet_id, invoice_date AS date, distributor_id, sum(net_value) v FROM latest GROUP BY ALL),
 best AS (SELECT outlet_id, date, distributor_id FROM d QUALIFY row_number() OVER (PARTITION BY outlet_id, date ORDER BY v DESC, distributor_id)=1)
SELECT l.outlet_id, l.invoice_date AS date, round(sum(net_value),6), round(sum(quantity),6), count(*), count(DISTINCT (l.distributor_id, invoice_id)),
  round(sum(CASE WHEN net_value<0 THEN net_value ELSE 0 END),6), count(DISTINCT sku_id), any_value(b.distributor_id)
FROM latest l JOIN best b ON b.outlet_id=l.outlet_id AND b.date=l.invoice_date GROUP BY ALL ORDER BY 1,2""").fetchall()
got=con.execute(f"""SELECT outlet_id, date::DATE, round(net_value,6), round(quantity,6), lines, invoices, round(returns_value,6), distinct_skus, distributor_id
 FROM read_parquet('{root}/features/outlet_daily/*/*.parquet', hive_partitioning=false) WHERE lines>0 ORDER BY 1,2""").fetchall()
print("outlet_daily rows", len(exp), len(got))
bad=[(a,b) for a,b in zip(exp,got) if a!=b]
print("outlet_daily mismatches", len(bad), bad[:5])
expd=con.execute("""SELECT outlet_id, sku_id, invoice_date, round(sum(net_value),6), round(sum(quantity),6), count(*), count(DISTINCT (distributor_id, invoice_id)), round(sum(CASE WHEN net_value<0 THEN net_value ELSE 0 END),6) FROM latest GROUP BY ALL ORDER BY 1,2,3""").fetchall()
gotd=con.execute(f"""SELECT outlet_id, sku_id, date::DATE, round(net_value,6), round(quantity,6), lines, invoices, round(returns_value,6) FROM read_parquet('{root}/features/daily/*/*.parquet', hive_partitioning=false) ORDER BY 1,2,3""").fetchall()
bad2 = [(a, b) for a, b in zip(expd, gotd) if a != b]
print("daily rows", len(expd), len(gotd), "mismatches", len(bad2), bad2[:3])
if bad or bad2 or len(exp) != len(got) or len(expd) != len(gotd):
    sys.exit(1)
