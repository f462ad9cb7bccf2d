//! Linux ioctl request numbers, as `<asm-generic/ioctl.h>` encodes them.

/// `_IOWR(ty, nr, size)`: direction read|write in bits 31:30, the argument size in bits 29:16,
/// the type in bits 15:8 and the number in bits 7:0.
pub(super) const fn iowr(ty: u8, nr: u8, size: usize) -> u32 {
    assert!(size < 1 << 14, "ioctl argument too large");
    (3 << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}
