//! Which container an image is stored in, found from its first bytes, never from its name.

use std::fmt;

/// The compression (or archive) wrapped around an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// No container: the bytes are the image.
    Raw,
    /// xz (single or multi-block, concatenated streams).
    Xz,
    /// gzip.
    Gzip,
    /// bzip2.
    Bzip2,
    /// Zstandard.
    Zstd,
    /// A zip archive holding the image.
    Zip,
}

/// How many leading bytes [`Format::detect`] looks at; also enough for a zstd frame header.
pub const MAGIC_LEN: usize = 32;

impl Format {
    /// Identifies the format from the start of the file. Anything unrecognised is a raw image
    /// (.img, .iso, .wic and friends have no common magic).
    pub fn detect(head: &[u8]) -> Format {
        const ZSTD_SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
        const ZSTD_SKIPPABLE: u32 = 0x184D_2A50;
        if head.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0x00]) {
            Format::Xz
        } else if head.starts_with(&[0x1F, 0x8B, 0x08]) {
            Format::Gzip
        } else if head.len() >= 4 && head.starts_with(b"BZh") && (b'1'..=b'9').contains(&head[3]) {
            Format::Bzip2
        } else if head.starts_with(&[0x28, 0xB5, 0x2F, 0xFD])
            || (head.len() >= 4
                && u32::from_le_bytes([head[0], head[1], head[2], head[3]]) & ZSTD_SKIPPABLE_MASK
                    == ZSTD_SKIPPABLE)
        {
            Format::Zstd
        } else if head.starts_with(b"PK\x03\x04") {
            Format::Zip
        } else {
            Format::Raw
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Raw => "raw",
            Format::Xz => "xz",
            Format::Gzip => "gzip",
            Format::Bzip2 => "bzip2",
            Format::Zstd => "zstd",
            Format::Zip => "zip",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Format;

    #[test]
    fn detects_each_magic() {
        assert_eq!(Format::detect(b"\xFD7zXZ\x00\x00\x04"), Format::Xz);
        assert_eq!(Format::detect(b"\x1F\x8B\x08\x00"), Format::Gzip);
        assert_eq!(Format::detect(b"BZh91AY&SY"), Format::Bzip2);
        assert_eq!(Format::detect(b"\x28\xB5\x2F\xFD\x04"), Format::Zstd);
        assert_eq!(Format::detect(b"\x50\x2A\x4D\x18\x00"), Format::Zstd);
        assert_eq!(Format::detect(b"PK\x03\x04\x14\x00"), Format::Zip);
    }

    #[test]
    fn anything_else_is_raw() {
        assert_eq!(Format::detect(b""), Format::Raw);
        assert_eq!(Format::detect(&[0u8; 512]), Format::Raw);
        assert_eq!(Format::detect(b"BZh0"), Format::Raw);
        assert_eq!(Format::detect(b"PK\x05\x06"), Format::Raw);
        assert_eq!(Format::detect(b"\xFD7zXZ"), Format::Raw);
    }
}
