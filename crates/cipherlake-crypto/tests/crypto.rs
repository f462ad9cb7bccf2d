#[path = "crypto/always_encrypted.rs"]
mod always_encrypted;
#[path = "crypto/always_encrypted_tedious.rs"]
mod always_encrypted_tedious;
#[path = "crypto/key_material.rs"]
mod key_material;
#[path = "crypto/stream.rs"]
mod stream;
