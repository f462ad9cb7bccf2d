//! The taxi benchmark suite: the reference queries over `trips` (Parquet) and `zones` (CSV),
//! timed over hot runs.

use std::path::Path;
use std::time::{Duration, Instant};

use datafusion::prelude::SessionContext;
use serde::Serialize;

use crate::error::EngineError;
use crate::script::query;
use crate::tables::{TableSpec, register_table};

/// One benchmark query.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct BenchQuery {
    /// Short id (Q0a, Q1, …).
    pub id: &'static str,
    /// The SQL, exactly as every engine runs it.
    pub sql: &'static str,
}

/// The taxi suite (tables `trips` and `zones`).
pub const TAXI_QUERIES: [BenchQuery; 9] = [
    BenchQuery {
        id: "Q0a",
        sql: "SELECT count(*) FROM trips",
    },
    BenchQuery {
        id: "Q0b",
        sql: "SELECT count(*) FROM trips WHERE total_amount >= 0",
    },
    BenchQuery {
        id: "Q1",
        sql: "SELECT VendorID, count(*) FROM trips GROUP BY 1",
    },
    BenchQuery {
        id: "Q2",
        sql: "SELECT passenger_count, avg(total_amount) FROM trips GROUP BY 1",
    },
    BenchQuery {
        id: "Q3",
        sql: "SELECT passenger_count, extract(year FROM tpep_pickup_datetime) AS y, count(*) FROM trips GROUP BY 1, 2",
    },
    BenchQuery {
        id: "Q4",
        sql: "SELECT passenger_count, extract(year FROM tpep_pickup_datetime) AS y, CAST(round(trip_distance) AS INT) AS d, count(*) AS c FROM trips GROUP BY 1, 2, 3 ORDER BY y, c DESC",
    },
    BenchQuery {
        id: "Q5",
        sql: "SELECT count(*), sum(fare_amount) FROM trips WHERE tpep_pickup_datetime >= '2024-06-01' AND tpep_pickup_datetime < '2024-07-01' AND trip_distance > 5",
    },
    BenchQuery {
        id: "Q6",
        sql: "SELECT z.Borough, count(*), avg(t.tip_amount) FROM trips t JOIN zones z ON t.PULocationID = z.LocationID GROUP BY 1 ORDER BY 2 DESC",
    },
    BenchQuery {
        id: "Q7",
        sql: "SELECT PULocationID, DOLocationID, count(*) AS c, avg(total_amount) FROM trips GROUP BY 1, 2 ORDER BY c DESC LIMIT 10",
    },
];

/// Timings of one query.
#[derive(Debug, Clone, Serialize)]
pub struct QueryTiming {
    /// Query id.
    pub id: &'static str,
    /// Its SQL.
    pub sql: &'static str,
    /// Every hot run, in milliseconds.
    pub runs_ms: Vec<f64>,
    /// Median of the hot runs, in milliseconds.
    pub median_ms: f64,
    /// Fastest hot run, in milliseconds.
    pub min_ms: f64,
    /// Trip rows scanned per second per core at the median.
    pub rows_per_sec_per_core: f64,
    /// Rows in the result.
    pub result_rows: usize,
}

/// A whole benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// "cipherlake".
    pub engine: &'static str,
    /// cipherlake's version.
    pub version: &'static str,
    /// Rows in `trips`.
    pub trips_rows: u64,
    /// Threads (target partitions) used.
    pub threads: usize,
    /// Per-query timings in suite order.
    pub queries: Vec<QueryTiming>,
}

/// Registers `trips` (the Parquet files in `data`) and `zones` (`data/zones.csv`); returns the
/// number of trips.
pub async fn register_taxi(ctx: &SessionContext, data: &Path) -> Result<u64, EngineError> {
    let location = data.to_string_lossy().to_string();
    register_table(
        ctx,
        &TableSpec {
            name: "trips".into(),
            location: location.clone(),
        },
    )
    .await?;
    let zones = data.join("zones.csv").to_string_lossy().to_string();
    register_table(
        ctx,
        &TableSpec {
            name: "zones".into(),
            location: zones,
        },
    )
    .await?;
    let batches = query(ctx, "SELECT count(*) FROM trips").await?;
    let rows = batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
        })
        .map_or(0, |a| a.value(0));
    Ok(rows.max(0) as u64)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// Runs each query once to warm caches, then `runs` timed times; calls `on_query` after each.
pub async fn run_taxi_suite(
    ctx: &SessionContext,
    trips_rows: u64,
    runs: usize,
    selected: &[String],
    on_query: &mut dyn FnMut(&QueryTiming),
) -> Result<BenchReport, EngineError> {
    let threads = ctx.copied_config().target_partitions();
    let mut queries = Vec::new();
    for q in TAXI_QUERIES
        .iter()
        .filter(|q| selected.is_empty() || selected.iter().any(|s| s.eq_ignore_ascii_case(q.id)))
    {
        let warm = query(ctx, q.sql).await?;
        let result_rows = warm.iter().map(|b| b.num_rows()).sum();
        let mut runs_ms = Vec::with_capacity(runs);
        for _ in 0..runs.max(1) {
            let started = Instant::now();
            query(ctx, q.sql).await?;
            runs_ms.push(millis(started.elapsed()));
        }
        let mut sorted = runs_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let median_ms = sorted[sorted.len() / 2];
        let timing = QueryTiming {
            id: q.id,
            sql: q.sql,
            min_ms: sorted[0],
            median_ms,
            rows_per_sec_per_core: trips_rows as f64 / (median_ms / 1_000.0) / threads as f64,
            runs_ms,
            result_rows,
        };
        on_query(&timing);
        queries.push(timing);
    }
    Ok(BenchReport {
        engine: "cipherlake",
        version: env!("CARGO_PKG_VERSION"),
        trips_rows,
        threads,
        queries,
    })
}
