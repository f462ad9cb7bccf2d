//! TEE identity fields enforced through the CAS API. The real samples cannot bind a fresh CAS
//! nonce, so a LAS emulating TDX, SEV-SNP and SGX claims in its sim reports stands in: every
//! field pinned to the emulated value is admitted, and with one bit changed refused, naming
//! the field.

use cipherlake_attest::attester::Attester;
use cipherlake_attest::las::Las;
use cipherlake_attest::sim::{Emulated, PlatformKey};
use cipherlake_attest::{SgxClaims, SnpClaims, SnpPolicy, SnpTcb, TdxClaims};
use cipherlake_cas::CasError;
use cipherlake_cas::client::attester_evidence;
use cipherlake_policy::Operation;

use super::common::{Env, JOB};

fn tcb() -> SnpTcb {
    SnpTcb {
        raw: 0,
        bootloader: 3,
        tee: 0,
        snp: 8,
        microcode: 115,
        fmc: None,
    }
}

fn emulated() -> Emulated {
    Emulated {
        sgx: Some(SgxClaims {
            attributes: vec![0x05; 16],
            config_id: vec![0x61; 64],
            config_svn: 4,
            isv_ext_prod_id: vec![0; 16],
            isv_family_id: vec![0; 16],
        }),
        tdx: Some(TdxClaims {
            mr_seam: vec![0x51; 48],
            mr_owner: vec![0x52; 48],
            mr_owner_config: vec![0x53; 48],
            td_attributes: vec![0; 8],
            xfam: vec![0xe7, 0x02, 0x06, 0, 0, 0, 0, 0],
            tee_tcb_svn: vec![3; 16],
        }),
        snp: Some(SnpClaims {
            product: "Milan".into(),
            signing_key: "vcek".into(),
            policy: SnpPolicy {
                raw: 0x30000,
                abi_major: 0,
                abi_minor: 0,
                smt_allowed: true,
                migrate_ma_allowed: false,
                debug_allowed: false,
                single_socket: false,
            },
            vmpl: 0,
            family_id: vec![0x71; 16],
            image_id: vec![0x72; 16],
            id_key_digest: vec![0x73; 48],
            author_key_digest: vec![0x74; 48],
            chip_id: vec![0; 64],
            reported_tcb: tcb(),
            current_tcb: tcb(),
            committed_tcb: tcb(),
            launch_tcb: tcb(),
        }),
        host_data: Some(vec![0x48; 32]),
        rtmrs: (1..=4).map(|i| vec![i; 48]).collect(),
        ..Emulated::default()
    }
}

/// A LAS emulating [`emulated`], registered with the CAS.
async fn emulating_las(env: &Env) -> Attester {
    let socket = env.dir.path().join("emulating-las.sock");
    let key = PlatformKey::generate().unwrap();
    let public = hex::encode(key.public_key().to_bytes());
    tokio::spawn(
        Las::bind(key, &socket)
            .unwrap()
            .with_emulated(emulated())
            .run(),
    );
    env.client
        .register_platform(&env.operator_token(), &public)
        .await
        .unwrap();
    Attester::Sim { socket }
}

/// The standard policy with `section` added to the driver, and a minimum SEV-SNP TCB (the
/// emulated claims include SEV-SNP's, which need one) unless `section` is SEV-SNP's.
fn pinned(env: &Env, name: &str, section: &str) -> String {
    let tcb = if section.starts_with("    sev_snp:") {
        String::new()
    } else {
        format!("    sev_snp:\n{SNP_TCB}")
    };
    env.policy(name, "sim", &env.measurement, None)
        .replace("    jobs:", &format!("{section}{tcb}    jobs:"))
}

const SNP_TCB: &str = "      min_reported_tcb: { bootloader: 3, tee: 0, snp: 8, microcode: 115 }\n";

