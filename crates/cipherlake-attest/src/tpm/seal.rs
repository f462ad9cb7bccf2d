//! Sealing to PCRs and monotonic counters: what a CAS needs to keep its master key on a TPM
//! host (Azure confidential VMs' vTPM, any TPM 2.0) away from the host's administrator.
//!
//! * [`Tpm::seal`] creates a keyed-hash object holding the secret under the owner hierarchy's
//!   storage primary key (an ECC P-256 key the TPM derives again from its seed each time), with
//!   a policy of `TPM2_PolicyPCR` over the chosen SHA-256 PCRs and no other way in. Only that
//!   TPM, with those PCR values, unseals it ([`Tpm::unseal`]).
//! * NV counters ([`Tpm::counter`], [`Tpm::increment`]) only go up: a copy of older state
//!   cannot roll them back.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::device::{ALG_NULL, Auth, RH_OWNER, Tpm, TpmError};
use super::quote::ALG_SHA256;
use super::wire::{Reader, Writer};

const CC_CREATE_PRIMARY: u32 = 0x0000_0131;
const CC_CREATE: u32 = 0x0000_0153;
const CC_LOAD: u32 = 0x0000_0157;
const CC_START_AUTH_SESSION: u32 = 0x0000_0176;
const CC_POLICY_PCR: u32 = 0x0000_017f;
const CC_UNSEAL: u32 = 0x0000_015e;
const CC_FLUSH_CONTEXT: u32 = 0x0000_0165;
const CC_NV_DEFINE_SPACE: u32 = 0x0000_012a;
const CC_NV_INCREMENT: u32 = 0x0000_0134;
const CC_NV_READ: u32 = 0x0000_014e;
const RH_NULL: u32 = 0x4000_0007;
const ALG_ECC: u16 = 0x0023;
const ALG_KEYEDHASH: u16 = 0x0008;
const ALG_AES: u16 = 0x0006;
const ALG_CFB: u16 = 0x0043;
const ECC_NIST_P256: u16 = 0x0003;
const SE_POLICY: u8 = 0x01;
// TPMA_OBJECT bits.
const FIXED_TPM: u32 = 1 << 1;
const FIXED_PARENT: u32 = 1 << 4;
const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
const USER_WITH_AUTH: u32 = 1 << 6;
const NO_DA: u32 = 1 << 10;
const RESTRICTED: u32 = 1 << 16;
const DECRYPT: u32 = 1 << 17;
// TPMA_NV bits: a counter, written and read with owner or empty authorization.
const NV_OWNERWRITE: u32 = 1 << 1;
const NV_AUTHWRITE: u32 = 1 << 2;
const NT_COUNTER: u32 = 1 << 4;
const NV_OWNERREAD: u32 = 1 << 17;
const NV_AUTHREAD: u32 = 1 << 18;
const NV_NO_DA: u32 = 1 << 25;
/// The attributes of the counters this module defines.
const COUNTER_ATTRIBUTES: u32 =
    NT_COUNTER | NV_OWNERWRITE | NV_AUTHWRITE | NV_OWNERREAD | NV_AUTHREAD | NV_NO_DA;
/// `TPM_RC_HANDLE` on the first handle: no such NV index.
const RC_HANDLE_1: u32 = 0x18b;

/// A sealed object as the TPM exported it: its public and private parts (the private part is
/// encrypted under the TPM's storage key; only that TPM can load it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBlob {
    /// `TPM2B_PUBLIC` contents.
    pub public: Vec<u8>,
    /// `TPM2B_PRIVATE` contents.
    pub private: Vec<u8>,
}

fn malformed(command: &'static str) -> impl Fn(crate::VerifyError) -> TpmError {
    move |e| TpmError::Malformed {
        command,
        reason: e.to_string(),
    }
}

/// `TPML_PCR_SELECTION` of these SHA-256 PCRs.
fn selection(w: &mut Writer, pcrs: &[u8]) {
    let mut bitmap = [0u8; 3];
    for pcr in pcrs {
        bitmap[usize::from(*pcr / 8)] |= 1 << (pcr % 8);
    }
    w.u32(1).u16(ALG_SHA256).u8(3).raw(&bitmap);
}

