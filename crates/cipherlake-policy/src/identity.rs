//! What a real TEE must report beyond the code measurement: per-TEE identity fields a service
//! pins (`sgx`, `tdx`, `sev_snp`), each optional, each an exact match or, where it is a
//! version, a minimum.
//!
//! A section applies to evidence of its TEE (SEV-SNP: `sev-snp` and `azure-snp-vtpm`; TDX:
//! `tdx` and `azure-tdx-vtpm`; SGX: `sgx`), and to sim evidence whose LAS emulates that TEE's
//! claims. A pinned field the evidence does not report is refused.

use std::fmt;

use cipherlake_attest::{Claims, SnpTcb, Tee};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use crate::evaluate::Reason;
use crate::keyword::Tolerance;

/// Bytes written as hex in a policy (no prefix). Lengths are checked by validation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hex(pub Vec<u8>);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        hex::decode(text.trim())
            .map(Hex)
            .map_err(|e| de::Error::custom(format!("{text:?} is not hex: {e}")))
    }
}

/// SGX identity beyond `measurements` (MRENCLAVE), `signers` (MRSIGNER), `product_id` and
/// `min_svn` (ISV SVN). The DEBUG attribute is refused unless `debug` is tolerated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SgxIdentity {
    /// Required KSS CONFIGID (64 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_id: Option<Hex>,
    /// Minimum KSS CONFIGSVN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_config_svn: Option<u16>,
}

/// TDX identity. `measurements` of the service also apply to MRTD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdxIdentity {
    /// Accepted MRTDs (48 bytes each); empty: any (then `measurements` decide).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mr_td: Vec<Hex>,
    /// Required RTMR0 (firmware configuration), 48 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr0: Option<Hex>,
    /// Required RTMR1 (OS loader and kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr1: Option<Hex>,
    /// Required RTMR2 (kernel command line, initrd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr2: Option<Hex>,
    /// Required RTMR3 (runtime, application-defined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtmr3: Option<Hex>,
    /// Required MRCONFIGID, 48 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_config_id: Option<Hex>,
    /// Required MROWNER, 48 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_owner: Option<Hex>,
    /// Required MROWNERCONFIG, 48 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr_owner_config: Option<Hex>,
    /// Accepted TDX modules (MRSEAM, 48 bytes each); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mr_seam: Vec<Hex>,
    /// Required TD_ATTRIBUTES, 8 bytes (the DEBUG bit is refused unless `debug` is tolerated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub td_attributes: Option<Hex>,
    /// Required XFAM, 8 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xfam: Option<Hex>,
    /// Minimum TEE_TCB_SVN, 16 bytes, compared byte by byte (each byte is a component's SVN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tee_tcb_svn: Option<Hex>,
}

/// A minimum SEV-SNP TCB, component by component.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinSnpTcb {
    /// Boot loader SPL.
    #[serde(default)]
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    #[serde(default)]
    pub tee: u8,
    /// SNP firmware SPL.
    #[serde(default)]
    pub snp: u8,
    /// Microcode SPL.
    #[serde(default)]
    pub microcode: u8,
    /// FMC SPL (Turin and later; ignored for earlier parts, which have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
}

/// SEV-SNP identity. `measurements` of the service also apply to the launch measurement.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnpIdentity {
    /// Accepted launch measurements (48 bytes each); empty: any (then `measurements` decide).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement: Vec<Hex>,
    /// Required HOST_DATA (32 bytes): AKS confidential containers put the pod policy's
    /// SHA-256 here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_data: Option<Hex>,
    /// Required ID key digest (48 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_key_digest: Option<Hex>,
    /// Required author key digest (48 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_key_digest: Option<Hex>,
    /// Required family id (16 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_id: Option<Hex>,
    /// Required image id (16 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<Hex>,
    /// The VMPL the report must come from; 0 when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmpl: Option<u32>,
    /// Minimum reported TCB; with it the CAS evaluates the TCB itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_reported_tcb: Option<MinSnpTcb>,
    /// Minimum guest SVN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_guest_svn: Option<u32>,
}

/// The identity sections of a service.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity<'a> {
    pub sgx: Option<&'a SgxIdentity>,
    pub tdx: Option<&'a TdxIdentity>,
    pub sev_snp: Option<&'a SnpIdentity>,
}