async fn attest(env: &Env, attester: &Attester, policy: &str) -> Result<(), CasError> {
    env.client
        .attest(
            policy,
            "driver",
            Operation::Run,
            Some(JOB),
            |rd| async move { attester_evidence(attester, rd).await },
        )
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_identity_field_is_enforced_through_the_cas() {
    let env = Env::start().await;
    let attester = emulating_las(&env).await;
    let hex = |byte: u8, len: usize| hex::encode(vec![byte; len]);
    let flipped = |byte: u8, len: usize| {
        let mut v = vec![byte; len];
        v[0] ^= 1;
        hex::encode(v)
    };
    // (section yaml with the accepted value, the same with one bit changed, the field)
    let exact = |section: &str, field: &str, list: bool, byte: u8, len: usize| {
        let line = |v: String| {
            let v = if list {
                format!("[\"{v}\"]")
            } else {
                format!("\"{v}\"")
            };
            format!("    {section}:\n      {field}: {v}\n")
        };
        (
            line(hex(byte, len)),
            line(flipped(byte, len)),
            format!("{section}.{field}"),
        )
    };
    let snp_tcb = SNP_TCB;
    let mut cases = vec![
        exact("tdx", "rtmr0", false, 1, 48),
        exact("tdx", "rtmr3", false, 4, 48),
        exact("tdx", "mr_owner", false, 0x52, 48),
        exact("tdx", "mr_owner_config", false, 0x53, 48),
        exact("tdx", "mr_seam", true, 0x51, 48),
        exact("sgx", "config_id", false, 0x61, 64),
    ];
    for (field, byte, len) in [
        ("host_data", 0x48, 32),
        ("family_id", 0x71, 16),
        ("image_id", 0x72, 16),
        ("id_key_digest", 0x73, 48),
        ("author_key_digest", 0x74, 48),
    ] {
        let (ok, bad, name) = exact("sev_snp", field, false, byte, len);
        cases.push((format!("{ok}{snp_tcb}"), format!("{bad}{snp_tcb}"), name));
    }
    // Minimums: the emulated value passes, one above is refused.
    cases.push((
        "    sgx:\n      min_config_svn: 4\n".into(),
        "    sgx:\n      min_config_svn: 5\n".into(),
        "sgx.min_config_svn".into(),
    ));
    cases.push((
        format!("    tdx:\n      min_tee_tcb_svn: \"{}\"\n", hex(3, 16)),
        format!("    tdx:\n      min_tee_tcb_svn: \"{}\"\n", hex(4, 16)),
        "tdx.min_tee_tcb_svn".into(),
    ));
    cases.push((
        snp_tcb_section("microcode: 115"),
        snp_tcb_section("microcode: 116"),
        "sev_snp.min_reported_tcb.microcode".into(),
    ));
    cases.push((
        format!("    sev_snp:\n      vmpl: 0\n{snp_tcb}"),
        format!("    sev_snp:\n      vmpl: 1\n{snp_tcb}"),
        "sev_snp.vmpl".into(),
    ));
    for (i, (accepted, refused, field)) in cases.iter().enumerate() {
        let ok = format!("ok{i}");
        let bad = format!("bad{i}");
        env.apply(&ok, &pinned(&env, &ok, accepted)).await.unwrap();
        env.apply(&bad, &pinned(&env, &bad, refused)).await.unwrap();
        attest(&env, &attester, &ok)
            .await
            .unwrap_or_else(|e| panic!("{field} pinned to the emulated value: {e}"));
        let err = attest(&env, &attester, &bad).await.expect_err(field);
        let text = err.to_string();
        assert!(
            (text.contains("field-mismatch") || text.contains("below-minimum"))
                && text.contains(field.as_str()),
            "{field}: {text}"
        );
    }
    // SEV-SNP claims without a minimum TCB: refused unless tolerated.
    let unevaluated = pinned(
        &env,
        "unevaluated",
        &format!("    sev_snp:\n      host_data: \"{}\"\n", hex(0x48, 32)),
    );
    env.apply("unevaluated", &unevaluated).await.unwrap();
    let err = attest(&env, &attester, "unevaluated")
        .await
        .expect_err("no TCB verdict");
    assert!(err.to_string().contains("tcb-not-evaluated"), "{err}");
}

fn snp_tcb_section(microcode: &str) -> String {
    format!(
        "    sev_snp:\n      min_reported_tcb: {{ bootloader: 3, tee: 0, snp: 8, {microcode} }}\n"
    )
}
