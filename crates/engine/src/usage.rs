//! Which bytes of a disk image or a card hold something: the allocation map that lets a
//! write, verify or backup move only what filesystems use.
//!
//! Always in use: the first MiB (boot code, the partition table, a bootloader's gap) and
//! the table's own structures (extended boot records, both GPT headers and arrays). Inside
//! each partition: ext2/3/4 from its block bitmaps (a BLOCK_UNINIT group counts its
//! superblock backup, descriptor blocks, bitmaps and inode table), FAT12/16/32 from its
//! allocation table (plus the reserved sectors, the FATs and a FAT12/16 root directory),
//! Linux swap from its header page only. Any other filesystem, and one whose metadata does
//! not hold together, counts as fully used, with a note naming the offset and the field;
//! so does a journal that still needs recovery. Space outside partitions is unused. A disk
//! with no partition table is looked at as one filesystem.
//!
//! Every number comes from the disk and is checked before it is used: a damaged or hostile
//! filesystem makes its partition count as fully used, never a panic, never a short map.
//! No crate reads these structures for us (`ext4-view` and `fatfs` keep their bitmaps and
//! tables private), so they are read here, after the kernel's ext4 documentation and
//! Microsoft's FAT specification.

use crate::layout::{self, ReadFn};
use crate::Error;

/// The first MiB, always in use.
const HEAD: u64 = 1 << 20;

/// Where the used bytes of a disk are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The disk's (or image's) size in bytes.
    pub size: u64,
    /// Byte ranges in use, `(start, end)` with `end` exclusive, sorted, not touching.
    pub ranges: Vec<(u64, u64)>,
    /// The partition table, when there is one.
    pub table: Option<crate::TableKind>,
    /// What each partition (or the whole disk, without a table) was found to be.
    pub parts: Vec<PartUsage>,
}

/// One partition's share of the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartUsage {
    /// Its first byte on the disk.
    pub start: u64,
    /// Its length in bytes.
    pub len: u64,
    /// What it holds.
    pub filesystem: Filesystem,
    /// Its bytes in use.
    pub used: u64,
    /// Why it counts as fully used, when it does not for what it is.
    pub note: Option<String>,
}

/// What a partition holds, as far as the map is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filesystem {
    /// ext2, ext3 or ext4: from its block bitmaps.
    Ext,
    /// FAT12, FAT16 or FAT32 (the number): from its allocation table.
    Fat(u8),
    /// Linux swap: its header page.
    Swap,
    /// Something else (or damaged): all of it.
    Other,
}

impl Filesystem {
    /// "ext4", "FAT32", "swap", "unknown".
    pub fn name(self) -> String {
        match self {
            Filesystem::Ext => "ext2/3/4".into(),
            Filesystem::Fat(0) => "FAT".into(),
            Filesystem::Fat(bits) => format!("FAT{bits}"),
            Filesystem::Swap => "swap".into(),
            Filesystem::Other => "unknown".into(),
        }
    }
}

impl Usage {
    /// The bytes in use.
    pub fn used(&self) -> u64 {
        self.ranges.iter().map(|(a, b)| b - a).sum()
    }

    /// Whether any byte of `start..end` is in use.
    pub fn touches(&self, start: u64, end: u64) -> bool {
        let i = self.ranges.partition_point(|&(_, e)| e <= start);
        self.ranges.get(i).is_some_and(|&(s, _)| s < end)
    }
}

/// The map of `disk` (a device or an image file, opened for reading).
pub fn usage_of(disk: &crate::Target) -> Result<Usage, Error> {
    let size = disk.size().unwrap_or(0);
    let mut read = |offset: u64, len: usize| layout::read_bytes(disk, offset, len);
    usage(&mut read, size, disk.sector_size())
}

/// The map of an image in a plain file of `size` bytes (512-byte sectors), such as a
/// decoded copy from [`crate::unpack`].
pub fn usage_of_file(file: &std::fs::File, size: u64, what: &str) -> Result<Usage, Error> {
    usage(&mut layout::file_reader(file, size, what), size, 512)
}

/// The map of `disk` for a rescue: a partition whose metadata cannot be read (a bad
/// block among its bitmaps or tables) counts as fully used, with a note, rather than
/// failing the map; a partition table that cannot be read leaves the whole disk in use.
pub(crate) fn usage_despite_errors(disk: &crate::Target) -> Usage {
    let size = disk.size().unwrap_or(0);
    let mut read = |offset: u64, len: usize| layout::read_bytes(disk, offset, len);
    usage_inner(&mut read, size, disk.sector_size(), true).unwrap_or_else(|_| Usage {
        size,
        ranges: vec![(0, size)],
        table: None,
        parts: Vec::new(),
    })
}

/// The map of the disk behind `read` (`size` bytes, `sector`-byte logical sectors).
pub(crate) fn usage(read: &mut ReadFn<'_>, size: u64, sector: u64) -> Result<Usage, Error> {
    usage_inner(read, size, sector, false)
}

