//! bmaptool's block maps (`.bmap`): read in its formats 1.x and 2.0, and written in 2.0.
//!
//! A block map lists the blocks of an image that hold data, as inclusive ranges of block
//! numbers, each with a checksum of its bytes (SHA-1 in 1.3, the `ChecksumType` of 1.4 and
//! 2.0; none in 1.0-1.2 or where `bmaptool create --no-checksum` left them out), and a
//! checksum of the file itself (`BmapFileSHA1` in 1.3, `BmapFileChecksum` in 1.4/2.0),
//! computed with its own digits replaced by zeros. Every field is checked when a map is
//! read: a map that does not hold together is an error naming the element, never a panic
//! and never a shorter copy. The XML is parsed with `roxmltree` (read-only, no DTDs, no
//! entities), already in the dependency tree through iced's font stack.

use std::fmt::Write as _;
use std::io;

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::hash::to_hex;
use crate::usage::Usage;
use crate::Error;

/// The block size cardsmith's maps use, as bmaptool's on most filesystems.
pub const BMAP_BLOCK: u64 = 4096;

/// How a map's ranges are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeChecksum {
    /// SHA-1 (formats 1.3, and 1.4/2.0 when asked).
    Sha1,
    /// SHA-256 (bmaptool's default since 1.4, and cardsmith's).
    Sha256,
}

impl RangeChecksum {
    fn len(self) -> usize {
        match self {
            RangeChecksum::Sha1 => 20,
            RangeChecksum::Sha256 => 32,
        }
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            RangeChecksum::Sha1 => Sha1::digest(data).to_vec(),
            RangeChecksum::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// A hasher of this kind, for bytes that come in pieces.
    fn hasher(self) -> Box<dyn sha2::digest::DynDigest + Send> {
        match self {
            RangeChecksum::Sha1 => Box::new(Sha1::new()),
            RangeChecksum::Sha256 => Box::new(Sha256::new()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            RangeChecksum::Sha1 => "sha1",
            RangeChecksum::Sha256 => "sha256",
        }
    }
}

/// The checksum of each range of a map, computed as the image streams past in order: one
/// hasher at a time, each range's digest kept once its last byte has come by.
pub(crate) struct RangeHashes {
    kind: RangeChecksum,
    /// Each range's bytes (start, end).
    spans: Vec<(u64, u64)>,
    /// The range being hashed.
    current: Option<(usize, Box<dyn sha2::digest::DynDigest + Send>)>,
    /// Each range's digest, once complete.
    digests: Vec<Option<Vec<u8>>>,
}

impl RangeHashes {
    pub(crate) fn new(map: &Bmap, kind: RangeChecksum) -> RangeHashes {
        RangeHashes {
            kind,
            spans: map.byte_ranges(),
            current: None,
            digests: vec![None; map.ranges.len()],
        }
    }

    /// The image's bytes `offset..offset + data.len()`, after all bytes before them.
    pub(crate) fn feed(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        let first = self.spans.partition_point(|&(_, b)| b <= offset);
        for i in first..self.spans.len() {
            let (a, b) = self.spans[i];
            if a >= end {
                break;
            }
            if self.current.as_ref().map(|c| c.0) != Some(i) {
                self.current = Some((i, self.kind.hasher()));
            }
            let (from, to) = (a.max(offset), b.min(end));
            let (_, hasher) = self.current.as_mut().expect("set above");
            hasher.update(&data[(from - offset) as usize..(to - offset) as usize]);
            if to == b {
                let (_, hasher) = self.current.take().expect("set above");
                self.digests[i] = Some(hasher.finalize().to_vec());
            }
        }
    }

    /// Each range's digest (`None` for a range whose bytes did not all come by).
    pub(crate) fn finish(self) -> Vec<Option<Vec<u8>>> {
        self.digests
    }
}

/// One mapped range: blocks `first..=last`, and its checksum when the map has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmapRange {
    /// The first block.
    pub first: u64,
    /// The last block (inclusive).
    pub last: u64,
    /// The checksum of the range's bytes (to the image's end, for the last block).
    pub digest: Option<Vec<u8>>,
}

/// A block map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bmap {
    /// The image's size in bytes (the last block may be partial).
    pub image_size: u64,
    /// The size of the blocks the ranges count.
    pub block_size: u64,
    /// The checksum the ranges carry, when they carry one.
    pub checksum: Option<RangeChecksum>,
    /// Ascending, not overlapping.
    pub ranges: Vec<BmapRange>,
}