/// Checks `claims` against the identity sections and the tolerances.
pub(crate) fn evaluate(
    identity: Identity<'_>,
    claims: &Claims,
    tolerated: &[Tolerance],
    reasons: &mut Vec<Reason>,
) {
    let mut check = Checker { reasons };
    if matches!(claims.tee, Tee::SevSnp | Tee::AzureSnpVtpm) || claims.snp.is_some() {
        check.snp(identity.sev_snp, claims, tolerated);
    }
    if let Some(tdx) = identity.tdx
        && (matches!(claims.tee, Tee::Tdx | Tee::AzureTdxVtpm) || claims.tdx.is_some())
    {
        check.tdx(tdx, claims);
    }
    if let Some(sgx) = identity.sgx
        && (claims.tee == Tee::Sgx || claims.sgx.is_some())
    {
        check.sgx(sgx, claims);
    }
}

struct Checker<'r> {
    reasons: &'r mut Vec<Reason>,
}

impl Checker<'_> {
    /// An exact match of a pinned value.
    fn exact(&mut self, field: &str, pinned: &Option<Hex>, found: Option<&[u8]>) {
        if let Some(pinned) = pinned {
            self.one_of(field, std::slice::from_ref(pinned), found);
        }
    }

    /// One of the accepted values, when any are listed.
    fn one_of(&mut self, field: &str, accepted: &[Hex], found: Option<&[u8]>) {
        if !accepted.is_empty() && !found.is_some_and(|f| accepted.iter().any(|a| a.0 == f)) {
            self.reasons.push(Reason::FieldMismatch {
                field: field.to_string(),
                expected: accepted
                    .iter()
                    .map(Hex::to_string)
                    .collect::<Vec<_>>()
                    .join(" or "),
                found: found.map(hex::encode),
            });
        }
    }

    fn minimum(&mut self, field: &str, minimum: Option<u64>, found: Option<u64>) {
        if let Some(minimum) = minimum
            && found.is_none_or(|f| f < minimum)
        {
            self.reasons.push(Reason::BelowMinimum {
                field: field.to_string(),
                minimum: minimum.to_string(),
                found: found.map(|f| f.to_string()),
            });
        }
    }

    fn snp(&mut self, pins: Option<&SnpIdentity>, claims: &Claims, tolerated: &[Tolerance]) {
        let snp = claims.snp.as_ref();
        let default = SnpIdentity::default();
        let pins = pins.unwrap_or(&default);
        let measurement = snp.map(|_| claims.measurement.as_slice());
        self.one_of("sev_snp.measurement", &pins.measurement, measurement);
        self.exact(
            "sev_snp.host_data",
            &pins.host_data,
            snp.and(claims.host_data.as_deref()),
        );
        self.exact(
            "sev_snp.id_key_digest",
            &pins.id_key_digest,
            snp.map(|s| s.id_key_digest.as_slice()),
        );
        self.exact(
            "sev_snp.author_key_digest",
            &pins.author_key_digest,
            snp.map(|s| s.author_key_digest.as_slice()),
        );
        self.exact(
            "sev_snp.family_id",
            &pins.family_id,
            snp.map(|s| s.family_id.as_slice()),
        );
        self.exact(
            "sev_snp.image_id",
            &pins.image_id,
            snp.map(|s| s.image_id.as_slice()),
        );
        let vmpl = pins.vmpl.unwrap_or(0);
        if snp.map(|s| s.vmpl) != Some(vmpl) {
            self.reasons.push(Reason::FieldMismatch {
                field: "sev_snp.vmpl".into(),
                expected: vmpl.to_string(),
                found: snp.map(|s| s.vmpl.to_string()),
            });
        }
        if snp.is_some_and(|s| s.policy.migrate_ma_allowed)
            && !tolerated.contains(&Tolerance::MigrationAgent)
        {
            self.reasons.push(Reason::MigrationAgentNotTolerated);
        }
        self.minimum(
            "sev_snp.min_guest_svn",
            pins.min_guest_svn.map(u64::from),
            snp.and(claims.svn).map(u64::from),
        );
        match (pins.min_reported_tcb, snp) {
            (Some(minimum), snp) => self.snp_tcb(&minimum, snp.map(|s| &s.reported_tcb)),
            (None, _) if !tolerated.contains(&Tolerance::UnevaluatedTcb) => {
                self.reasons
                    .push(Reason::TcbNotEvaluated { tee: claims.tee });
            }
            (None, _) => {}
        }
    }

    /// Each component at least the minimum; FMC only where the part has one (Turin).
    fn snp_tcb(&mut self, minimum: &MinSnpTcb, reported: Option<&SnpTcb>) {
        let components: [(&str, u8, Option<u8>); 4] = [
            (
                "bootloader",
                minimum.bootloader,
                reported.map(|t| t.bootloader),
            ),
            ("tee", minimum.tee, reported.map(|t| t.tee)),
            ("snp", minimum.snp, reported.map(|t| t.snp)),
            (
                "microcode",
                minimum.microcode,
                reported.map(|t| t.microcode),
            ),
        ];
        for (name, min, found) in components {
            self.minimum(
                &format!("sev_snp.min_reported_tcb.{name}"),
                Some(u64::from(min)),
                found.map(u64::from),
            );
        }
        if let (Some(min), Some(found)) = (minimum.fmc, reported.and_then(|t| t.fmc)) {
            self.minimum(
                "sev_snp.min_reported_tcb.fmc",
                Some(u64::from(min)),
                Some(u64::from(found)),
            );
        }
    }

    fn tdx(&mut self, pins: &TdxIdentity, claims: &Claims) {
        let td = claims.tdx.as_ref();
        self.one_of(
            "tdx.mr_td",
            &pins.mr_td,
            td.map(|_| claims.measurement.as_slice()),
        );
        let rtmrs = [&pins.rtmr0, &pins.rtmr1, &pins.rtmr2, &pins.rtmr3];
        for (i, pinned) in rtmrs.into_iter().enumerate() {
            self.exact(
                &format!("tdx.rtmr{i}"),
                pinned,
                claims.rtmrs.get(i).map(Vec::as_slice),
            );
        }
        self.exact(
            "tdx.mr_config_id",
            &pins.mr_config_id,
            td.and(claims.host_data.as_deref()),
        );
        self.exact(
            "tdx.mr_owner",
            &pins.mr_owner,
            td.map(|t| t.mr_owner.as_slice()),
        );
        self.exact(
            "tdx.mr_owner_config",
            &pins.mr_owner_config,
            td.map(|t| t.mr_owner_config.as_slice()),
        );
        self.one_of(
            "tdx.mr_seam",
            &pins.mr_seam,
            td.map(|t| t.mr_seam.as_slice()),
        );
        self.exact(
            "tdx.td_attributes",
            &pins.td_attributes,
            td.map(|t| t.td_attributes.as_slice()),
        );
        self.exact("tdx.xfam", &pins.xfam, td.map(|t| t.xfam.as_slice()));
        if let Some(minimum) = &pins.min_tee_tcb_svn {
            let found = td.map(|t| t.tee_tcb_svn.as_slice());
            let below = found.is_none_or(|f| {
                f.len() != minimum.0.len() || f.iter().zip(&minimum.0).any(|(f, m)| f < m)
            });
            if below {
                self.reasons.push(Reason::BelowMinimum {
                    field: "tdx.min_tee_tcb_svn".into(),
                    minimum: minimum.to_string(),
                    found: found.map(hex::encode),
                });
            }
        }
    }

    fn sgx(&mut self, pins: &SgxIdentity, claims: &Claims) {
        let sgx = claims.sgx.as_ref();
        self.exact(
            "sgx.config_id",
            &pins.config_id,
            sgx.map(|s| s.config_id.as_slice()),
        );
        self.minimum(
            "sgx.min_config_svn",
            pins.min_config_svn.map(u64::from),
            sgx.map(|s| u64::from(s.config_svn)),
        );
    }
}