/// The map; with `tolerate`, a read error inside a partition makes it count as fully used.
fn usage_inner(
    read: &mut ReadFn<'_>,
    size: u64,
    sector: u64,
    tolerate: bool,
) -> Result<Usage, Error> {
    let mut ranges = vec![(0, HEAD.min(size))];
    let mut parts = Vec::new();
    let mut kind = None;
    match layout::table(read, size, sector) {
        Ok(table) => {
            kind = Some(table.kind);
            ranges.extend(table.meta.iter().map(|&(s, l)| (s, s.saturating_add(l))));
            for (start, len) in table.parts {
                // A partition reaching past the disk was refused by the table's checks;
                // clamp anyway, so nothing here can point outside it.
                let len = len.min(size.saturating_sub(start));
                let part = partition(read, start, len, tolerate)?;
                ranges.extend(part.1);
                parts.push(part.0);
            }
        }
        // No partition table: perhaps a filesystem on the whole disk (a "superfloppy").
        Err(_) => {
            let part = partition(read, 0, size, tolerate)?;
            ranges.extend(part.1);
            parts.push(part.0);
        }
    }
    Ok(Usage {
        size,
        ranges: merge(ranges, size),
        table: kind,
        parts,
    })
}

/// One partition: what it is, and its used ranges on the disk. Only read errors are
/// errors; anything wrong with the filesystem makes all of it count.
fn partition(
    read: &mut ReadFn<'_>,
    start: u64,
    len: u64,
    tolerate: bool,
) -> Result<(PartUsage, Vec<(u64, u64)>), Error> {
    let mut at = |offset: u64, want: usize| -> Result<Vec<u8>, Error> {
        if offset.saturating_add(want as u64) > len {
            return Ok(Vec::new());
        }
        read(start + offset, want)
    };
    let looked = (|| -> Result<_, Error> {
        Ok(match ext(&mut at, len)? {
            Some(found) => Some((Filesystem::Ext, found)),
            None => match fat(&mut at, len)? {
                Some((bits, found)) => Some((Filesystem::Fat(bits), found)),
                None => swap(&mut at)?.map(|found| (Filesystem::Swap, found)),
            },
        })
    })();
    let found = match looked {
        Ok(found) => found,
        // Streaming: its metadata has not come past yet; all of it counts for now.
        Err(e) if is_not_yet(&e) => Some((Filesystem::Other, Err("not seen yet".to_owned()))),
        Err(e) if tolerate => Some((
            Filesystem::Other,
            Err(format!("its metadata could not be read ({e})")),
        )),
        Err(e) => return Err(e),
    };
    let whole = vec![(start, start + len)];
    let (filesystem, ranges, note) = match found {
        Some((fs, Ok(ranges))) => {
            let on_disk: Vec<(u64, u64)> = ranges
                .into_iter()
                .map(|(a, b)| (start + a.min(len), start + b.min(len)))
                .filter(|(a, b)| a < b)
                .collect();
            (fs, on_disk, None)
        }
        Some((fs, Err(why))) => (fs, whole, Some(why)),
        None => (Filesystem::Other, whole, None),
    };
    let ranges = merge(ranges, start + len);
    let used = ranges.iter().map(|(a, b)| b - a).sum();
    let part = PartUsage {
        start,
        len,
        filesystem,
        used,
        note,
    };
    Ok((part, ranges))
}

/// The error a streaming reader gives for bytes that have not come past yet (or went past
/// unkept): what depends on them counts as used.
fn not_yet(offset: u64) -> Error {
    Error::read(
        "the image as it streams",
        offset,
        std::io::Error::from(std::io::ErrorKind::WouldBlock),
    )
}

fn is_not_yet(e: &Error) -> bool {
    matches!(e, Error::Read { source, .. } if source.kind() == std::io::ErrorKind::WouldBlock)
}

/// The allocation map of an image as it streams past, for a write without a map: what
/// the partition table and the filesystems' metadata say, as far as they have come by.
/// Bytes count as unused only when metadata already seen says so; anything not yet known
/// counts as used. The metadata wanted is kept as it passes (a few MiB at most: bitmaps,
/// descriptors, FATs); nothing else is.
pub(crate) struct StreamMap {
    /// The image's size, when known (else the largest a table may claim).
    size: u64,
    /// Bytes asked for by the parsers, by (offset, length), and what has come of them.
    kept: std::collections::BTreeMap<(u64, usize), Vec<u8>>,
    /// Asked for and not yet complete: (offset, length).
    wanted: Vec<(u64, usize)>,
    /// Asked for after they had gone past: can never be had.
    lost: std::collections::BTreeSet<(u64, usize)>,
    /// The latest map, and whether new metadata arrived since.
    map: Option<Usage>,
    fresh: bool,
    /// The chunk just fed, which also answers what is asked for while it is here.
    current: Option<(u64, Vec<u8>)>,
}

impl StreamMap {
    pub(crate) fn new(size: Option<u64>) -> StreamMap {
        StreamMap {
            size: size.unwrap_or(u64::MAX / 2),
            kept: Default::default(),
            wanted: Vec::new(),
            lost: Default::default(),
            map: None,
            fresh: true,
            current: None,
        }
    }

