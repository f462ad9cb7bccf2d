//! Azure Blob Storage / Data Lake through Azurite (started by scripts/test): an attested job
//! writes and reads encrypted Parquet in a container with a SAS token that the policy injects
//! as a secret, the same code path as a real Data Lake; the blobs hold no plaintext.

use super::run::{files, sha256_hex};
use super::testbed::{Testbed, path};

const DATA: &str = "canary-lake-c41f";

/// An Azurite setting exported by scripts/test; missing means the emulator is not running.
fn azurite(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: these tests need Azurite; run them through scripts/test")
    })
}

#[test]
fn an_attested_job_uses_azure_storage_with_a_sas_token_from_the_policy() {
    let (endpoint, container, sas, blobs) = (
        azurite("CIPHERLAKE_TEST_AZURITE_ENDPOINT"),
        azurite("CIPHERLAKE_TEST_AZURITE_CONTAINER"),
        azurite("CIPHERLAKE_TEST_AZURITE_SAS"),
        azurite("CIPHERLAKE_TEST_AZURITE_DIR"),
    );
    let bed = Testbed::start();
    let d = bed.dir.path();
    let prefix = format!(
        "az://{container}/{}",
        d.file_name().unwrap().to_string_lossy()
    );
    let job = format!(
        "COPY (SELECT * FROM (VALUES ('{DATA}', 100), ('bob', 200)) AS t(name, salary)) \
         TO '{prefix}/people/part-0.parquet' STORED AS PARQUET \
         OPTIONS ('format.crypto.factory_options.footer_key' 'data-key');\n\
         CREATE EXTERNAL TABLE people STORED AS PARQUET LOCATION '{prefix}/people/';\n\
         COPY (SELECT sum(salary) AS total, count(*) AS n FROM people) \
         TO '{prefix}/out/total.parquet' STORED AS PARQUET \
         OPTIONS ('format.crypto.factory_options.footer_key' 'results-key');\n"
    );
    let azure_env = format!(
        "      AZURE_STORAGE_ACCOUNT_NAME: devstoreaccount1\n\
         \x20     AZURE_STORAGE_ENDPOINT: \"{endpoint}\"\n\
         \x20     AZURE_ALLOW_HTTP: \"true\"\n\
         \x20     AZURE_STORAGE_SAS_TOKEN: \"{{{{ secret.sas }}}}\"\n"
    );
    bed.apply(
        "lake.yaml",
        &format!(
            "apiVersion: cipherlake/v1\nname: lake\npredecessor: null\nowners: [{owner}]\n\
             attestation:\n  tees: [sim]\n\
             services:\n\
             \x20 driver:\n    operation: run\n    measurements: [sha384:{m}]\n    jobs: [sha256:{job_hash}]\n\
             \x20   env:\n{azure_env}\
             \x20   kms_keys: {{ data-key: [unwrap, wrap], results-key: [wrap] }}\n    console: row-counts\n\
             users:\n  custodian:\n    key: {custodian}\n    kms_keys: {{ results-key: [unwrap] }}\n\
             secrets:\n  sas: {{ kind: ascii, value: \"{sas}\" }}\n\
             \x20 data-key: {{ kind: aes-256, generate: true }}\n\
             \x20 results-key: {{ kind: aes-256, generate: true }}\n",
            owner = bed.owner,
            custodian = bed.custodian,
            m = bed.measurement,
            job_hash = sha256_hex(job.as_bytes()),
        ),
    );
    let job_file = d.join("job.sql");
    std::fs::write(&job_file, &job).unwrap();
    let out = bed
        .command(&[
            "run",
            "-vv",
            "--cas",
            &bed.url,
            "--policy",
            "lake",
            "--service",
            "driver",
            path(&job_file),
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout,
        "statement 1: 1 row(s)\nstatement 2: done\nstatement 3: 1 row(s)\n"
    );
    let signature = sas.split("sig=").nth(1).unwrap();
    for secret in [sas.as_str(), signature, DATA] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }

    // The custodian reads the result from the lake with the same SAS (from its environment).
    let read = |sas: &str| {
        bed.command(&[
            "sql",
            "--format",
            "csv",
            "--kms",
            &format!("cas:{}", bed.url),
            "--policy",
            "lake",
            "--user",
            "custodian",
            "--key",
            path(&bed.custodian_key),
            &format!("SELECT total, n FROM '{prefix}/out/total.parquet'"),
        ])
        .env("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1")
        .env("AZURE_STORAGE_ENDPOINT", &endpoint)
        .env("AZURE_ALLOW_HTTP", "true")
        .env("AZURE_STORAGE_SAS_TOKEN", sas)
        .output()
        .unwrap()
    };
    let result = read(&sas);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&result.stdout), "total,n\n300,2\n");

    // A SAS with a forged signature is refused by the service, and the error does not echo it.
    let forged = format!("{}sig=Zm9yZ2Vk", sas.split("sig=").next().unwrap());
    let refused = read(&forged);
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        error.starts_with("error: ") && !error.contains("Zm9yZ2Vk"),
        "{error}"
    );

    // What the emulator stored is ciphertext only.
    for file in files(std::path::Path::new(&blobs)) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(DATA.len()).any(|w| w == DATA.as_bytes()),
            "{DATA} in {}",
            file.display()
        );
    }
}
