//! Streaming AEAD for spill files: round trips and every attack the format must detect.

use std::io::{self, Read, Write};

use cipherlake_crypto::stream::{
    DEFAULT_SEGMENT_SIZE, DecryptingReader, EncryptingWriter, HEADER_LENGTH, StreamError,
    StreamKey, TAG_LENGTH,
};

const SEG: usize = 1024;

fn key(byte: u8) -> StreamKey {
    StreamKey::from_bytes([byte; 32])
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Encrypts `plain` in uneven chunks.
fn encrypt(plain: &[u8], key: &StreamKey, segment_size: usize) -> Vec<u8> {
    let mut writer = EncryptingWriter::with_segment_size(Vec::new(), key, segment_size).unwrap();
    for chunk in plain.chunks(777) {
        writer.write_all(chunk).unwrap();
    }
    writer.flush().unwrap();
    writer.finish().unwrap()
}

fn decrypt(sealed: &[u8], key: &StreamKey) -> io::Result<Vec<u8>> {
    let mut reader = DecryptingReader::new(sealed, key)?;
    let mut out = Vec::new();
    reader.read_to_end(&mut out)?;
    Ok(out)
}

fn stream_error(error: &io::Error) -> StreamError {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<StreamError>())
        .cloned()
        .unwrap_or_else(|| panic!("not a StreamError: {error}"))
}

fn assert_rejected(sealed: &[u8], key: &StreamKey, expected: StreamError) {
    let error = decrypt(sealed, key).expect_err("stream must be rejected");
    assert_eq!(stream_error(&error), expected);
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
}

/// Byte range of segment `index` in a stream of full segments.
fn segment_range(index: usize) -> std::ops::Range<usize> {
    let start = HEADER_LENGTH + index * (SEG + TAG_LENGTH);
    start..start + SEG + TAG_LENGTH
}

#[test]
fn round_trips_across_segment_boundaries() {
    let key = key(1);
    for len in [0, 1, SEG - 1, SEG, SEG + 1, 2 * SEG, 5 * SEG + 123] {
        let plain = data(len);
        let sealed = encrypt(&plain, &key, SEG);
        let segments = len.div_ceil(SEG).max(1);
        assert_eq!(
            sealed.len(),
            HEADER_LENGTH + len + segments * TAG_LENGTH,
            "len {len}"
        );
        assert_eq!(decrypt(&sealed, &key).unwrap(), plain, "len {len}");
    }
}

#[test]
fn round_trips_with_default_segments_and_small_reads() {
    let key = StreamKey::generate().unwrap();
    let plain = data(3 * DEFAULT_SEGMENT_SIZE + 17);
    let mut writer = EncryptingWriter::new(Vec::new(), &key).unwrap();
    writer.write_all(&plain).unwrap();
    let sealed = writer.finish().unwrap();
    assert_eq!(sealed.len(), HEADER_LENGTH + plain.len() + 4 * TAG_LENGTH);

    let mut reader = DecryptingReader::new(sealed.as_slice(), &key).unwrap();
    let mut out = Vec::new();
    let mut small = [0u8; 1000];
    loop {
        let n = reader.read(&mut small).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&small[..n]);
    }
    assert_eq!(out, plain);
    // Reads past the end keep returning end of stream.
    assert_eq!(reader.read(&mut small).unwrap(), 0);
}

#[test]
fn ciphertext_does_not_contain_plaintext_and_is_randomised() {
    let key = key(2);
    let plain = b"canary-canary-canary-canary".repeat(100);
    let a = encrypt(&plain, &key, SEG);
    let b = encrypt(&plain, &key, SEG);
    assert!(!a.windows(13).any(|w| w == b"canary-canary"));
    assert_ne!(a, b, "per-stream random nonce prefix");
}

#[test]
fn truncation_mid_segment_is_rejected() {
    let key = key(3);
    let sealed = encrypt(&data(3 * SEG), &key, SEG);
    // Cut inside segment 1 (0-based): it is read as the last, short, segment.
    let cut = segment_range(1).start + 100;
    assert_rejected(
        &sealed[..cut],
        &key,
        StreamError::Authentication { segment: 1 },
    );
    // Cut off only the last byte of the final tag.
    assert_rejected(
        &sealed[..sealed.len() - 1],
        &key,
        StreamError::Authentication { segment: 2 },
    );
}

#[test]
fn truncation_at_a_segment_boundary_is_rejected() {
    let key = key(4);
    let sealed = encrypt(&data(3 * SEG), &key, SEG);
    // Drop the last segment: segment 1 was not sealed as last.
    let cut = segment_range(1).end;
    assert_rejected(
        &sealed[..cut],
        &key,
        StreamError::Authentication { segment: 1 },
    );
    // Header only: an empty last segment has no tag.
    assert_rejected(
        &sealed[..HEADER_LENGTH],
        &key,
        StreamError::Authentication { segment: 0 },
    );
    // Inside the header.
    assert_rejected(
        &sealed[..HEADER_LENGTH - 1],
        &key,
        StreamError::TruncatedHeader,
    );
}

#[test]
fn appended_data_is_rejected() {
    let key = key(5);
    let mut sealed = encrypt(&data(2 * SEG), &key, SEG);
    sealed.push(0);
    // The final full segment is now followed by a byte, so it is read as not last.
    assert_rejected(&sealed, &key, StreamError::Authentication { segment: 1 });
}

