//! Always Encrypted decrypt throughput: cells per second on one core, for deterministic
//! `bigint` and `nvarchar(50)` cells (authenticate, decrypt, denormalise).

use cipherlake_crypto::always_encrypted::{
    CellKey, EncryptionType, SqlType, SqlValue, decrypt_value, encrypt_value,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const CELLS: usize = 1000;

fn cells(key: &CellKey, ty: &SqlType, value: impl Fn(usize) -> String) -> Vec<Vec<u8>> {
    (0..CELLS)
        .map(|i| {
            let v = SqlValue::parse(ty, &value(i)).expect("valid value");
            encrypt_value(key, ty, &v, EncryptionType::Deterministic).expect("encrypts")
        })
        .collect()
}

fn decrypt(c: &mut Criterion) {
    let key = CellKey::new(&[0x5a; 32]).expect("32-byte key");
    let bigint: SqlType = "bigint".parse().expect("type");
    let nvarchar: SqlType = "nvarchar(50)".parse().expect("type");
    let cases = [
        (
            "bigint",
            bigint,
            cells(&key, &bigint, |i| {
                (i as i64 * 7_919 - 3_000_000).to_string()
            }),
        ),
        // 50 characters: a full nvarchar(50) value (100 bytes of UTF-16).
        (
            "nvarchar(50)",
            nvarchar,
            cells(&key, &nvarchar, |i| {
                format!("{i:0>10} customer name and address, line 2 of 3.")
            }),
        ),
    ];
    let mut group = c.benchmark_group("always_encrypted_decrypt_deterministic");
    group.throughput(Throughput::Elements(CELLS as u64));
    for (name, ty, cells) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| {
                for cell in cells {
                    black_box(decrypt_value(&key, ty, black_box(cell)).expect("decrypts"));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decrypt);
criterion_main!(benches);