/// The byte length each hex field must have, by field name within its section.
pub(crate) fn hex_len(field: &str) -> Option<usize> {
    Some(match field {
        "config_id" => 64,
        "mr_td" | "rtmr0" | "rtmr1" | "rtmr2" | "rtmr3" | "mr_config_id" | "mr_owner"
        | "mr_owner_config" | "mr_seam" | "measurement" | "id_key_digest" | "author_key_digest" => {
            48
        }
        "td_attributes" | "xfam" => 8,
        "min_tee_tcb_svn" | "family_id" | "image_id" => 16,
        "host_data" => 32,
        _ => return None,
    })
}

/// A hex field of a section: its name, its index in a list, its value.
pub(crate) type HexField<'a> = (&'static str, Option<usize>, &'a Hex);

fn singles<'a>(out: &mut Vec<HexField<'a>>, fields: &[(&'static str, &'a Option<Hex>)]) {
    for (name, value) in fields {
        out.extend(value.iter().map(|v| (*name, None, v)));
    }
}

fn list<'a>(out: &mut Vec<HexField<'a>>, name: &'static str, values: &'a [Hex]) {
    out.extend(values.iter().enumerate().map(|(i, v)| (name, Some(i), v)));
}

impl SgxIdentity {
    /// The hex fields.
    pub(crate) fn hex_fields(&self) -> Vec<HexField<'_>> {
        let mut out = Vec::new();
        singles(&mut out, &[("config_id", &self.config_id)]);
        out
    }
}