    /// The image's bytes at `offset`, as they stream past, in order.
    pub(crate) fn feed(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        let mut done = Vec::new();
        for (i, &(at, len)) in self.wanted.iter().enumerate() {
            let want_end = at + len as u64;
            if want_end <= offset || at >= end {
                continue;
            }
            let buf = self.kept.entry((at, len)).or_insert_with(|| vec![0; len]);
            let (from, to) = (at.max(offset), want_end.min(end));
            buf[(from - at) as usize..(to - at) as usize]
                .copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
            if want_end <= end {
                done.push(i);
            }
        }
        if !done.is_empty() {
            for i in done.into_iter().rev() {
                self.wanted.swap_remove(i);
            }
            self.fresh = true;
        }
        // The current chunk can also answer what is asked for while it is here.
        self.current = Some((offset, data.to_vec()));
    }

    /// The parts of the chunk at `offset` (`len` bytes, just fed) to write, as
    /// `(start, end)` within it: all but what is known to be unused, in whole 4 KiB
    /// blocks.
    pub(crate) fn pieces(&mut self, offset: u64, len: usize) -> Vec<(usize, usize)> {
        if self.fresh {
            self.fresh = false;
            self.refresh();
        }
        self.current = None;
        let Some(map) = &self.map else {
            return vec![(0, len)];
        };
        let end = offset + len as u64;
        let block = crate::bmap::BMAP_BLOCK;
        let first = map.ranges.partition_point(|&(_, b)| b <= offset);
        let mut out: Vec<(usize, usize)> = Vec::new();
        for &(a, b) in map.ranges[first..].iter().take_while(|&&(a, _)| a < end) {
            // Out to whole blocks: a block holding any used byte is written.
            let a = (a / block * block).max(offset);
            let b = b.div_ceil(block).saturating_mul(block).min(end);
            let (a, b) = ((a - offset) as usize, (b - offset) as usize);
            match out.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        out
    }

    /// Works the map out again from what has been kept.
    fn refresh(&mut self) {
        let current = self.current.take();
        let kept = &self.kept;
        let wanted = &self.wanted;
        let lost = &self.lost;
        let mut asked = Vec::new();
        // What the chunk here answered is kept too: the next refresh asks for it again.
        let mut served = Vec::new();
        let mut read = |offset: u64, len: usize| -> Result<Vec<u8>, Error> {
            // Kept and complete (a wanted entry is still filling).
            if let Some(bytes) = kept
                .get(&(offset, len))
                .filter(|_| !wanted.contains(&(offset, len)))
            {
                return Ok(bytes.clone());
            }
            if let Some((at, data)) = &current {
                let end = at + data.len() as u64;
                if offset >= *at && offset + len as u64 <= end {
                    let from = (offset - at) as usize;
                    let bytes = data[from..from + len].to_vec();
                    served.push(((offset, len), bytes.clone()));
                    return Ok(bytes);
                }
            }
            if !lost.contains(&(offset, len)) {
                asked.push((offset, len));
            }
            Err(not_yet(offset))
        };
        self.map = usage(&mut read, self.size, 512).ok();
        self.kept.extend(served);
        self.current = current;
        // What was asked for and is still ahead is kept as it comes; what is behind (or
        // only partly here) can never be had whole, unless the chunk now here holds it.
        let seen_end = self
            .current
            .as_ref()
            .map_or(0, |(at, d)| at + d.len() as u64);
        for (offset, len) in asked {
            if self.kept.contains_key(&(offset, len)) || self.wanted.contains(&(offset, len)) {
                continue;
            }
            if offset + len as u64 <= seen_end
                && self.current.as_ref().is_none_or(|(at, _)| offset < *at)
            {
                self.lost.insert((offset, len));
                continue;
            }
            let mut buf = vec![0; len];
            if let Some((at, data)) = &self.current {
                let end = at + data.len() as u64;
                if offset < *at {
                    self.lost.insert((offset, len));
                    continue;
                }
                if offset < end {
                    let n = (end - offset) as usize;
                    buf[..n].copy_from_slice(&data[(offset - at) as usize..]);
                }
            }
            self.kept.insert((offset, len), buf);
            self.wanted.push((offset, len));
        }
    }
}

/// Sorts ranges, joins those that touch or overlap, and clips them to `size`.
fn merge(mut ranges: Vec<(u64, u64)>, size: u64) -> Vec<(u64, u64)> {
    ranges.retain(|&(a, b)| a < b && a < size);
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        let b = b.min(size);
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Reads inside one partition: `len` bytes at `offset`, or none when that would pass its
/// end.
pub(crate) type PartRead<'a> = dyn FnMut(u64, usize) -> Result<Vec<u8>, Error> + 'a;

/// A filesystem read from a partition, or what does not hold together in it.
pub(crate) type Checked<T> = Result<T, String>;

/// A filesystem's used ranges (partition offsets), or why they cannot be trusted.
type Found = Result<Vec<(u64, u64)>, String>;

pub(crate) fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

pub(crate) fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(layout::le32(b, at))
}

// ext2/3/4 -----------------------------------------------------------------------------

const EXT_MAGIC: u64 = 0xEF53;
const INCOMPAT_RECOVER: u64 = 0x4;
const INCOMPAT_JOURNAL_DEV: u64 = 0x8;
const INCOMPAT_META_BG: u64 = 0x10;
const INCOMPAT_64BIT: u64 = 0x80;
/// The incompatible features whose meaning for the bitmaps is known: filetype, recover,
/// journal_dev, meta_bg, extents, 64bit, mmp, flex_bg, ea_inode, dirdata, csum_seed,
/// largedir, inline_data, encrypt, casefold.
const INCOMPAT_KNOWN: u64 = 0x2
    | 0x4
    | 0x8
    | 0x10
    | 0x40
    | 0x80
    | 0x100
    | 0x200
    | 0x400
    | 0x1000
    | 0x2000
    | 0x4000
    | 0x8000
    | 0x10000
    | 0x20000;
const RO_SPARSE_SUPER: u64 = 0x1;
const RO_GDT_CSUM: u64 = 0x10;
const RO_BIGALLOC: u64 = 0x200;
const RO_METADATA_CSUM: u64 = 0x400;
const COMPAT_SPARSE_SUPER2: u64 = 0x200;
const BG_BLOCK_UNINIT: u64 = 0x2;

/// ext2/3/4, when the superblock's magic says so.
fn ext(at: &mut PartRead<'_>, len: u64) -> Result<Option<Found>, Error> {
    let sb = at(1024, 1024)?;
    if sb.len() < 1024 || le16(&sb, 0x38) != EXT_MAGIC {
        return Ok(None);
    }
    Ok(Some(match ExtFs::read(at, &sb, len)? {
        Ok(fs) => ext_used(at, &fs)?,
        Err(why) => Err(why),
    }))
}

/// An ext2/3/4 filesystem's geometry and group descriptors, every number checked against
/// the partition before it is used.
pub(crate) struct ExtFs {
    /// Block size in bytes.
    pub(crate) bs: u64,
    /// Blocks in the filesystem.
    pub(crate) blocks: u64,
    /// The first data block (1 with 1 KiB blocks, else 0).
    pub(crate) first: u64,
    pub(crate) per_group: u64,
    pub(crate) inodes_per_group: u64,
    pub(crate) inode_size: u64,
    /// Blocks of each group's inode table.
    pub(crate) table_blocks: u64,
    /// The first inode that is not reserved.
    pub(crate) first_ino: u64,
    /// Group descriptors carry checksums (uninit_bg or metadata_csum), so their
    /// BLOCK_UNINIT, INODE_UNINIT and unused-inode counts can be trusted.
    pub(crate) csum: bool,
    pub(crate) groups: Vec<ExtGroup>,
    desc_blocks: u64,
    per_desc_block: u64,
    meta_bg: bool,
    first_meta_bg: u64,
    reserved_gdt: u64,
    compat: u64,
    ro: u64,
    backups: [u64; 2],
}

/// One block group's descriptor.
pub(crate) struct ExtGroup {
    pub(crate) bitmap: u64,
    pub(crate) inode_bitmap: u64,
    pub(crate) table: u64,
    pub(crate) flags: u64,
    /// Inodes at the end of its table never used (with `csum`).
    pub(crate) itable_unused: u64,
}

/// The group descriptor flag: the inode table and bitmap were never written.
pub(crate) const BG_INODE_UNINIT: u64 = 0x1;

impl ExtFs {
    /// The geometry from superblock `sb`, and the group descriptors from the partition; an
    /// `Err` inside names what does not hold together.
    pub(crate) fn read(
        at: &mut PartRead<'_>,
        sb: &[u8],
        len: u64,
    ) -> Result<Checked<ExtFs>, Error> {
        let damaged = |offset: u64, field: &str, why: String| {
            Ok(Err(format!(
                "ext superblock field {field} (byte {} of the partition) {why}",
                1024 + offset
            )))
        };
        let incompat = le32(sb, 0x60);
        let ro = le32(sb, 0x64);
        let compat = le32(sb, 0x5C);
        if incompat & INCOMPAT_RECOVER != 0 {
            return Ok(Err(
                "its journal needs recovery (the filesystem was not cleanly unmounted), so its \
                 bitmaps may be stale"
                    .into(),
            ));
        }
        if incompat & INCOMPAT_JOURNAL_DEV != 0 {
            return Ok(Err("it is an external journal device".into()));
        }
        if incompat & !INCOMPAT_KNOWN != 0 {
            return damaged(
                0x60,
                "s_feature_incompat",
                format!("has unknown features {:#x}", incompat & !INCOMPAT_KNOWN),
            );
        }
        if ro & RO_BIGALLOC != 0 {
            return Ok(Err("it uses bigalloc clusters".into()));
        }
        let log = le32(sb, 0x18);
        if log > 6 {
            return damaged(
                0x18,
                "s_log_block_size",
                format!("is {log} (over 64 KiB blocks)"),
            );
        }
        let bs = 1024u64 << log;
        let wide = incompat & INCOMPAT_64BIT != 0;
        let blocks = le32(sb, 0x4) | if wide { le32(sb, 0x150) << 32 } else { 0 };
        if blocks == 0 || blocks.saturating_mul(bs) > len {
            return damaged(
                0x4,
                "s_blocks_count",
                format!(
                    "says {blocks} blocks of {bs} bytes, more than the partition's {len} bytes"
                ),
            );
        }
        let first = le32(sb, 0x14);
        if first >= blocks || first > 1 {
            return damaged(0x14, "s_first_data_block", format!("is {first}"));
        }
        let per_group = le32(sb, 0x20);
        if per_group == 0 || per_group > 8 * bs {
            return damaged(
                0x20,
                "s_blocks_per_group",
                format!("is {per_group}, not between 1 and {}", 8 * bs),
            );
        }
        let desc_size = if wide { le16(sb, 0xFE) } else { 32 };
        if desc_size < 32
            || !desc_size.is_power_of_two()
            || desc_size > bs
            || (wide && desc_size < 64)
        {
            return damaged(0xFE, "s_desc_size", format!("is {desc_size}"));
        }
        let inodes_per_group = le32(sb, 0x28);
        let (inode_size, first_ino) = if le32(sb, 0x4C) == 0 {
            (128, 11)
        } else {
            (le16(sb, 0x58), le32(sb, 0x54))
        };
        if inode_size < 128 || inode_size > bs || inodes_per_group > 8 * bs {
            return damaged(0x58, "s_inode_size", format!("is {inode_size}"));
        }
        let mut fs = ExtFs {
            bs,
            blocks,
            first,
            per_group,
            inodes_per_group,
            inode_size,
            table_blocks: (inodes_per_group * inode_size).div_ceil(bs),
            first_ino,
            csum: ro & (RO_GDT_CSUM | RO_METADATA_CSUM) != 0,
            groups: Vec::new(),
            desc_blocks: 0,
            per_desc_block: bs / desc_size,
            meta_bg: incompat & INCOMPAT_META_BG != 0,
            first_meta_bg: 0,
            reserved_gdt: le16(sb, 0xCE),
            compat,
            ro,
            backups: [le32(sb, 0x24C), le32(sb, 0x250)],
        };
        let groups = (blocks - first).div_ceil(per_group);
        fs.desc_blocks = groups.div_ceil(fs.per_desc_block);
        fs.first_meta_bg = if fs.meta_bg {
            le32(sb, 0x104)
        } else {
            fs.desc_blocks
        };
        // The count comes from the superblock, which was checked against the partition's
        // size: it sizes nothing before the descriptors are read.
        fs.groups = Vec::with_capacity(groups.min(1 << 16) as usize);
        for i in 0..fs.desc_blocks {
            let b = fs.desc_block(i);
            if b >= blocks {
                return damaged(
                    0x104,
                    "s_first_meta_bg",
                    format!("puts descriptor block {i} at block {b}, past the filesystem's end"),
                );
            }
            let d = at(b * bs, bs as usize)?;
            if d.len() < bs as usize {
                return Ok(Err(format!(
                    "descriptor block {i} (block {b}) is cut short"
                )));
            }
            let in_block = fs.per_desc_block.min(groups - i * fs.per_desc_block);
            for k in 0..in_block {
                let o = (k * desc_size) as usize;
                // A 64-byte descriptor keeps each field's high half further on.
                let high = |at: usize, read: fn(&[u8], usize) -> u64| {
                    if desc_size >= 64 {
                        read(&d, o + at)
                    } else {
                        0
                    }
                };
                let group = ExtGroup {
                    bitmap: le32(&d, o) | high(0x20, le32) << 32,
                    inode_bitmap: le32(&d, o + 4) | high(0x24, le32) << 32,
                    table: le32(&d, o + 8) | high(0x28, le32) << 32,
                    flags: le16(&d, o + 0x12),
                    itable_unused: le16(&d, o + 0x1C) | high(0x32, le16) << 16,
                };
                let g = i * fs.per_desc_block + k;
                let where_ = |what: &str| {
                    format!(
                        "group {g}'s {what} (descriptor at byte {} of the partition) lies past \
                         the filesystem's end",
                        b * bs + o as u64
                    )
                };
                if group.bitmap >= blocks {
                    return Ok(Err(where_("block bitmap")));
                }
                if group.inode_bitmap >= blocks {
                    return Ok(Err(where_("inode bitmap")));
                }
                if group.table.saturating_add(fs.table_blocks) > blocks {
                    return Ok(Err(where_("inode table")));
                }
                fs.groups.push(group);
            }
        }
        Ok(Ok(fs))
    }

