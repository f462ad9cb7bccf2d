//! Help, version, datagen → sql → bench, and clear errors.

use super::support::{cipherlake, fails, ok};

#[test]
fn version_and_help_on_every_subcommand() {
    assert!(ok(&["--version"]).starts_with("cipherlake "));
    for args in [
        vec!["--help"],
        vec!["datagen", "--help"],
        vec!["datagen", "taxi", "--help"],
        vec!["sql", "--help"],
        vec!["bench", "--help"],
        vec!["bench", "taxi", "--help"],
    ] {
        let mut with_help = args.clone();
        with_help.retain(|a| *a != "--help");
        with_help.push("--help");
        let text = ok(&with_help);
        assert!(text.contains("Usage: cipherlake"), "{args:?}: {text}");
    }
}

#[test]
fn usage_errors_exit_2_without_a_panic() {
    let out = cipherlake(&["datagen", "taxi", "--rows", "lots", "--out", "/tmp/x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a count"));
}

#[test]
fn generate_query_and_benchmark() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("taxi");
    let data = data.to_str().unwrap();
    let summary = ok(&[
        "datagen", "taxi", "--rows", "20k", "--out", data, "--files", "2", "--seed", "4",
    ]);
    assert!(
        summary.contains("wrote 20000 trips in 2 file(s)"),
        "{summary}"
    );

    let trips = format!("trips={data}");
    let zones = format!("zones={data}/zones.csv");
    let csv = ok(&[
        "sql",
        "--table",
        &trips,
        "--table",
        &zones,
        "--format",
        "csv",
        "SELECT z.Borough, count(*) AS n FROM trips t JOIN zones z ON t.PULocationID = z.LocationID GROUP BY 1 ORDER BY 2 DESC LIMIT 1",
    ]);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("Borough,n"));
    assert!(lines.next().unwrap().starts_with("Manhattan,"), "{csv}");

    let json = ok(&[
        "sql",
        "--table",
        &trips,
        "--format",
        "json",
        "SELECT count(*) AS n FROM trips",
    ]);
    assert_eq!(json.trim(), r#"{"n":20000}"#);

    let script = dir.path().join("job.sql");
    std::fs::write(&script, format!("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '{data}/';\nSELECT max(VendorID) AS v FROM t;")).unwrap();
    let table = ok(&["sql", "--file", script.to_str().unwrap()]);
    assert!(
        table.contains("| v |") && table.contains("| 6 |"),
        "{table}"
    );

    let json_path = dir.path().join("bench.json");
    let printed = ok(&[
        "bench",
        "taxi",
        "--data",
        data,
        "--runs",
        "1",
        "--queries",
        "Q0a,Q6",
        "--json",
        json_path.to_str().unwrap(),
    ]);
    assert!(printed.contains("Q6"), "{printed}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(report["trips_rows"], 20_000);
    assert_eq!(report["queries"].as_array().unwrap().len(), 2);
    assert!(report["queries"][1]["median_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn sql_errors_are_one_clear_line() {
    let missing = fails(&["sql", "SELECT * FROM nowhere"]);
    assert!(missing.contains("nowhere"), "{missing}");
    let bad_path = fails(&["sql", "--table", "trips=/no/such/place", "SELECT 1"]);
    assert!(
        bad_path.contains("table 'trips'") && bad_path.contains("/no/such/place"),
        "{bad_path}"
    );
    let syntax = fails(&["sql", "SELECT 1;\nSELECT count(* FROM t"]);
    assert!(syntax.contains("Line: 2"), "{syntax}");
    let no_file = fails(&["sql", "--file", "/no/job.sql"]);
    assert!(no_file.contains("/no/job.sql"), "{no_file}");
    let no_data = fails(&["bench", "taxi", "--data", "/no/data", "--runs", "1"]);
    assert!(no_data.contains("/no/data"), "{no_data}");
}
