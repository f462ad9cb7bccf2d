"""Peer comparison for the taxi suite: cipherlake vs DuckDB vs datafusion-python.

Each engine runs every query once to warm up, then --runs timed times on the same files with the
same number of threads; the medians are compared. Results are checked for equality first
(order-insensitive, floats to a relative 1e-9; for Q7's LIMIT the tie at the cut-off is allowed
to differ).
"""

import argparse
import csv
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import datafusion
import duckdb


def cipherlake(*args):
    return subprocess.run([os.environ["CIPHERLAKE_BIN"], *args], check=True, capture_output=True, text=True).stdout


def value(v):
    if v is None or v == "":
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def normalise(rows):
    rows = [tuple(value(v) for v in row) for row in rows]
    key = lambda row: tuple((v is None, "" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)) for v in row)
    return sorted(rows, key=key)


def same(a, b):
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        if len(ra) != len(rb):
            return False
        for x, y in zip(ra, rb):
            if isinstance(x, float) and isinstance(y, float):
                if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9):
                    return False
            elif x != y:
                return False
    return True


def agree(qid, a, b):
    a = [tuple(value(v) for v in row) for row in a]
    b = [tuple(value(v) for v in row) for row in b]
    if qid == "Q7":  # LIMIT 10 by count: rows tied with the 10th count may legitimately differ
        counts = lambda rows: sorted((r[2] for r in rows), reverse=True)
        cut = min(counts(a)) if a else None
        strict = lambda rows: normalise([r for r in rows if r[2] != cut])
        return counts(a) == counts(b) and same(strict(a), strict(b))
    return same(normalise(a), normalise(b))


def timed(run, runs):
    run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()
    data = os.path.abspath(args.data)

    with tempfile.TemporaryDirectory() as tmp:
        report_path = os.path.join(tmp, "bench.json")
        cipherlake("bench", "taxi", "--data", data, "--runs", str(args.runs), "--threads", str(args.threads), "--json", report_path)
        report = json.load(open(report_path))
    queries = [(q["id"], q["sql"]) for q in report["queries"]]
    times = {"cipherlake": {q["id"]: q["median_ms"] for q in report["queries"]}, "duckdb": {}, "datafusion-python": {}}
    results = {"cipherlake": {}, "duckdb": {}, "datafusion-python": {}}
    tables = ["--table", f"trips={data}", "--table", f"zones={data}/zones.csv"]
    for qid, sql in queries:
        out = cipherlake("sql", *tables, "--format", "csv", sql)
        results["cipherlake"][qid] = list(csv.reader(io.StringIO(out)))[1:]

    duck = duckdb.connect()
    duck.execute(f"SET threads = {args.threads}")
    duck.execute(f"CREATE VIEW trips AS SELECT * FROM read_parquet('{data}/*.parquet')")
    duck.execute(f"CREATE VIEW zones AS SELECT * FROM read_csv('{data}/zones.csv', header = true)")
    for qid, sql in queries:
        results["duckdb"][qid] = duck.execute(sql).fetchall()
        times["duckdb"][qid] = timed(lambda: duck.execute(sql).fetchall(), args.runs)

    config = (
        datafusion.SessionConfig()
        .with_target_partitions(args.threads)
        .set("datafusion.sql_parser.enable_ident_normalization", "false")
    )
    ctx = datafusion.SessionContext(config)
    ctx.register_parquet("trips", data, file_extension=".parquet")
    ctx.register_csv("zones", f"{data}/zones.csv")
    for qid, sql in queries:
        table = ctx.sql(sql).to_arrow_table()
        results["datafusion-python"][qid] = [tuple(r.values()) for r in table.to_pylist()]
        times["datafusion-python"][qid] = timed(lambda: ctx.sql(sql).collect(), args.runs)

    mismatches = [
        (qid, peer)
        for qid, _ in queries
        for peer in ("duckdb", "datafusion-python")
        if not agree(qid, results["cipherlake"][qid], results[peer][qid])
    ]

    print(f"taxi suite, {report['trips_rows']} trips, {args.threads} thread(s), median of {args.runs} hot runs (ms)")
    print(f"{'query':<6}{'cipherlake':>12}{'duckdb':>10}{'df-python':>11}{'cl/duckdb':>11}{'cl/df-py':>10}")
    ratios = {"duckdb": [], "datafusion-python": []}
    for qid, _ in queries:
        c = times["cipherlake"][qid]
        d = times["duckdb"][qid]
        f = times["datafusion-python"][qid]
        ratios["duckdb"].append(c / d)
        ratios["datafusion-python"].append(c / f)
        print(f"{qid:<6}{c:>12.1f}{d:>10.1f}{f:>11.1f}{c / d:>11.2f}{c / f:>10.2f}")
    geo = lambda xs: math.exp(sum(map(math.log, xs)) / len(xs))
    print(f"{'geomean':<39}{geo(ratios['duckdb']):>11.2f}{geo(ratios['datafusion-python']):>10.2f}")
    if mismatches:
        for qid, peer in mismatches:
            print(f"RESULTS DIFFER: {qid} cipherlake vs {peer}", file=sys.stderr)
            print(f"  cipherlake: {normalise(results['cipherlake'][qid])[:5]}", file=sys.stderr)
            print(f"  {peer}: {normalise(results[peer][qid])[:5]}", file=sys.stderr)
        sys.exit(1)
    print("results: all engines agree on every query")


if __name__ == "__main__":
    main()
