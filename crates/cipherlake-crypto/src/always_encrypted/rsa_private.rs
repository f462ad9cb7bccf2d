//! Every RSA private-key operation of the Always Encrypted code, in one place so that the
//! implementation can be swapped.
//!
//! Backed by the `rsa` crate 0.10, whose private-key arithmetic uses `crypto-bigint`
//! constant-time modular exponentiation with blinding (the fix for RUSTSEC-2023-0071, the
//! Marvin timing attack on 0.9 and earlier). OAEP decoding failures are reported as a single
//! opaque error.

use rsa::PrivateKey;
use sha1::Sha1;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The private-key operation failed (bad ciphertext, RNG failure, or a key too small).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PrivateOpFailed;

/// RSAES-OAEP decryption with SHA-1 for the label hash and MGF1, empty label.
pub(crate) fn oaep_sha1_decrypt(
    key: &PrivateKey,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, PrivateOpFailed> {
    key.oaep_decrypt::<Sha1>(ciphertext)
        .map(Zeroizing::new)
        .map_err(|_| PrivateOpFailed)
}

/// RSASSA-PKCS1-v1_5 signature over SHA-256(`message`).
pub(crate) fn pkcs1v15_sha256_sign(
    key: &PrivateKey,
    message: &[u8],
) -> Result<Vec<u8>, PrivateOpFailed> {
    key.pkcs1v15_sign::<Sha256>(message)
        .map_err(|_| PrivateOpFailed)
}
