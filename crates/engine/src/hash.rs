//! Hashing an image the way `sha256sum` would hash the decompressed file, so users can check
//! it against a published checksum.

use std::str::FromStr;

use sha2::digest::DynDigest;

use crate::image::Image;
use crate::pipeline::Decoding;
use crate::progress::{CancelToken, Phase, Progress};
use crate::Error;

/// The digests `hash` offers: the ones image publishers print next to their downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// SHA-256, what Raspberry Pi Imager's catalog publishes.
    Sha256,
    /// SHA-1.
    Sha1,
    /// MD5.
    Md5,
}

impl Algorithm {
    fn hasher(self) -> Box<dyn DynDigest> {
        match self {
            Algorithm::Sha256 => Box::new(sha2::Sha256::default()),
            Algorithm::Sha1 => Box::new(sha1::Sha1::default()),
            Algorithm::Md5 => Box::new(md5::Md5::default()),
        }
    }
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Algorithm, String> {
        match s.to_ascii_lowercase().as_str() {
            "sha256" => Ok(Algorithm::Sha256),
            "sha1" => Ok(Algorithm::Sha1),
            "md5" => Ok(Algorithm::Md5),
            _ => Err(format!("unknown algorithm {s:?}: use sha256, sha1 or md5")),
        }
    }
}

/// Lower-case hexadecimal, as checksum files print it.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a hexadecimal SHA-256 (64 digits, either case).
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Bytes from hexadecimal digits (an even number of them), `None` otherwise.
pub(crate) fn parse_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 || !hex.is_ascii() {
        return None;
    }
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// The result of hashing an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashReport {
    /// The digest in lower-case hex.
    pub hex: String,
    /// How many bytes were hashed.
    pub bytes: u64,
}

/// Hashes the decoded image (or, for an image opened with [`crate::OpenAs::Raw`], the file as
/// stored).
pub fn hash(
    image: Image,
    algorithm: Algorithm,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(Progress),
) -> Result<HashReport, Error> {
    let total = image.size().map(|s| s.bytes);
    let decoding = Decoding::start(image, false, 0, cancel);
    let mut hasher = algorithm.hasher();
    let outcome = (|| {
        while let Some(chunk) = decoding.next()? {
            hasher.update(chunk.data());
            progress(Progress {
                phase: Phase::Hash,
                bytes_done: chunk.end(),
                bytes_total: total,
            });
            decoding.recycle(chunk.buf);
        }
        Ok(())
    })();
    let summary = decoding.finish(outcome)?;
    Ok(HashReport {
        hex: to_hex(&hasher.finalize()),
        bytes: summary.len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_round_trips() {
        let hex = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
        let bytes = parse_sha256(hex).unwrap();
        assert_eq!(to_hex(&bytes), hex.to_ascii_lowercase());
        assert_eq!(parse_sha256("abc"), None);
        assert_eq!(parse_sha256(&"zz".repeat(32)), None);
    }

    #[test]
    fn algorithm_names() {
        assert_eq!("SHA256".parse::<Algorithm>(), Ok(Algorithm::Sha256));
        assert_eq!("md5".parse::<Algorithm>(), Ok(Algorithm::Md5));
        assert!("crc32".parse::<Algorithm>().is_err());
    }
}
