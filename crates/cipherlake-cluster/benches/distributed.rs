//! The taxi suite single-process and on 1, 2 and 3 loopback workers, plaintext and
//! confidential, in one run.
//!
//! - plaintext: plaintext Parquet; datafusion-distributed's own workers and channels (gRPC over
//!   plain HTTP/2), no KMS;
//! - confidential: the same trips as encrypted Parquet (footer key, money and location column
//!   keys, local KMS); cipherlake workers over mTLS (TLS 1.3, CAS-issued certificates), each
//!   unwrapping keys through its own KMS client, encrypted spill.
//!
//! Every worker runs on its own 2-thread runtime, as if it were a process; the driver uses the
//! bench's runtime. Configurations alternate within each round so machine noise spreads over
//! all of them; a query's time is the best of its per-round medians.
//!
//! `cargo bench -p cipherlake-cluster --bench distributed -- [--rows 5M] [--runs 3]
//! [--rounds 2] [--data DIR]`

#[path = "../tests/cluster/support.rs"]
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cipherlake_cluster::driver::distributed_session;
use cipherlake_cluster::worker::WorkerHandle;
use cipherlake_crypto::key_material::KmsClient;
use cipherlake_engine::bench::{TAXI_QUERIES, register_taxi, run_taxi_suite};
use cipherlake_engine::datagen::{TaxiEncryption, TaxiOptions, generate_taxi, write_zones};
use cipherlake_engine::encryption::{EncryptionSpec, KmsSpec, parse_column_keys};
use cipherlake_engine::session::{SessionOptions, build_runtime, new_session, session_builder};
use datafusion::prelude::SessionContext;
use datafusion_distributed::{DistributedExt, SessionStateBuilderExt, Worker};
use support::PolicyCa;
use tokio::runtime::Runtime;
use url::Url;

const MONEY: &str = "fare_amount,extra,mta_tax,tip_amount,tolls_amount,improvement_surcharge,total_amount,congestion_surcharge,Airport_fee";
const MAX_WORKERS: usize = 3;

struct Options {
    rows: u64,
    runs: usize,
    rounds: usize,
    data: PathBuf,
}

fn options() -> Options {
    let mut options = Options {
        rows: 5_000_000,
        runs: 3,
        rounds: 2,
        data: std::env::temp_dir().join("cipherlake-bench-distributed"),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--rows" => options.rows = parse_count(&value),
            "--runs" => options.runs = value.parse().expect("--runs N"),
            "--rounds" => options.rounds = value.parse().expect("--rounds N"),
            "--data" => options.data = PathBuf::from(value),
            _ => {
                i += 1; // `cargo bench` passes --bench
                continue;
            }
        }
        i += 2;
    }
    options
}

fn parse_count(text: &str) -> u64 {
    let (digits, scale) = match text.chars().last() {
        Some('k' | 'K') => (&text[..text.len() - 1], 1_000),
        Some('m' | 'M') => (&text[..text.len() - 1], 1_000_000),
        _ => (text, 1),
    };
    digits.parse::<u64>().expect("--rows N[k|M]") * scale
}

/// Generates the plaintext and encrypted datasets (same seed: the same trips) once.
fn datasets(options: &Options) -> (PathBuf, PathBuf, Arc<dyn KmsClient>) {
    let dir = options.data.join(options.rows.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("keys");
    if !keys.exists() {
        // Fixed benchmark keys (the data is synthetic).
        std::fs::write(
            &keys,
            "taxi-footer:AAECAwQFBgcICQoLDA0ODw==\n\
             taxi-money:EBESExQVFhcYGRobHB0eHw==\n\
             taxi-location:ICEiIyQlJicoKSorLC0uLw==\n",
        )
        .unwrap();
    }
    let kms = KmsSpec::Local(keys).open().unwrap();
    let (plain, encrypted) = (dir.join("plain"), dir.join("encrypted"));
    for (out, encryption) in [
        (&plain, None),
        (
            &encrypted,
            Some(TaxiEncryption {
                kms: Arc::clone(&kms),
                spec: {
                    let mut spec = EncryptionSpec::new("taxi-footer");
                    spec.column_keys = parse_column_keys(&format!(
                        "taxi-money:{MONEY};taxi-location:PULocationID,DOLocationID"
                    ))
                    .unwrap();
                    spec
                },
            }),
        ),
    ] {
        if out.join("zones.csv").exists() {
            continue;
        }
        let taxi = TaxiOptions {
            rows: options.rows,
            files: Some(12),
            seed: 1,
            threads: 2,
            overwrite: true,
            encryption,
        };
        generate_taxi(out, &taxi, &|_| {}).unwrap();
        write_zones(&out.join("zones.csv")).unwrap();
    }
    (plain, encrypted, kms)
}

/// A worker's own runtime, as if it were a process.
fn worker_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// datafusion-distributed's plain worker (no TLS, no KMS) on its own runtime.
fn plain_worker() -> (Runtime, Url) {
    let runtime = worker_runtime();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let worker = Worker::default().with_runtime_env(build_runtime(&SessionOptions::default()));
    // TCP_NODELAY as on cipherlake's workers: a custom incoming stream does not get the
    // builder's TCP settings, and Nagle's algorithm would add ~40 ms to small replies.
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |tcp| {
            let tcp = tcp?;
            tcp.set_nodelay(true)?;
            Ok::<_, std::io::Error>(tcp)
        },
    );
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(worker.into_worker_server())
            .serve_with_incoming(incoming),
    );
    (
        runtime,
        Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
    )
}

