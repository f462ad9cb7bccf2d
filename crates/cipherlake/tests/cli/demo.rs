//! `cipherlake demo`: the whole pipeline in one command, at a small size; its results match a
//! plaintext run of the same data, and a second run reuses the CAS, the policy and the data.

use std::collections::BTreeMap;

use super::support::ok;
use super::testbed::path;

/// `borough → (trips, revenue)` from rows whose first three cells are those.
fn boroughs<'a>(rows: impl Iterator<Item = Vec<&'a str>>) -> BTreeMap<String, (u64, f64)> {
    rows.filter(|cells| cells.len() >= 3)
        .filter_map(|cells| {
            Some((
                cells[0].to_string(),
                (cells[1].parse().ok()?, cells[2].parse().ok()?),
            ))
        })
        .collect()
}

#[test]
fn the_demo_matches_a_plaintext_run_and_reuses_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let workdir = dir.path().join("demo");
    let demo = [
        "demo",
        "--rows",
        "20000",
        "--threads",
        "2",
        "--workdir",
        path(&workdir),
    ];
    let report = ok(&demo);
    for expected in [
        "Phases",
        "taxi-demo/driver",
        "taxi-demo/ingest",
        "taxi-demo/user:custodian",
        "Who read the audit log",
        "results-key",
        "statement 3: 1 row(s)",
        "cipherlake audit verify --file",
        "hash chain and signatures verified",
    ] {
        assert!(
            report.contains(expected),
            "{expected} missing from:\n{report}"
        );
    }
    for file in ["trips_by_borough.parquet", "busiest_pairs.parquet"] {
        let bytes = std::fs::read(workdir.join("results").join(file)).unwrap();
        assert!(bytes.ends_with(b"PARE"), "{file} has an encrypted footer");
    }

    // The same trips in plaintext, through `cipherlake sql`.
    let plain = dir.path().join("plain");
    ok(&[
        "datagen",
        "taxi",
        "--rows",
        "20000",
        "--threads",
        "2",
        "--out",
        path(&plain),
    ]);
    let expected = ok(&[
        "sql",
        "--format",
        "csv",
        "--table",
        &format!("trips={}", plain.display()),
        "--table",
        &format!("zones={}", plain.join("zones.csv").display()),
        "SELECT z.Borough, count(*), round(sum(t.total_amount), 2) FROM trips t \
         JOIN zones z ON t.PULocationID = z.LocationID GROUP BY z.Borough",
    ]);
    let expected = boroughs(expected.lines().skip(1).map(|l| l.split(',').collect()));
    let decrypted = borough_results(&report);
    assert!(decrypted.len() >= 6, "{report}");
    assert_eq!(decrypted, expected);

    let again = ok(&demo);
    assert!(again.contains("unchanged, kept"), "{again}");
    assert!(again.contains("already in data/taxi, kept"), "{again}");

    // On two attested workers: the same results, read by the workers with their own keys.
    let mut distributed = demo.to_vec();
    distributed.extend(["--workers", "2"]);
    let report = ok(&distributed);
    assert!(report.contains("on 2 workers"), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.contains("taxi-demo/service:worker")
                && l.contains("taxi-footer")
                && l.contains("unwrap")),
        "the workers unwrapped the trips' keys:\n{report}"
    );
    assert_eq!(borough_results(&report), expected);
}

/// The decrypted `trips_by_borough` table of a demo report.
fn borough_results(report: &str) -> BTreeMap<String, (u64, f64)> {
    let section = report
        .split("trips_by_borough.parquet:")
        .nth(1)
        .and_then(|s| s.split("busiest_pairs.parquet:").next())
        .expect("the borough results are in the report");
    boroughs(section.lines().map(|l| {
        l.split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect()
    }))
}
