//! SQL Server Always Encrypted formats, byte-compatible with SQL Server and its drivers.
//!
//! - [`cell`]: the AEAD_AES_256_CBC_HMAC_SHA256 cell cipher ([`CellKey`]), deterministic and
//!   randomized.
//! - [`types`]: SQL types and values ([`SqlType`], [`SqlValue`]) and the normalisation of
//!   values to the plaintext bytes SQL Server encrypts.
//! - [`cek`]: encrypted column encryption key values (RSA-OAEP-SHA1, signed with
//!   RSA-SHA256 by the column master key) and column master key metadata signatures.
//!
//! [`encrypt_value`] and [`decrypt_value`] combine the cipher and the normalisation.

pub mod cek;
pub mod cell;
mod rsa_private;
mod temporal;
pub mod types;

pub use cek::{
    CekError, EncryptedCek, decrypt_cek, encrypt_cek, encrypt_cek_unsigned, private_key_from_pem,
    public_key_from_certificate_pem, public_key_from_pem, sign_cmk_metadata, verify_cmk_metadata,
};
pub use cell::{CellError, CellKey, EncryptionType};
pub use rsa::{PrivateKey as RsaPrivateKey, PublicKey as RsaPublicKey};
pub use temporal::Date;
pub use types::{CodePage, Decimal, SqlType, SqlValue, TypeError, denormalize, normalize};
/// Secret buffers returned by this module (e.g. by [`decrypt_cek`]) wipe themselves on drop.
pub use zeroize::Zeroizing;

/// Any error of the Always Encrypted value functions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The cell could not be encrypted or decrypted.
    #[error(transparent)]
    Cell(#[from] CellError),
    /// The value does not fit the type, or decrypted bytes are not a value of the type.
    #[error(transparent)]
    Type(#[from] TypeError),
}

/// Normalises `value` as a `ty` column value and encrypts it into a cell.
pub fn encrypt_value(
    key: &CellKey,
    ty: &SqlType,
    value: &SqlValue,
    mode: EncryptionType,
) -> Result<Vec<u8>, Error> {
    let plaintext = zeroize::Zeroizing::new(normalize(ty, value)?);
    Ok(key.encrypt(&plaintext, mode)?)
}

/// Authenticates and decrypts a cell and reads the plaintext as a `ty` value.
pub fn decrypt_value(key: &CellKey, ty: &SqlType, cell: &[u8]) -> Result<SqlValue, Error> {
    let plaintext = zeroize::Zeroizing::new(key.decrypt(cell)?);
    Ok(denormalize(ty, &plaintext)?)
}