#[test]
fn a_flipped_byte_anywhere_is_rejected() {
    let key = key(6);
    let plain = data(3 * SEG + 10);
    let sealed = encrypt(&plain, &key, SEG);
    // Nonce prefix bytes of the header (magic, version and size have their own checks below).
    for position in [
        HEADER_LENGTH - 1,
        HEADER_LENGTH,
        segment_range(1).start + 5,
        segment_range(2).end - 1,
        sealed.len() - 1,
    ] {
        let mut tampered = sealed.clone();
        tampered[position] ^= 0x40;
        let error = decrypt(&tampered, &key).expect_err("tampering must be detected");
        assert!(
            matches!(stream_error(&error), StreamError::Authentication { .. }),
            "position {position}: {error}"
        );
    }
    let mut bad_magic = sealed.clone();
    bad_magic[0] ^= 1;
    assert_rejected(&bad_magic, &key, StreamError::BadMagic);
    let mut bad_version = sealed.clone();
    bad_version[4] = 9;
    assert_rejected(&bad_version, &key, StreamError::UnsupportedVersion(9));
    let mut other_size = sealed.clone();
    other_size[7] ^= 0x08; // segment size 1024 -> 3072: authenticated through the header
    assert_rejected(
        &other_size,
        &key,
        StreamError::Authentication { segment: 0 },
    );
    let mut huge_size = sealed;
    huge_size[5] = 0xff;
    let error = decrypt(&huge_size, &key).unwrap_err();
    assert!(matches!(
        stream_error(&error),
        StreamError::InvalidSegmentSize(_)
    ));
}

#[test]
fn reordered_segments_are_rejected() {
    let key = key(7);
    let sealed = encrypt(&data(3 * SEG + 1), &key, SEG);
    let mut swapped = sealed.clone();
    let (a, b) = (segment_range(0), segment_range(1));
    swapped[a.clone()].copy_from_slice(&sealed[b.clone()]);
    swapped[b].copy_from_slice(&sealed[a]);
    assert_rejected(&swapped, &key, StreamError::Authentication { segment: 0 });
}

#[test]
fn a_segment_from_another_stream_is_rejected() {
    let key = key(8);
    let plain = data(3 * SEG + 1);
    let first = encrypt(&plain, &key, SEG);
    let second = encrypt(&plain, &key, SEG);
    let mut mixed = first.clone();
    let range = segment_range(1);
    mixed[range.clone()].copy_from_slice(&second[range]);
    assert_rejected(&mixed, &key, StreamError::Authentication { segment: 1 });
    // The other stream's header with this stream's segments fails too.
    let mut header_swapped = first;
    header_swapped[..HEADER_LENGTH].copy_from_slice(&second[..HEADER_LENGTH]);
    assert_rejected(
        &header_swapped,
        &key,
        StreamError::Authentication { segment: 0 },
    );
}

#[test]
fn wrong_key_is_rejected() {
    let sealed = encrypt(&data(10), &key(9), SEG);
    assert_rejected(
        &sealed,
        &key(10),
        StreamError::Authentication { segment: 0 },
    );
}

#[test]
fn plaintext_of_a_failed_segment_is_not_returned_and_reader_stays_failed() {
    let key = key(11);
    let sealed = encrypt(&data(3 * SEG), &key, SEG);
    let mut tampered = sealed;
    tampered[segment_range(1).start] ^= 1;
    let mut reader = DecryptingReader::new(tampered.as_slice(), &key).unwrap();
    let mut buf = vec![0u8; SEG];
    // Segment 0 authenticates and is returned.
    reader.read_exact(&mut buf).unwrap();
    assert_eq!(buf, data(SEG));
    let error = reader.read(&mut buf).unwrap_err();
    assert_eq!(
        stream_error(&error),
        StreamError::Authentication { segment: 1 }
    );
    let error = reader.read(&mut buf).unwrap_err();
    assert_eq!(stream_error(&error), StreamError::Failed);
}

#[test]
fn writer_dropped_without_finish_leaves_an_unreadable_stream() {
    let key = key(12);
    let mut sink = Vec::new();
    {
        let mut writer = EncryptingWriter::with_segment_size(&mut sink, &key, SEG).unwrap();
        writer.write_all(&data(2 * SEG + 5)).unwrap();
    }
    assert_rejected(&sink, &key, StreamError::Authentication { segment: 1 });
}

#[test]
fn invalid_segment_sizes_and_redacted_key() {
    let key = key(13);
    for size in [0, 16 * 1024 * 1024 + 1] {
        let error = EncryptingWriter::with_segment_size(Vec::new(), &key, size).unwrap_err();
        assert_eq!(stream_error(&error), StreamError::InvalidSegmentSize(size));
    }
    let debug = format!("{key:?}");
    assert!(!debug.contains("13"), "{debug}");
}

#[test]
fn adapters_are_send() {
    fn assert_send<T: Send>() {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send::<EncryptingWriter<std::fs::File>>();
    assert_send::<DecryptingReader<std::fs::File>>();
    assert_send_sync::<StreamKey>();
    assert_send_sync::<StreamError>();
}
