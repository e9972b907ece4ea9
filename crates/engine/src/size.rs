//! The decompressed size of an image, read from the container's own bookkeeping without
//! decoding: the xz index, zstd frame headers, the gzip trailer. Used for the size check
//! before anything is written, and for progress.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// How far a size can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeKind {
    /// The image is exactly this many bytes.
    Exact,
    /// The image is at least this many bytes (the first zstd frame of a stream).
    AtLeast,
    /// A guess for progress only (the gzip trailer keeps the size modulo 4 GiB, and only
    /// for the last member).
    Estimate,
}

/// The decoded size of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSize {
    /// The size in bytes.
    pub bytes: u64,
    /// How sure it is.
    pub kind: SizeKind,
}

impl ImageSize {
    /// A size known to the byte.
    pub fn exact(bytes: u64) -> ImageSize {
        ImageSize {
            bytes,
            kind: SizeKind::Exact,
        }
    }

    /// A size that proves the image cannot fit when it exceeds the target.
    pub fn lower_bound(&self) -> Option<u64> {
        match self.kind {
            SizeKind::Exact | SizeKind::AtLeast => Some(self.bytes),
            SizeKind::Estimate => None,
        }
    }
}

fn read_exact_at(file: &File, len: usize, offset: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Reads an xz variable-length integer (7 bits per byte, at most 9 bytes).
fn read_vli(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..9 {
        let byte = *data.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Sums the uncompressed sizes in the index of every stream of an .xz file, walking
/// backwards from the end over stream padding, footers and indexes. `None` when the file's
/// bookkeeping does not add up; the decoder then reports the damage.
pub fn xz_size(file: &File, len: u64) -> io::Result<Option<u64>> {
    const HEADER_MAGIC: [u8; 6] = [0xFD, b'7', b'z', b'X', b'Z', 0x00];
    const MAX_INDEX: u64 = 64 << 20;
    let mut end = len;
    let mut total = 0u64;
    let mut streams = 0;
    loop {
        while end >= 4 && read_exact_at(file, 4, end - 4)? == [0; 4] {
            end -= 4;
        }
        if end == 0 && streams > 0 {
            return Ok(Some(total));
        }
        if end < 24 {
            return Ok(None);
        }
        let footer = read_exact_at(file, 12, end - 12)?;
        if &footer[10..12] != b"YZ" {
            return Ok(None);
        }
        let backward = (u64::from(u32::from_le_bytes([
            footer[4], footer[5], footer[6], footer[7],
        ])) + 1)
            * 4;
        if backward > MAX_INDEX || backward + 24 > end {
            return Ok(None);
        }
        let index_start = end - 12 - backward;
        let index = read_exact_at(file, backward as usize, index_start)?;
        let Some((blocks_len, uncompressed)) = parse_xz_index(&index) else {
            return Ok(None);
        };
        // The index's sizes are the file's word: a sum that cannot be real is damage.
        let Some(stream_start) = blocks_len
            .checked_add(12)
            .and_then(|stream| index_start.checked_sub(stream))
        else {
            return Ok(None);
        };
        if read_exact_at(file, 6, stream_start)? != HEADER_MAGIC {
            return Ok(None);
        }
        let Some(sum) = total.checked_add(uncompressed) else {
            return Ok(None);
        };
        total = sum;
        streams += 1;
        end = stream_start;
    }
}

/// Returns (bytes taken by the blocks, sum of uncompressed sizes) from an xz index.
fn parse_xz_index(index: &[u8]) -> Option<(u64, u64)> {
    if index.first() != Some(&0) {
        return None;
    }
    let mut pos = 1;
    let records = read_vli(index, &mut pos)?;
    let (mut blocks, mut uncompressed) = (0u64, 0u64);
    for _ in 0..records {
        let unpadded = read_vli(index, &mut pos)?;
        uncompressed = uncompressed.checked_add(read_vli(index, &mut pos)?)?;
        blocks = blocks.checked_add(unpadded.div_ceil(4) * 4)?;
    }
    Some((blocks, uncompressed))
}

const ZSTD_MAGIC: u32 = 0xFD2F_B528;

/// The content size a zstd frame header declares, and the header's length. `None` when the
/// header does not declare one.
fn zstd_frame_header(head: &[u8]) -> Option<(u64, usize)> {
    if head.len() < 5 || u32::from_le_bytes(head[..4].try_into().ok()?) != ZSTD_MAGIC {
        return None;
    }
    let descriptor = head[4];
    let single_segment = descriptor & 0x20 != 0;
    let dict_len = [0, 1, 2, 4][usize::from(descriptor & 0x03)];
    let fcs_len = match descriptor >> 6 {
        0 if single_segment => 1,
        0 => return None,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let start = 5 + usize::from(!single_segment) + dict_len;
    let field = head.get(start..start + fcs_len)?;
    let mut bytes = [0u8; 8];
    bytes[..fcs_len].copy_from_slice(field);
    let value = u64::from_le_bytes(bytes) + if fcs_len == 2 { 256 } else { 0 };
    Some((value, start + fcs_len))
}

/// The first zstd frame's declared size: a lower bound when the rest of the stream is unseen.
pub fn zstd_first_frame_size(head: &[u8]) -> Option<u64> {
    zstd_frame_header(head).map(|(size, _)| size)
}

/// Adds up the declared content sizes of every frame in a .zst file, hopping from block
/// header to block header. `None` when a frame does not declare its size or the walk does not
/// land exactly on the end of the file.
pub fn zstd_size(file: &File, len: u64) -> io::Result<Option<u64>> {
    let mut pos = 0u64;
    let mut total = 0u64;
    while pos < len {
        let mut head = [0u8; 18];
        let avail = (len - pos).min(head.len() as u64) as usize;
        file.read_exact_at(&mut head[..avail], pos)?;
        let head = &head[..avail];
        if avail < 8 {
            return Ok(None);
        }
        let magic = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
        if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
            let skip = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
            pos += 8 + u64::from(skip);
            continue;
        }
        let Some((size, header_len)) = zstd_frame_header(head) else {
            return Ok(None);
        };
        let has_checksum = head[4] & 0x04 != 0;
        // Frame sizes are the file's word: a sum past 2^64 is damage, not a size.
        let Some(sum) = total.checked_add(size) else {
            return Ok(None);
        };
        total = sum;
        pos += header_len as u64;
        loop {
            if pos + 3 > len {
                return Ok(None);
            }
            let header = read_exact_at(file, 3, pos)?;
            let header =
                u32::from(header[0]) | u32::from(header[1]) << 8 | u32::from(header[2]) << 16;
            let last = header & 1 != 0;
            let block_type = (header >> 1) & 3;
            let block_len = u64::from(header >> 3);
            pos += 3 + match block_type {
                1 => 1,
                3 => return Ok(None),
                _ => block_len,
            };
            if last {
                break;
            }
        }
        if has_checksum {
            pos += 4;
        }
    }
    Ok((pos == len).then_some(total))
}

/// Estimates a gzip file's decoded size from its trailer, which holds the size modulo 2^32:
/// the smallest such value that deflate could have produced from a file this long.
pub fn gzip_estimate(file: &File, len: u64) -> io::Result<Option<u64>> {
    const HEADER_AND_TRAILER: u64 = 18;
    if len < HEADER_AND_TRAILER + 2 {
        return Ok(None);
    }
    let trailer = read_exact_at(file, 4, len - 4)?;
    let modulo = u64::from(u32::from_le_bytes(
        trailer[..4].try_into().expect("4 bytes"),
    ));
    // Deflate expands data by at most 1/8 (9-bit fixed Huffman codes for literals), so the
    // decoded image is at least 7/8 of the compressed payload.
    let payload = len - HEADER_AND_TRAILER;
    let minimum = payload - payload / 8;
    let mut estimate = modulo;
    while estimate < minimum {
        estimate += 1 << 32;
    }
    Ok(Some(estimate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn compress(tool: &str, args: &[&str], data: &[u8]) -> Vec<u8> {
        let mut child = Command::new(tool)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{tool} is needed for this test: {e}"));
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&data).unwrap());
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        assert!(out.status.success());
        out.stdout
    }

    fn file_with(data: &[u8]) -> (tempfile::NamedTempFile, File, u64) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(data).unwrap();
        let file = File::open(tmp.path()).unwrap();
        (tmp, file, data.len() as u64)
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn xz_index_of_multi_block_and_concatenated_streams() {
        let data = sample(3 << 20);
        let mut xz = compress("xz", &["-T2", "--block-size=1MiB", "-c"], &data);
        let (_t, f, len) = file_with(&xz);
        assert_eq!(xz_size(&f, len).unwrap(), Some(3 << 20));

        xz.extend_from_slice(&[0; 8]);
        xz.extend(compress("xz", &["-c"], &data[..1000]));
        let (_t, f, len) = file_with(&xz);
        assert_eq!(xz_size(&f, len).unwrap(), Some((3 << 20) + 1000));
    }

    #[test]
    fn xz_truncated_has_no_size() {
        let xz = compress("xz", &["-c"], &sample(100_000));
        let (_t, f, len) = file_with(&xz[..xz.len() - 7]);
        assert_eq!(xz_size(&f, len).unwrap(), None);
    }

    #[test]
    fn zstd_frames_add_up() {
        let data = sample(300_000);
        // From a pipe zstd records the size only when told it.
        let mut zst = compress("zstd", &["-c", "-q", "--stream-size=300000"], &data);
        let (_t, f, len) = file_with(&zst);
        assert_eq!(zstd_size(&f, len).unwrap(), Some(300_000));
        assert_eq!(zstd_first_frame_size(&zst), Some(300_000));

        zst.extend(compress(
            "zstd",
            &["-c", "-q", "--no-check", "--stream-size=5"],
            &data[..5],
        ));
        let (_t, f, len) = file_with(&zst);
        assert_eq!(zstd_size(&f, len).unwrap(), Some(300_005));
    }

    #[test]
    fn zstd_frame_sizes_that_overflow_have_no_size() {
        // Two empty frames, each declaring 2^63 bytes (8-byte content size field).
        let frame = |out: &mut Vec<u8>| {
            out.extend_from_slice(&0xFD2F_B528u32.to_le_bytes());
            out.push(0xE0); // 8-byte size, single segment
            out.extend_from_slice(&(1u64 << 63).to_le_bytes());
            out.extend_from_slice(&[0x01, 0x00, 0x00]); // last block, raw, empty
        };
        let mut zst = Vec::new();
        frame(&mut zst);
        frame(&mut zst);
        let (_t, f, len) = file_with(&zst);
        assert_eq!(zstd_size(&f, len).unwrap(), None);
    }

    #[test]
    fn zstd_without_declared_size_is_unknown() {
        let zst = compress("zstd", &["-c", "-q", "--no-content-size"], &sample(1000));
        let (_t, f, len) = file_with(&zst);
        assert_eq!(zstd_size(&f, len).unwrap(), None);
    }

    #[test]
    fn gzip_trailer_gives_the_size() {
        let gz = compress("gzip", &["-c"], &sample(123_456));
        let (_t, f, len) = file_with(&gz);
        assert_eq!(gzip_estimate(&f, len).unwrap(), Some(123_456));
    }

    #[test]
    fn an_xz_index_whose_block_sizes_overflow_has_no_size() {
        // Stream header, an index of two records whose unpadded sizes add up to nearly
        // 2^64 (so "blocks + stream header" overflowed), and a footer pointing at it.
        let mut xz = vec![0xFD, b'7', b'z', b'X', b'Z', 0, 0, 0, 0, 0, 0, 0];
        xz.extend_from_slice(&[0x00, 0x02]);
        xz.extend_from_slice(&[0xFF; 8]);
        xz.extend_from_slice(&[0x7F, 0x00]);
        xz.extend_from_slice(&[0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x00]);
        xz.extend_from_slice(&[0x00, 0x00]);
        assert_eq!(xz.len(), 36);
        xz.extend_from_slice(&[0, 0, 0, 0, 5, 0, 0, 0, 0, 0, b'Y', b'Z']);
        let (_t, f, len) = file_with(&xz);
        assert_eq!(xz_size(&f, len).unwrap(), None);
    }

    #[test]
    fn vli_decoding() {
        let mut pos = 0;
        assert_eq!(read_vli(&[0xE5, 0x8E, 0x26], &mut pos), Some(624_485));
        assert_eq!(pos, 3);
        assert_eq!(read_vli(&[0x80], &mut 0), None);
    }
}