    /// Whether group `g` holds a superblock (or a backup of it).
    pub(crate) fn has_super(&self, g: u64) -> bool {
        if g == 0 {
            return true;
        }
        if self.compat & COMPAT_SPARSE_SUPER2 != 0 {
            return self.backups.contains(&g);
        }
        if self.ro & RO_SPARSE_SUPER == 0 {
            return true;
        }
        g == 1 || [3u64, 5, 7].iter().any(|&b| is_power_of(g, b))
    }

    /// Group `g`'s first block.
    pub(crate) fn group_start(&self, g: u64) -> u64 {
        self.first + g * self.per_group
    }

    /// Where descriptor block `i` lies: in the table after group 0's superblock, and with
    /// meta_bg (beyond s_first_meta_bg) in the first group of each meta group.
    fn desc_block(&self, i: u64) -> u64 {
        if !self.meta_bg || i < self.first_meta_bg {
            self.first + 1 + i
        } else {
            let g = i * self.per_desc_block;
            self.group_start(g) + u64::from(self.has_super(g))
        }
    }

    /// The superblock copy, descriptor blocks and reserved descriptor blocks group `g`
    /// holds at its start (block ranges), as mke2fs lays them out.
    pub(crate) fn group_head(&self, g: u64) -> Vec<(u64, u64)> {
        let start = self.group_start(g);
        let mut head = Vec::new();
        if self.has_super(g) {
            head.push((start, start + 1));
            let in_meta = self.meta_bg && g / self.per_desc_block >= self.first_meta_bg;
            if !in_meta {
                let table_len = if self.meta_bg {
                    self.first_meta_bg
                } else {
                    self.desc_blocks + self.reserved_gdt
                };
                head.push((start + 1, (start + 1 + table_len).min(self.blocks)));
            }
        }
        if self.meta_bg && g / self.per_desc_block >= self.first_meta_bg {
            let index = g % self.per_desc_block;
            if index == 0 || index == 1 || index == self.per_desc_block - 1 {
                let b = start + u64::from(self.has_super(g));
                head.push((b, b + 1));
            }
        }
        head
    }
}

fn ext_used(at: &mut PartRead<'_>, fs: &ExtFs) -> Result<Found, Error> {
    let (bs, blocks) = (fs.bs, fs.blocks);
    // Blocks in use, as runs of block numbers (sorted and joined below).
    let mut used: Vec<(u64, u64)> = vec![(0, fs.first + 1)];
    used.extend((0..fs.desc_blocks).map(|i| (fs.desc_block(i), fs.desc_block(i) + 1)));
    for (g, group) in (0u64..).zip(&fs.groups) {
        // Its own metadata is in use wherever it lies (flex_bg puts it elsewhere).
        used.push((group.bitmap, group.bitmap + 1));
        used.push((group.inode_bitmap, group.inode_bitmap + 1));
        used.push((group.table, group.table + fs.table_blocks));
        let start = fs.group_start(g);
        let count = fs.per_group.min(blocks - start);
        if fs.csum && group.flags & BG_BLOCK_UNINIT != 0 {
            // Never written: only the superblock backup and descriptor copies are there.
            used.extend(fs.group_head(g));
            continue;
        }
        let bits = match at(group.bitmap * bs, bs as usize) {
            // Streaming: this group's bitmap has not come past yet. What is known holds;
            // from this group on everything counts, until it has.
            Err(e) if is_not_yet(&e) => {
                used.push((start, blocks));
                break;
            }
            other => other?,
        };
        if bits.len() < bs as usize {
            return Ok(Err(format!("group {g}'s block bitmap is cut short")));
        }
        let mut run: Option<u64> = None;
        for i in 0..count {
            let set = bits[(i / 8) as usize] & (1 << (i % 8)) != 0;
            match (set, run) {
                (true, None) => run = Some(i),
                (false, Some(r)) => {
                    used.push((start + r, start + i));
                    run = None;
                }
                _ => {}
            }
        }
        if let Some(r) = run {
            used.push((start + r, start + count));
        }
    }
    let bytes = used
        .into_iter()
        .map(|(a, b)| (a * bs, b.min(blocks) * bs))
        .collect();
    // Block 0 holds the boot block and (with 1 KiB blocks) sits before group 0: the
    // bytes up to the superblock's end are in use either way.
    Ok(Ok(merge(bytes, blocks * bs)
        .into_iter()
        .chain(std::iter::once((0, 2048)))
        .collect()))
}

/// Whether `n` is a power of `base` (1 is not, here).
fn is_power_of(mut n: u64, base: u64) -> bool {
    if n < base {
        return false;
    }
    while n % base == 0 {
        n /= base;
    }
    n == 1
}

// FAT ----------------------------------------------------------------------------------

/// FAT12/16/32, when the boot sector reads as one.
fn fat(at: &mut PartRead<'_>, len: u64) -> Result<Option<(u8, Found)>, Error> {
    Ok(FatFs::read(at, len)?.map(|(bits, fs)| (bits, fs.map(|fs| fat_used(&fs)))))
}

/// A FAT filesystem's geometry and its active allocation table, every number checked
/// against the partition before it is used.
pub(crate) struct FatFs {
    /// Bytes per sector.
    pub(crate) sector: u64,
    pub(crate) reserved: u64,
    pub(crate) fats: u64,
    /// Sectors per FAT.
    pub(crate) fat_size: u64,
    /// The first sector of the data area (cluster 2).
    pub(crate) data: u64,
    /// Data clusters (numbered 2 to `clusters + 1`).
    pub(crate) clusters: u64,
    pub(crate) cluster_bytes: u64,
    /// 12, 16 or 32.
    pub(crate) bits: u8,
    /// FAT32: the root folder's first cluster.
    pub(crate) root_cluster: u64,
    /// The active FAT, `(clusters + 2)` entries.
    table: Vec<u8>,
}

impl FatFs {
    /// The filesystem, when the boot sector reads as FAT: its width (0 when unknown) and
    /// either the filesystem or what does not hold together.
    pub(crate) fn read(
        at: &mut PartRead<'_>,
        len: u64,
    ) -> Result<Option<(u8, Checked<FatFs>)>, Error> {
        let boot = at(0, 512)?;
        if boot.len() < 512 || !matches!(boot[0], 0xEB | 0xE9) {
            return Ok(None);
        }
        let sector = le16(&boot, 0x0B);
        let per_cluster = u64::from(boot[0x0D]);
        let reserved = le16(&boot, 0x0E);
        let fats = u64::from(boot[0x10]);
        let plausible = matches!(sector, 512 | 1024 | 2048 | 4096)
            && per_cluster.is_power_of_two()
            && reserved >= 1
            && (1..=4).contains(&fats);
        if !plausible {
            return Ok(None);
        }
        let damaged = |bits: u8, offset: usize, field: &str, why: String| {
            Ok(Some((
                bits,
                Err(format!(
                    "FAT boot sector field {field} (byte {offset} of the partition) {why}"
                )),
            )))
        };
        let root_entries = le16(&boot, 0x11);
        let fat_size = match le16(&boot, 0x16) {
            0 => le32(&boot, 0x24),
            n => n,
        };
        let total = match le16(&boot, 0x13) {
            0 => le32(&boot, 0x20),
            n => n,
        };
        if fat_size == 0 {
            return damaged(0, 0x24, "BPB_FATSz32", "is 0".into());
        }
        if total.saturating_mul(sector) > len {
            return damaged(
                0,
                0x20,
                "BPB_TotSec",
                format!("says {total} sectors, more than the partition's {len} bytes"),
            );
        }
        let root_sectors = (root_entries * 32).div_ceil(sector);
        let data = reserved + fats * fat_size + root_sectors;
        if data >= total {
            return damaged(
                0,
                0x16,
                "BPB_FATSz",
                format!("puts the data area at sector {data}, past the {total} sectors"),
            );
        }
        let clusters = (total - data) / per_cluster;
        let bits: u8 = if clusters < 4085 {
            12
        } else if clusters < 65525 {
            16
        } else {
            32
        };
        let active = if bits == 32 && boot[0x28] & 0x80 != 0 {
            u64::from(boot[0x28] & 0x0F)
        } else {
            0
        };
        if active >= fats {
            return damaged(
                bits,
                0x28,
                "BPB_ExtFlags",
                format!("names FAT {active} of {fats}"),
            );
        }
        let entries = clusters + 2;
        let table_len = match bits {
            12 => (entries * 3).div_ceil(2),
            16 => entries * 2,
            _ => entries * 4,
        };
        if table_len > fat_size * sector {
            return damaged(
                bits,
                0x16,
                "BPB_FATSz",
                format!(
                    "gives the FAT {} bytes, too few for {clusters} clusters",
                    fat_size * sector
                ),
            );
        }
        let table = at((reserved + active * fat_size) * sector, table_len as usize)?;
        if table.len() < table_len as usize {
            return Ok(Some((bits, Err("the FAT is cut short".into()))));
        }
        let fs = FatFs {
            sector,
            reserved,
            fats,
            fat_size,
            data,
            clusters,
            cluster_bytes: per_cluster * sector,
            bits,
            root_cluster: if bits == 32 { le32(&boot, 0x2C) } else { 0 },
            table,
        };
        Ok(Some((bits, Ok(fs))))
    }

