//! Pure cryptographic building blocks of cipherlake: no I/O, no DataFusion.
//!
//! - [`always_encrypted`]: SQL Server Always Encrypted cell cipher, type normalisation and
//!   column encryption key values.
//! - [`key_material`]: Parquet key-management-tools key material (PKMT1) and master-key wrapping.
//! - [`stream`]: streaming AEAD for spill files.

pub mod always_encrypted;
pub mod key_material;
pub mod stream;