impl TdxIdentity {
    /// The hex fields.
    pub(crate) fn hex_fields(&self) -> Vec<HexField<'_>> {
        let mut out = Vec::new();
        list(&mut out, "mr_td", &self.mr_td);
        singles(
            &mut out,
            &[
                ("rtmr0", &self.rtmr0),
                ("rtmr1", &self.rtmr1),
                ("rtmr2", &self.rtmr2),
                ("rtmr3", &self.rtmr3),
                ("mr_config_id", &self.mr_config_id),
                ("mr_owner", &self.mr_owner),
                ("mr_owner_config", &self.mr_owner_config),
                ("td_attributes", &self.td_attributes),
                ("xfam", &self.xfam),
                ("min_tee_tcb_svn", &self.min_tee_tcb_svn),
            ],
        );
        list(&mut out, "mr_seam", &self.mr_seam);
        out
    }
}

impl SnpIdentity {
    /// The hex fields.
    pub(crate) fn hex_fields(&self) -> Vec<HexField<'_>> {
        let mut out = Vec::new();
        list(&mut out, "measurement", &self.measurement);
        singles(
            &mut out,
            &[
                ("host_data", &self.host_data),
                ("id_key_digest", &self.id_key_digest),
                ("author_key_digest", &self.author_key_digest),
                ("family_id", &self.family_id),
                ("image_id", &self.image_id),
            ],
        );
        out
    }

    /// Whether the section pins who signed the launch (ID or author key).
    pub(crate) fn pins_signer(&self) -> bool {
        self.id_key_digest.is_some() || self.author_key_digest.is_some()
    }
}

/// The value `claims` report for an identity field named as a policy names it, with or
/// without its section (`tdx.rtmr1` or `rtmr1`, `sev_snp.host_data` or `host_data`), for
/// checks outside a policy (`cas verify --expect FIELD=HEX`). `Ok(None)`: the evidence does
/// not report it; `Err`: no such field.
pub fn reported(claims: &Claims, field: &str) -> Result<Option<Vec<u8>>, String> {
    let name = field.rsplit('.').next().unwrap_or(field);
    let tdx = claims.tdx.as_ref();
    let snp = claims.snp.as_ref();
    let sgx = claims.sgx.as_ref();
    Ok(match name {
        "measurement" | "mr_td" | "mr_enclave" => Some(claims.measurement.clone()),
        "signer" | "mr_signer" => claims.signer.clone(),
        "rtmr0" | "rtmr1" | "rtmr2" | "rtmr3" => {
            let i = usize::from(name.as_bytes()[4] - b'0');
            claims.rtmrs.get(i).cloned()
        }
        "host_data" | "mr_config_id" => claims.host_data.clone(),
        "mr_owner" => tdx.map(|t| t.mr_owner.clone()),
        "mr_owner_config" => tdx.map(|t| t.mr_owner_config.clone()),
        "mr_seam" => tdx.map(|t| t.mr_seam.clone()),
        "td_attributes" => tdx.map(|t| t.td_attributes.clone()),
        "xfam" => tdx.map(|t| t.xfam.clone()),
        "id_key_digest" => snp.map(|s| s.id_key_digest.clone()),
        "author_key_digest" => snp.map(|s| s.author_key_digest.clone()),
        "family_id" => snp.map(|s| s.family_id.clone()),
        "image_id" => snp.map(|s| s.image_id.clone()),
        "config_id" => sgx.map(|s| s.config_id.clone()),
        other => {
            return Err(format!(
                "unknown identity field {other:?} (measurement, mr_td, rtmr0-3, mr_config_id, mr_owner, mr_owner_config, mr_seam, td_attributes, xfam, host_data, id_key_digest, author_key_digest, family_id, image_id, config_id, signer)"
            ));
        }
    })
}