/// A cipherlake worker (mTLS, its own KMS client) on its own runtime.
fn confidential_worker(ca: &PolicyCa, kms: &Arc<dyn KmsClient>) -> (Runtime, WorkerHandle) {
    let runtime = worker_runtime();
    let handle = {
        let _guard = runtime.enter();
        support::start_worker_with(ca.identity("worker"), Some(Arc::clone(kms)), None, None)
    };
    (runtime, handle)
}

fn plain_session(workers: &[Url]) -> SessionContext {
    let state = session_builder(&SessionOptions::default())
        .with_distributed_worker_resolver(cipherlake_cluster::driver::WorkerList::new(
            workers.to_vec(),
        ))
        .with_distributed_planner()
        .build();
    SessionContext::new_with_state(state)
}

fn geomean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), v| (s + v.ln(), n + 1));
    (sum / n.max(1) as f64).exp()
}

fn main() {
    let options = options();
    let (plain, encrypted, kms) = datasets(&options);
    let driver_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let plain_workers: Vec<(Runtime, Url)> = (0..MAX_WORKERS).map(|_| plain_worker()).collect();
    let ca = PolicyCa::new("bench");
    let confidential_workers: Vec<(Runtime, WorkerHandle)> = (0..MAX_WORKERS)
        .map(|_| confidential_worker(&ca, &kms))
        .collect();

    // (label, session, data)
    let mut configs: Vec<(String, SessionContext, &Path)> = vec![
        (
            "single plaintext".into(),
            new_session(&SessionOptions::default()),
            &plain,
        ),
        (
            "single confidential".into(),
            new_session(&SessionOptions {
                kms: Some(Arc::clone(&kms)),
                ..SessionOptions::default()
            }),
            &encrypted,
        ),
    ];
    for n in 1..=MAX_WORKERS {
        let urls: Vec<Url> = plain_workers[..n].iter().map(|(_, u)| u.clone()).collect();
        configs.push((
            format!("{n} worker(s) plaintext"),
            plain_session(&urls),
            &plain,
        ));
        let handles: Vec<&WorkerHandle> =
            confidential_workers[..n].iter().map(|(_, h)| h).collect();
        let session = SessionOptions {
            kms: Some(Arc::clone(&kms)),
            ..SessionOptions::default()
        };
        let mut driver = support::driver(&ca, &handles);
        driver.bytes_per_partition = None;
        configs.push((
            format!("{n} worker(s) confidential"),
            distributed_session(&session, &driver).unwrap(),
            &encrypted,
        ));
    }

    let mut best: BTreeMap<(usize, &str), f64> = BTreeMap::new();
    let mut result_rows: BTreeMap<&str, usize> = BTreeMap::new();
    driver_runtime.block_on(async {
        for (_, ctx, data) in &configs {
            register_taxi(ctx, data).await.unwrap();
        }
        for round in 1..=options.rounds {
            for (index, (label, ctx, _)) in configs.iter().enumerate() {
                let report = run_taxi_suite(ctx, options.rows, options.runs, &[], &mut |_| {})
                    .await
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                for q in report.queries {
                    let slot = best.entry((index, q.id)).or_insert(f64::INFINITY);
                    *slot = slot.min(q.median_ms);
                    let rows = result_rows.entry(q.id).or_insert(q.result_rows);
                    assert_eq!(
                        *rows, q.result_rows,
                        "{label} {}: a different result size",
                        q.id
                    );
                }
                eprintln!("round {round}: {label} done");
            }
        }
    });

    let ids: Vec<&str> = TAXI_QUERIES.iter().map(|q| q.id).collect();
    println!(
        "taxi suite, {} rows, 12 files, best of {} rounds x median of {} runs (ms); driver and each worker 2 threads, 2 cores in all",
        options.rows, options.rounds, options.runs
    );
    print!("{:<28}", "configuration");
    for id in &ids {
        print!("{id:>9}");
    }
    println!("{:>9}", "geomean");
    let best = &best;
    let times = |index: usize| ids.iter().map(move |id| best[&(index, *id)]);
    for (index, (label, _, _)) in configs.iter().enumerate() {
        print!("{label:<28}");
        for t in times(index) {
            print!("{t:>9.1}");
        }
        println!("{:>9.1}", geomean(times(index)));
    }
    println!("\nconfidential / plaintext, same configuration (geomean, worst query):");
    for pair in 0..configs.len() / 2 {
        let (p, c) = (2 * pair, 2 * pair + 1);
        let ratios: Vec<f64> = ids
            .iter()
            .map(|id| best[&(c, *id)] / best[&(p, *id)])
            .collect();
        let worst = ratios.iter().copied().fold(0.0, f64::max);
        println!(
            "  {:<20} {:.3}  {:.3}",
            configs[p].0.trim_end_matches(" plaintext"),
            geomean(ratios.iter().copied()),
            worst
        );
    }
    println!(
        "\nscaling (geomean over the suite): speedup vs single process, and vs 1 worker / efficiency"
    );
    for (mode, offset) in [("plaintext", 0), ("confidential", 1)] {
        let single = geomean(times(offset));
        let one = geomean(times(2 + offset));
        for n in 1..=MAX_WORKERS {
            let t = geomean(times(2 * n + offset));
            println!(
                "  {mode:<13} {n} worker(s): {:.2}x vs single, {:.2}x vs 1 worker, efficiency {:.0}%",
                single / t,
                one / t,
                100.0 * one / t / n as f64
            );
        }
    }
    drop(configs);
    for (runtime, handle) in confidential_workers {
        runtime.block_on(handle.stop()).unwrap();
    }
    for (runtime, _) in plain_workers {
        runtime.shutdown_background();
    }
}