/// `pcrs` in the order the TPM hashes a selection's values: ascending, each once.
pub fn pcr_order(pcrs: &[u8]) -> Vec<u8> {
    let mut sorted = pcrs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

/// The policy digest of `TPM2_PolicyPCR` over `pcrs` holding `values` (TPM 2.0 Part 3, 23.7):
/// SHA-256(0³² ‖ TPM_CC_PolicyPCR ‖ selection ‖ SHA-256(values in PCR order)).
pub fn policy_pcr_digest(pcrs: &[u8], values: &[&[u8]]) -> [u8; 32] {
    let mut pcr_digest = Sha256::new();
    for value in values {
        pcr_digest.update(value);
    }
    let mut w = Writer::default();
    w.raw(&[0; 32]).u32(CC_POLICY_PCR);
    selection(&mut w, pcrs);
    w.raw(&pcr_digest.finalize());
    Sha256::digest(&w.0).into()
}

impl Tpm {
    /// Creates the owner hierarchy's ECC P-256 storage primary key (derived from the TPM's
    /// seed: the same key every time on the same TPM) and returns its transient handle.
    fn storage_primary(&mut self) -> Result<u32, TpmError> {
        let mut public = Writer::default();
        public
            .u16(ALG_ECC)
            .u16(ALG_SHA256)
            .u32(
                FIXED_TPM
                    | FIXED_PARENT
                    | SENSITIVE_DATA_ORIGIN
                    | USER_WITH_AUTH
                    | NO_DA
                    | RESTRICTED
                    | DECRYPT,
            )
            .sized(&[])
            .u16(ALG_AES)
            .u16(128)
            .u16(ALG_CFB)
            .u16(ALG_NULL)
            .u16(ECC_NIST_P256)
            .u16(ALG_NULL)
            .sized(&[])
            .sized(&[]);
        let mut params = Writer::default();
        params.u16(4).u16(0).u16(0); // TPM2B_SENSITIVE_CREATE: no auth, no data
        params.sized(&public.0).sized(&[]).u32(0);
        let (handles, _) = self.command(
            "CreatePrimary",
            CC_CREATE_PRIMARY,
            &[RH_OWNER],
            Auth::Password,
            &params.0,
            1,
        )?;
        Ok(handles[0])
    }

    fn flush(&mut self, handle: u32) -> Result<(), TpmError> {
        let mut params = Writer::default();
        params.u32(handle);
        self.command(
            "FlushContext",
            CC_FLUSH_CONTEXT,
            &[],
            Auth::None,
            &params.0,
            0,
        )
        .map(|_| ())
    }

    /// Seals `secret` (at most 128 bytes) to the current values of the SHA-256 `pcrs`; returns
    /// the blob and the values it is sealed to, in PCR order.
    pub fn seal(
        &mut self,
        secret: &[u8],
        pcrs: &[u8],
    ) -> Result<(SealedBlob, Vec<Vec<u8>>), TpmError> {
        let sorted = pcr_order(pcrs);
        let pcrs = sorted.as_slice();
        let all = self.pcrs()?;
        let values: Vec<Vec<u8>> = pcrs
            .iter()
            .filter_map(|i| all.get(usize::from(*i)).cloned())
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let policy = policy_pcr_digest(pcrs, &refs);
        let parent = self.storage_primary()?;
        let result = (|| {
            let mut public = Writer::default();
            public
                .u16(ALG_KEYEDHASH)
                .u16(ALG_SHA256)
                .u32(FIXED_TPM | FIXED_PARENT | NO_DA)
                .sized(&policy)
                .u16(ALG_NULL)
                .sized(&[]);
            let mut sensitive = Writer::default();
            sensitive.sized(&[]).sized(secret);
            let mut params = Writer::default();
            params
                .sized(&sensitive.0)
                .sized(&public.0)
                .sized(&[])
                .u32(0);
            let (_, out) =
                self.command("Create", CC_CREATE, &[parent], Auth::Password, &params.0, 0)?;
            let mut r = Reader::new(&out, "Create response");
            let private = r.sized().map_err(malformed("Create"))?.to_vec();
            let public = r.sized().map_err(malformed("Create"))?.to_vec();
            Ok(SealedBlob { public, private })
        })();
        self.flush(parent)?;
        Ok((result?, values))
    }

    /// Unseals `blob` with a policy session satisfying `TPM2_PolicyPCR` over `pcrs`. Fails
    /// with the TPM's code when the PCRs hold other values or the blob is another TPM's.
    pub fn unseal(
        &mut self,
        blob: &SealedBlob,
        pcrs: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        let sorted = pcr_order(pcrs);
        let pcrs = sorted.as_slice();
        let parent = self.storage_primary()?;
        let loaded = (|| {
            let mut params = Writer::default();
            params.sized(&blob.private).sized(&blob.public);
            let (handles, _) =
                self.command("Load", CC_LOAD, &[parent], Auth::Password, &params.0, 1)?;
            Ok(handles[0])
        })();
        self.flush(parent)?;
        let object = loaded?;
        let result = (|| {
            let mut params = Writer::default();
            let mut nonce = [0u8; 16];
            getrandom::fill(&mut nonce).map_err(|e| TpmError::Malformed {
                command: "StartAuthSession",
                reason: format!("no randomness: {e}"),
            })?;
            params
                .sized(&nonce)
                .sized(&[])
                .u8(SE_POLICY)
                .u16(ALG_NULL)
                .u16(ALG_SHA256);
            let (handles, _) = self.command(
                "StartAuthSession",
                CC_START_AUTH_SESSION,
                &[RH_NULL, RH_NULL],
                Auth::None,
                &params.0,
                1,
            )?;
            let session = handles[0];
            let unsealed = (|| {
                let mut params = Writer::default();
                params.sized(&[]);
                selection(&mut params, pcrs);
                self.command(
                    "PolicyPCR",
                    CC_POLICY_PCR,
                    &[session],
                    Auth::None,
                    &params.0,
                    0,
                )?;
                let (_, out) = self.command(
                    "Unseal",
                    CC_UNSEAL,
                    &[object],
                    Auth::Policy(session),
                    &[],
                    0,
                )?;
                let data = Reader::new(&out, "Unseal response")
                    .sized()
                    .map_err(malformed("Unseal"))?
                    .to_vec();
                Ok(Zeroizing::new(data))
            })();
            // An Unseal that fails leaves the session open; one that succeeds closed it.
            if unsealed.is_err() {
                let _ = self.flush(session);
            }
            unsealed
        })();
        self.flush(object)?;
        result
    }

    /// Whether NV index `index` is the counter [`Tpm::define_counter`] makes: a monotonic
    /// counter with exactly those attributes (an ordinary index put in its place could be
    /// written back to any value).
    pub fn is_our_counter(&mut self, index: u32) -> Result<bool, TpmError> {
        // Bits the TPM sets itself: WRITTEN (29), and the lock states.
        const TPM_MANAGED: u32 = (1 << 29) | (1 << 11) | (1 << 28);
        let (attributes, size) = self.nv_public(index)?;
        Ok(attributes & !TPM_MANAGED == COUNTER_ATTRIBUTES && size == 8)
    }

    /// The value of the NV counter at `index`; `None` when the index does not exist.
    pub fn counter(&mut self, index: u32) -> Result<Option<u64>, TpmError> {
        let mut params = Writer::default();
        params.u16(8).u16(0);
        match self.command(
            "NV_Read",
            CC_NV_READ,
            &[index, index],
            Auth::Password,
            &params.0,
            0,
        ) {
            Ok((_, out)) => {
                let bytes = Reader::new(&out, "NV_Read data")
                    .sized()
                    .map_err(malformed("NV_Read"))?;
                let value: [u8; 8] = bytes.try_into().map_err(|_| TpmError::Malformed {
                    command: "NV_Read",
                    reason: format!("a counter of {} bytes", bytes.len()),
                })?;
                Ok(Some(u64::from_be_bytes(value)))
            }
            Err(TpmError::Response { code, .. }) if code & 0xfff == RC_HANDLE_1 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Defines the NV counter at `index` and increments it once (a counter is readable only
    /// after its first increment); returns its value.
    pub fn define_counter(&mut self, index: u32) -> Result<u64, TpmError> {
        let mut public = Writer::default();
        public
            .u32(index)
            .u16(ALG_SHA256)
            .u32(COUNTER_ATTRIBUTES)
            .sized(&[])
            .u16(8);
        let mut params = Writer::default();
        params.sized(&[]).sized(&public.0);
        self.command(
            "NV_DefineSpace",
            CC_NV_DEFINE_SPACE,
            &[RH_OWNER],
            Auth::Password,
            &params.0,
            0,
        )?;
        self.increment(index)
    }

    /// Increments the NV counter at `index`; returns its new value.
    pub fn increment(&mut self, index: u32) -> Result<u64, TpmError> {
        self.command(
            "NV_Increment",
            CC_NV_INCREMENT,
            &[index, index],
            Auth::Password,
            &[],
            0,
        )?;
        self.counter(index)?.ok_or(TpmError::Malformed {
            command: "NV_Increment",
            reason: format!("counter {index:#x} vanished"),
        })
    }
}

const CC_PCR_EXTEND: u32 = 0x0000_0182;

impl Tpm {
    /// Extends SHA-256 PCR `index` with `digest` (the platform's boot chain does this; tests
    /// do it to change a PCR).
    pub fn extend(&mut self, index: u8, digest: &[u8; 32]) -> Result<(), TpmError> {
        let mut params = Writer::default();
        params.u32(1).u16(ALG_SHA256).raw(digest);
        self.command(
            "PCR_Extend",
            CC_PCR_EXTEND,
            &[u32::from(index)],
            Auth::Password,
            &params.0,
            0,
        )
        .map(|_| ())
    }
}
