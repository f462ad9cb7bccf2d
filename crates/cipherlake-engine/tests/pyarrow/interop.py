"""pyarrow side of the cipherlake Parquet encryption interop tests.

    interop.py write DIR   writes plain.parquet and one encrypted file per mode (names below)
    interop.py read DIR    reads every *.parquet in DIR with the same KMS and prints, per file,
                           "NAME ROWS SHA256" of a canonical rendering of its rows

The KMS wraps keys like parquet-java's InMemoryKMS: base64(nonce(12) || AES-GCM(master key,
key, AAD = UTF-8 master key id) || tag). The master keys are those of tests/engine/crypt.rs.
"""

import base64
import hashlib
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MASTER = {"kf": bytes(range(16)), "kc": bytes(range(32, 64)), "kl": bytes(range(64, 80))}
ROWS = 1000


class InMemoryKms(pe.KmsClient):
    def __init__(self, config):
        pe.KmsClient.__init__(self)

    def wrap_key(self, key_bytes, master_key_identifier):
        nonce = os.urandom(12)
        ct = AESGCM(MASTER[master_key_identifier]).encrypt(
            nonce, bytes(key_bytes), master_key_identifier.encode())
        return base64.b64encode(nonce + ct).decode()

    def unwrap_key(self, wrapped_key, master_key_identifier):
        raw = base64.b64decode(wrapped_key)
        return AESGCM(MASTER[master_key_identifier]).decrypt(
            raw[:12], raw[12:], master_key_identifier.encode())


def sample():
    cities = ["Manhattan", "Queens", "Brooklyn", "Bronx"]
    return pa.table({
        "id": pa.array(range(ROWS), pa.int64()),
        "city": pa.array([None if i % 7 == 3 else cities[i % 4] for i in range(ROWS)], pa.string()),
        "amount": pa.array([None if i % 5 == 0 else i * 1.25 for i in range(ROWS)], pa.float64()),
        "note": pa.array([f"CANARY-7f3a9c-SECRET-{i}" for i in range(ROWS)], pa.string()),
    })


# name -> (double_wrapping, plaintext_footer, per-column keys, data key bits, compression, algorithm)
MODES = {
    "double_encfooter_uniform_128_snappy": (True, False, False, 128, "snappy", "AES_GCM_V1"),
    "double_encfooter_columns_256_zstd": (True, False, True, 256, "zstd", "AES_GCM_V1"),
    "double_plainfooter_columns_128_zstd": (True, True, True, 128, "zstd", "AES_GCM_V1"),
    "single_encfooter_columns_128_snappy": (False, False, True, 128, "snappy", "AES_GCM_V1"),
    "single_plainfooter_uniform_256_snappy": (False, True, False, 256, "snappy", "AES_GCM_V1"),
    "single_encfooter_uniform_256_zstd": (False, False, False, 256, "zstd", "AES_GCM_V1"),
}
CTR_MODE = ("ctr_unsupported", (True, False, False, 128, "snappy", "AES_GCM_CTR_V1"))


def factory():
    return pe.CryptoFactory(lambda config: InMemoryKms(config))


def write(directory):
    table = sample()
    pq.write_table(table, os.path.join(directory, "plain.parquet"), row_group_size=300)
    for name, (double, plain_footer, columns, bits, compression, algorithm) in \
            list(MODES.items()) + [CTR_MODE]:
        config = dict(footer_key="kf", double_wrapping=double, plaintext_footer=plain_footer,
                      data_key_length_bits=bits, encryption_algorithm=algorithm,
                      cache_lifetime=None, internal_key_material=True)
        if columns:
            config["column_keys"] = {"kc": ["id", "city", "amount"], "kl": ["note"]}
        else:
            config["uniform_encryption"] = True
        props = factory().file_encryption_properties(
            pe.KmsConnectionConfig(), pe.EncryptionConfiguration(**config))
        path = os.path.join(directory, name + ".parquet")
        with pq.ParquetWriter(path, table.schema, encryption_properties=props,
                              compression=compression) as writer:
            writer.write_table(table, row_group_size=300)


def digest(table):
    table = table.select(["id", "city", "amount", "note"]).sort_by("id")
    text = repr(table.to_pydict()).encode()
    return table.num_rows, hashlib.sha256(text).hexdigest()


def read(directory):
    decryption = factory().file_decryption_properties(
        pe.KmsConnectionConfig(), pe.DecryptionConfiguration(cache_lifetime=None))
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".parquet"):
            continue
        table = pq.ParquetFile(os.path.join(directory, name),
                               decryption_properties=decryption).read()
        rows, sha = digest(table)
        print(name, rows, sha)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "read"):
        sys.exit(__doc__)
    (write if sys.argv[1] == "write" else read)(sys.argv[2])