impl Bmap {
    /// The mapped byte ranges, `(start, end)` with `end` exclusive and at most the image's
    /// size.
    pub fn byte_ranges(&self) -> Vec<(u64, u64)> {
        self.ranges.iter().map(|r| self.span(r)).collect()
    }

    /// Bytes `start..end` of the image that range `r` covers.
    pub fn span(&self, r: &BmapRange) -> (u64, u64) {
        (
            r.first * self.block_size,
            ((r.last + 1) * self.block_size).min(self.image_size),
        )
    }

    /// The mapped bytes.
    pub fn mapped_bytes(&self) -> u64 {
        self.byte_ranges().iter().map(|(a, b)| b - a).sum()
    }

    /// `Err` when the map is not for an image of `image` bytes (it belongs to another).
    pub(crate) fn check_size(&self, image: u64) -> Result<(), Error> {
        if image == self.image_size {
            return Ok(());
        }
        Err(Error::Bmap {
            what: "given".into(),
            detail: format!(
                "it is for an image of {} bytes, and this image has {image}: it belongs to \
                 another image",
                self.image_size
            ),
        })
    }

    fn blocks(&self) -> u64 {
        self.image_size.div_ceil(self.block_size)
    }

    /// The map of an image from its allocation map: every used byte's block is mapped,
    /// each range with its SHA-256, read through `read` (which must fill the buffer from
    /// the offset given).
    pub fn from_usage(
        usage: &Usage,
        read: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
        what: &str,
    ) -> Result<Bmap, Error> {
        Bmap::hashed(usage, Bmap::ranges_of(usage), read, what)
    }

    /// The block ranges covering every used byte of `usage`.
    fn ranges_of(usage: &Usage) -> Vec<BmapRange> {
        let bs = BMAP_BLOCK;
        let mut ranges: Vec<BmapRange> = Vec::new();
        for &(a, b) in &usage.ranges {
            let (first, last) = (a / bs, (b - 1) / bs);
            match ranges.last_mut() {
                Some(prev) if first <= prev.last + 1 => prev.last = prev.last.max(last),
                _ => ranges.push(BmapRange {
                    first,
                    last,
                    digest: None,
                }),
            }
        }
        ranges
    }

    /// `ranges` with the SHA-256 of each, read through `read`.
    fn hashed(
        usage: &Usage,
        ranges: Vec<BmapRange>,
        read: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
        what: &str,
    ) -> Result<Bmap, Error> {
        let bs = BMAP_BLOCK;
        let mut map = Bmap {
            image_size: usage.size,
            block_size: bs,
            checksum: Some(RangeChecksum::Sha256),
            ranges,
        };
        let mut buf = vec![0u8; 4 << 20];
        let spans: Vec<(u64, u64)> = map.byte_ranges();
        for (r, (start, end)) in map.ranges.iter_mut().zip(spans) {
            let mut hasher = Sha256::new();
            let mut at = start;
            while at < end {
                let n = buf.len().min((end - at) as usize);
                read(at, &mut buf[..n]).map_err(|e| Error::read(what, at, e))?;
                hasher.update(&buf[..n]);
                at += n as u64;
            }
            r.digest = Some(hasher.finalize().to_vec());
        }
        Ok(map)
    }

    /// The map of an image from its allocation map, without checksums: for a map worked
    /// out from the image itself, where a checksum would only say what it was made from.
    pub fn from_usage_unhashed(usage: &Usage) -> Bmap {
        Bmap {
            image_size: usage.size,
            block_size: BMAP_BLOCK,
            checksum: None,
            ranges: Bmap::ranges_of(usage),
        }
    }