    /// Cluster `n`'s entry in the FAT (`n` from 2 to `clusters + 1`).
    pub(crate) fn entry(&self, n: u64) -> u64 {
        match self.bits {
            12 => {
                let v = le16(&self.table, (n + n / 2) as usize);
                if n % 2 == 0 {
                    v & 0xFFF
                } else {
                    v >> 4
                }
            }
            16 => le16(&self.table, (n * 2) as usize),
            _ => le32(&self.table, (n * 4) as usize) & 0x0FFF_FFFF,
        }
    }

    /// The entry that marks a bad cluster; values from it up end a chain.
    pub(crate) fn bad_mark(&self) -> u64 {
        match self.bits {
            12 => 0xFF7,
            16 => 0xFFF7,
            _ => 0x0FFF_FFF7,
        }
    }

    /// Cluster `n`'s first byte in the partition.
    pub(crate) fn cluster_at(&self, n: u64) -> u64 {
        self.data * self.sector + (n - 2) * self.cluster_bytes
    }
}

/// The used ranges of a FAT filesystem: everything before the data area, and each
/// cluster its table marks as neither free nor bad.
fn fat_used(fs: &FatFs) -> Vec<(u64, u64)> {
    let data_at = fs.data * fs.sector;
    let mut used = vec![(0, data_at)];
    let mut run: Option<u64> = None;
    for n in 2..fs.clusters + 2 {
        let value = fs.entry(n);
        let in_use = value != 0 && value != fs.bad_mark();
        let at_byte = fs.cluster_at(n);
        match (in_use, run) {
            (true, None) => run = Some(at_byte),
            (false, Some(r)) => {
                used.push((r, at_byte));
                run = None;
            }
            _ => {}
        }
    }
    if let Some(r) = run {
        used.push((r, fs.cluster_at(fs.clusters + 2)));
    }
    used
}

// swap ---------------------------------------------------------------------------------

/// Linux swap: its header page, for the page sizes mkswap uses.
fn swap(at: &mut PartRead<'_>) -> Result<Option<Found>, Error> {
    for page in [4096u64, 8192, 16384, 32768, 65536] {
        let tail = at(page - 10, 10)?;
        if tail == b"SWAPSPACE2" {
            return Ok(Some(Ok(vec![(0, page)])));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_clip() {
        assert_eq!(
            merge(vec![(10, 20), (0, 5), (5, 7), (15, 30), (40, 50)], 45),
            [(0, 7), (10, 30), (40, 45)]
        );
        let u = Usage {
            size: 100,
            ranges: vec![(0, 10), (20, 30)],
            table: None,
            parts: Vec::new(),
        };
        assert!(u.touches(5, 6) && u.touches(25, 40) && !u.touches(10, 20));
        assert_eq!(u.used(), 20);
    }

    #[test]
    fn backup_superblocks_sit_in_powers_of_3_5_7() {
        let found: Vec<u64> = (2..60)
            .filter(|&g| is_power_of(g, 3) || is_power_of(g, 5) || is_power_of(g, 7))
            .collect();
        assert_eq!(found, [3, 5, 7, 9, 25, 27, 49]);
    }

    /// Hostile bytes anywhere in the metadata never panic and never give a map that
    /// leaves out a partition's metadata area.
    #[test]
    fn corrupted_metadata_never_panics() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..3000 {
            let mut disk = vec![0u8; 4 << 20];
            // A plausible MBR with one partition at 1 MiB.
            disk[0x1BE + 4] = if round % 2 == 0 { 0x83 } else { 0x0C };
            disk[0x1BE + 8..0x1BE + 12].copy_from_slice(&2048u32.to_le_bytes());
            disk[0x1BE + 12..0x1BE + 16].copy_from_slice(&6144u32.to_le_bytes());
            disk[510] = 0x55;
            disk[511] = 0xAA;
            let part = 1 << 20;
            if round % 2 == 0 {
                disk[part + 1024 + 0x38..part + 1024 + 0x3A]
                    .copy_from_slice(&0xEF53u16.to_le_bytes());
            } else {
                disk[part] = 0xEB;
                disk[part + 0x0B..part + 0x0D].copy_from_slice(&512u16.to_le_bytes());
                disk[part + 0x0D] = 4;
                disk[part + 0x0E] = 1;
                disk[part + 0x10] = 2;
            }
            for _ in 0..(next() % 64) {
                let at = part + (next() % 8192) as usize;
                disk[at] = next() as u8;
            }
            let mut read = |offset: u64, len: usize| -> Result<Vec<u8>, Error> {
                let start = (offset as usize).min(disk.len());
                let end = start.saturating_add(len).min(disk.len());
                Ok(disk[start..end].to_vec())
            };
            let map = usage(&mut read, 4 << 20, 512).expect("reads never fail here");
            assert!(map.touches(0, 1), "round {round}");
            assert!(map.ranges.iter().all(|&(a, b)| a < b && b <= 4 << 20));
        }
    }

    /// Streamed in 4 MiB chunks, an OS-like image (1 KiB-block ext4 with flex_bg, whose
    /// second flex group's bitmaps lie 128 MiB in) is written wherever the full map says
    /// a byte is used, and skips most of its free space.
    #[test]
    fn a_streamed_map_writes_every_used_byte() {
        let dir = std::env::temp_dir().join(format!("cardsmith-stream-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("root/srv")).unwrap();
        std::fs::write(dir.join("root/srv/data"), vec![7u8; 3 << 20]).unwrap();
        let image = dir.join("os.img");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/os-image");
        let made = std::process::Command::new(script)
            .arg(&image)
            .args(["64", "200"])
            .arg(dir.join("root"))
            .status()
            .expect("scripts/os-image (mtools, dosfstools, e2fsprogs, fdisk)");
        assert!(made.success());
        let data = std::fs::read(&image).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let size = data.len() as u64;
        let mut read = |offset: u64, len: usize| -> Result<Vec<u8>, Error> {
            let start = (offset as usize).min(data.len());
            Ok(data[start..(start + len).min(data.len())].to_vec())
        };
        let full = usage(&mut read, size, 512).unwrap();
        let mut stream = StreamMap::new(Some(size));
        let mut written = Vec::new();
        for (i, chunk) in data.chunks(4 << 20).enumerate() {
            let at = (i * (4 << 20)) as u64;
            stream.feed(at, chunk);
            for (a, b) in stream.pieces(at, chunk.len()) {
                written.push((at + a as u64, at + b as u64));
            }
        }
        let written = merge(written, size);
        for &(a, b) in &full.ranges {
            let i = written.partition_point(|&(_, e)| e <= a);
            assert!(
                written.get(i).is_some_and(|&(s, e)| s <= a && e >= b),
                "used bytes {a}..{b} were not written"
            );
        }
        let total: u64 = written.iter().map(|(a, b)| b - a).sum();
        assert!(total < size / 2, "{total} of {size} written");
    }
}