    /// The map as bmaptool 2.0 writes it, with its file checksum.
    pub fn to_xml(&self) -> String {
        let mapped: u64 = self.ranges.iter().map(|r| r.last - r.first + 1).sum();
        let checksum = self.checksum.unwrap_or(RangeChecksum::Sha256);
        let zeros = "0".repeat(checksum.len() * 2);
        let percent = if self.blocks() == 0 {
            0.0
        } else {
            mapped as f64 * 100.0 / self.blocks() as f64
        };
        let mut xml = String::new();
        let _ = write!(
            xml,
            "<?xml version=\"1.0\" ?>\n\
             <!-- The block map of an image, written by cardsmith in bmaptool's format 2.0:\n     \
             the blocks that hold data, each range with its checksum. -->\n\
             <bmap version=\"2.0\">\n    \
             <!-- Image size in bytes -->\n    \
             <ImageSize> {} </ImageSize>\n\n    \
             <!-- Size of a block in bytes -->\n    \
             <BlockSize> {} </BlockSize>\n\n    \
             <!-- Count of blocks in the image file -->\n    \
             <BlocksCount> {} </BlocksCount>\n\n    \
             <!-- Count of mapped blocks: {percent:.1}% -->\n    \
             <MappedBlocksCount> {mapped} </MappedBlocksCount>\n\n    \
             <!-- Type of checksum used in this file -->\n    \
             <ChecksumType> {} </ChecksumType>\n\n    \
             <!-- The checksum of this bmap file, computed with this field as zeros -->\n    \
             <BmapFileChecksum> {zeros} </BmapFileChecksum>\n\n    \
             <!-- The mapped ranges of blocks and their checksums -->\n    \
             <BlockMap>\n",
            self.image_size,
            self.block_size,
            self.blocks(),
            checksum.name(),
        );
        for r in &self.ranges {
            let blocks = if r.first == r.last {
                r.first.to_string()
            } else {
                format!("{}-{}", r.first, r.last)
            };
            match &r.digest {
                Some(d) => {
                    let _ = writeln!(
                        xml,
                        "        <Range chksum=\"{}\"> {blocks} </Range>",
                        to_hex(d)
                    );
                }
                None => {
                    let _ = writeln!(xml, "        <Range> {blocks} </Range>");
                }
            }
        }
        xml.push_str("    </BlockMap>\n</bmap>\n");
        let sum = to_hex(&checksum.digest(xml.as_bytes()));
        xml.replacen(&zeros, &sum, 1)
    }

    /// Reads a map (`what` names it in errors), checking everything it says.
    pub fn parse(data: &[u8], what: &str) -> Result<Bmap, Error> {
        let bad = |detail: String| Error::Bmap {
            what: what.to_owned(),
            detail,
        };
        let text = std::str::from_utf8(data)
            .map_err(|e| bad(format!("it is not UTF-8 text (byte {})", e.valid_up_to())))?;
        let doc = roxmltree::Document::parse(text).map_err(|e| bad(format!("its XML: {e}")))?;
        let root = doc.root_element();
        if root.tag_name().name() != "bmap" {
            return Err(bad(format!(
                "its root element is <{}>, not <bmap>",
                root.tag_name().name()
            )));
        }
        let version = root
            .attribute("version")
            .ok_or_else(|| bad("<bmap> has no version".into()))?;
        let (major, minor) = version
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
            .ok_or_else(|| bad(format!("version {version:?} is not MAJOR.MINOR")))?;
        if major == 0 || major > 2 {
            return Err(bad(format!(
                "version {version} is not one cardsmith reads (1.x and 2.0)"
            )));
        }
        let child = |name: &str| root.children().find(|n| n.has_tag_name(name));
        let number = |name: &str| -> Result<u64, Error> {
            let node = child(name).ok_or_else(|| bad(format!("<{name}> is missing")))?;
            let t = node.text().unwrap_or("").trim();
            t.parse::<u64>()
                .map_err(|_| bad(format!("<{name}> is {t:?}, not a number")))
        };
        // The kind of checksum: SHA-1 in 1.3, ChecksumType from 1.4 on, none before.
        let (file_field, checksum, attribute) = if (major, minor) >= (1, 4) {
            let kind = child("ChecksumType")
                .and_then(|n| n.text())
                .map(str::trim)
                .ok_or_else(|| bad("<ChecksumType> is missing".into()))?;
            let kind = match kind {
                "sha256" => RangeChecksum::Sha256,
                "sha1" => RangeChecksum::Sha1,
                other => {
                    return Err(bad(format!(
                        "<ChecksumType> {other} is not one cardsmith checks (sha256, sha1)"
                    )))
                }
            };
            (Some("BmapFileChecksum"), Some(kind), "chksum")
        } else if (major, minor) == (1, 3) {
            (Some("BmapFileSHA1"), Some(RangeChecksum::Sha1), "sha1")
        } else {
            (None, Some(RangeChecksum::Sha1), "sha1")
        };
        if let (Some(field), Some(kind)) = (file_field, checksum) {
            let given = child(field)
                .and_then(|n| n.text())
                .map(str::trim)
                .ok_or_else(|| bad(format!("<{field}> is missing")))?;
            if given.len() != kind.len() * 2 || !given.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("<{field}> {given:?} is not a {}", kind.name())));
            }
            let at = text
                .find(given)
                .ok_or_else(|| bad(format!("<{field}> cannot be found in the file")))?;
            let mut zeroed = data.to_vec();
            zeroed[at..at + given.len()].fill(b'0');
            let sum = to_hex(&kind.digest(&zeroed));
            if !sum.eq_ignore_ascii_case(given) {
                return Err(bad(format!(
                    "<{field}> says {given}, but the file's {} is {sum}: the map was changed \
                     or damaged",
                    kind.name()
                )));
            }
        }
        let image_size = number("ImageSize")?;
        let block_size = number("BlockSize")?;
        if block_size == 0 || block_size > 1 << 30 {
            return Err(bad(format!("<BlockSize> is {block_size}")));
        }
        let blocks = number("BlocksCount")?;
        if blocks != image_size.div_ceil(block_size) {
            return Err(bad(format!(
                "<BlocksCount> is {blocks}, but {image_size} bytes in blocks of {block_size} \
                 make {}",
                image_size.div_ceil(block_size)
            )));
        }
        let map_node = child("BlockMap").ok_or_else(|| bad("<BlockMap> is missing".into()))?;
        let mut ranges: Vec<BmapRange> = Vec::new();
        let mut any_digest = false;
        for (i, node) in map_node
            .children()
            .filter(|n| n.has_tag_name("Range"))
            .enumerate()
        {
            let t = node.text().unwrap_or("").trim();
            let parse = |s: &str| s.trim().parse::<u64>().ok();
            let (first, last) = match t.split_once('-') {
                Some((a, b)) => (parse(a), parse(b)),
                None => (parse(t), parse(t)),
            };
            let (Some(first), Some(last)) = (first, last) else {
                return Err(bad(format!("range {} is {t:?}, not FIRST-LAST", i + 1)));
            };
            if first > last || last >= blocks {
                return Err(bad(format!(
                    "range {} ({t}) is not within the image's {blocks} blocks",
                    i + 1
                )));
            }
            if let Some(prev) = ranges.last() {
                if first <= prev.last {
                    return Err(bad(format!(
                        "range {} ({t}) overlaps or precedes the one before it",
                        i + 1
                    )));
                }
            }
            let digest = match (node.attribute(attribute), checksum) {
                (Some(hex), Some(kind)) => {
                    let d = crate::hash::parse_hex(hex.trim())
                        .filter(|d| d.len() == kind.len())
                        .ok_or_else(|| {
                            bad(format!(
                                "range {} ({t}) has {attribute}=\"{hex}\", not a {}",
                                i + 1,
                                kind.name()
                            ))
                        })?;
                    any_digest = true;
                    Some(d)
                }
                _ => None,
            };
            ranges.push(BmapRange {
                first,
                last,
                digest,
            });
        }
        if let Some(node) = child("MappedBlocksCount") {
            let t = node.text().unwrap_or("").trim();
            let said: u64 = t
                .parse()
                .map_err(|_| bad(format!("<MappedBlocksCount> is {t:?}, not a number")))?;
            let counted: u64 = ranges.iter().map(|r| r.last - r.first + 1).sum();
            if said != counted {
                return Err(bad(format!(
                    "<MappedBlocksCount> says {said}, but its ranges hold {counted} blocks"
                )));
            }
        }
        Ok(Bmap {
            image_size,
            block_size,
            checksum: checksum.filter(|_| any_digest),
            ranges,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bmap {
        Bmap {
            image_size: 20580,
            block_size: 4096,
            checksum: Some(RangeChecksum::Sha256),
            ranges: vec![
                BmapRange {
                    first: 0,
                    last: 0,
                    digest: Some(vec![1; 32]),
                },
                BmapRange {
                    first: 2,
                    last: 5,
                    digest: Some(vec![2; 32]),
                },
            ],
        }
    }

    #[test]
    fn a_written_map_reads_back_the_same() {
        let map = sample();
        let xml = map.to_xml();
        assert_eq!(Bmap::parse(xml.as_bytes(), "test").unwrap(), map);
        assert_eq!(map.byte_ranges(), [(0, 4096), (8192, 20580)]);
    }

    #[test]
    fn a_changed_map_is_refused_naming_what() {
        let xml = sample().to_xml();
        let changed = xml.replace("<ImageSize> 20580", "<ImageSize> 20581");
        let e = Bmap::parse(changed.as_bytes(), "x.bmap")
            .unwrap_err()
            .to_string();
        assert!(e.contains("<BmapFileChecksum> says"), "{e}");
        // Changed and resealed: the fields themselves are checked.
        let cases = [
            (
                xml.replace("version=\"2.0\"", "version=\"3.0\""),
                "version 3.0",
            ),
            (xml.replace("> 2-5 <", "> 5-2 <"), "range 2 (5-2)"),
            (xml.replace("> 2-5 <", "> 0-1 <"), "range 2 (0-1) overlaps"),
            (
                xml.replace("> 2-5 <", "> 2-6 <"),
                "not within the image's 6 blocks",
            ),
            (
                xml.replace("<BlocksCount> 6", "<BlocksCount> 7"),
                "<BlocksCount> is 7",
            ),
            (
                xml.replace("<MappedBlocksCount> 5", "<MappedBlocksCount> 4"),
                "its ranges hold 5",
            ),
            (
                xml.replace("ChecksumType> sha256", "ChecksumType> md5"),
                "md5 is not one",
            ),
            ("not xml".to_owned(), "XML"),
        ];
        for (bad, why) in cases {
            let mut bytes = bad.into_bytes();
            reseal(&mut bytes);
            let e = Bmap::parse(&bytes, "x.bmap").unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
    }

    /// Recomputes a damaged map's file checksum, so the damage reaches the fields.
    fn reseal(bytes: &mut [u8]) {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let Some(start) = text.find("<BmapFileChecksum> ").map(|i| i + 19) else {
            return;
        };
        if start + 64 > bytes.len() || !bytes[start..start + 64].is_ascii() {
            return;
        }
        bytes[start..start + 64].fill(b'0');
        let sum = to_hex(&Sha256::digest(&*bytes));
        bytes[start..start + 64].copy_from_slice(sum.as_bytes());
    }

    #[test]
    fn random_damage_never_panics() {
        let xml = sample().to_xml().into_bytes();
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut accepted = 0;
        for round in 0..4000 {
            let mut bytes = xml.clone();
            for _ in 0..(seed % 4 + 1) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed % bytes.len() as u64) as usize;
                // Digits and separators mostly: damage that still looks like a map.
                bytes[at] = b"0123456789- <>\"x"[(seed >> 40) as usize % 16];
            }
            if round % 2 == 0 {
                reseal(&mut bytes);
            }
            if let Ok(map) = Bmap::parse(&bytes, "fuzz") {
                accepted += 1;
                // Whatever is accepted is consistent.
                assert!(map.ranges.windows(2).all(|w| w[0].last < w[1].first));
                assert!(map
                    .byte_ranges()
                    .iter()
                    .all(|&(a, b)| a < b && b <= map.image_size));
            }
        }
        assert!(
            accepted > 0,
            "resealed maps with harmless damage still read"
        );
    }
}
