//! Where a disk's partitions end, for backups that leave out the unpartitioned rest of a
//! card (`read --allocated-only`).
//!
//! An MBR image is the disk up to the end of its last partition (primary, or logical inside
//! an extended partition, whose declared size is cut down to its last logical partition
//! when it reached further). A GPT image is the disk up to the end of its last partition,
//! followed by a new backup partition array and backup header; the protective MBR and the
//! primary header are changed to name the new end, so the image is a valid GPT disk of its
//! own size (`sfdisk --verify` finds nothing to report).

use crate::buffer::{AlignedBuf, ALIGN};
use crate::target::Target;
use crate::Error;

/// The partition table kinds `--allocated-only` understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// A DOS partition table (primary, extended and logical partitions).
    Mbr,
    /// A GUID partition table.
    Gpt,
}

impl TableKind {
    /// "MBR" or "GPT".
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Mbr => "MBR",
            TableKind::Gpt => "GPT",
        }
    }
}

/// How to make an image of only the partitioned part of a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocated {
    /// The disk's partition table.
    pub table: TableKind,
    /// The byte just past the last partition.
    pub partitions_end: u64,
    /// How many bytes from the start of the disk the image copies.
    pub copy: u64,
    /// Byte ranges of the copied part replaced in the image: (offset, new bytes).
    pub patches: Vec<(u64, Vec<u8>)>,
    /// Bytes appended after the copied part (GPT: backup partition array and header).
    pub tail: Vec<u8>,
}

impl Allocated {
    /// The image's length.
    pub fn len(&self) -> u64 {
        self.copy + self.tail.len() as u64
    }

    /// Whether the image would hold nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole disk, as it is.
    fn whole(table: TableKind, partitions_end: u64, disk: u64) -> Allocated {
        Allocated {
            table,
            partitions_end,
            copy: disk,
            patches: Vec::new(),
            tail: Vec::new(),
        }
    }

    /// Applies the patches that overlap `data`, which holds the image's bytes from `offset`.
    pub fn patch(&self, offset: u64, data: &mut [u8]) {
        let end = offset + data.len() as u64;
        for (at, bytes) in &self.patches {
            let stop = at + bytes.len() as u64;
            if *at >= end || stop <= offset {
                continue;
            }
            let from = at.max(&offset) - at;
            let to = stop.min(end) - at;
            let dest = (at + from - offset) as usize;
            data[dest..dest + (to - from) as usize]
                .copy_from_slice(&bytes[from as usize..to as usize]);
        }
    }
}

/// Reads the partition table of `disk` and plans its allocated-only image.
pub fn plan(disk: &Target) -> Result<Allocated, Error> {
    let size = disk.size().unwrap_or(0);
    let mut reader = |offset: u64, len: usize| read_bytes(disk, offset, len);
    match plan_inner(&mut reader, size, disk.sector_size()) {
        Ok(plan) => Ok(plan),
        Err(Unusable::Table(detail)) => Err(Error::NoPartitionTable {
            path: disk.path().to_owned(),
            detail,
        }),
        Err(Unusable::Io(e)) => Err(e),
    }
}

pub(crate) type ReadFn<'a> = dyn FnMut(u64, usize) -> Result<Vec<u8>, Error> + 'a;

/// Why a table cannot be used: what is wrong with it, or a read that failed.
enum Unusable {
    Table(String),
    Io(Error),
}

impl From<Error> for Unusable {
    fn from(e: Error) -> Unusable {
        Unusable::Io(e)
    }
}

fn plan_inner(read: &mut ReadFn<'_>, disk: u64, sector: u64) -> Result<Allocated, Unusable> {
    let mbr = read(0, 512)?;
    if mbr.len() < 512 || mbr[510..512] != [0x55, 0xAA] {
        return Err(Unusable::Table(
            "it has no partition table (no MBR signature in its first sector)".into(),
        ));
    }
    let entries = mbr_entries(&mbr);
    if entries.iter().any(|e| e.boot != 0 && e.boot != 0x80) {
        return Err(Unusable::Table(
            "its first sector is not a partition table (a filesystem on the whole disk?)".into(),
        ));
    }
    if entries.iter().any(|e| e.kind == 0xEE) {
        for ss in [sector, 512, 4096] {
            let head = read(ss, 512)?;
            if head.starts_with(b"EFI PART") {
                return gpt(read, &mbr, disk, ss);
            }
        }
        return Err(Unusable::Table(
            "its protective MBR announces a GPT, but no GPT header was found".into(),
        ));
    }
    mbr_plan(read, &mbr, &entries, disk, sector)
}

#[derive(Debug, Clone, Copy)]
struct MbrEntry {
    boot: u8,
    kind: u8,
    start: u64,
    sectors: u64,
}

fn mbr_entries(sector: &[u8]) -> [MbrEntry; 4] {
    std::array::from_fn(|i| {
        let e = &sector[0x1BE + 16 * i..0x1BE + 16 * (i + 1)];
        MbrEntry {
            boot: e[0],
            kind: e[4],
            start: u32::from_le_bytes(e[8..12].try_into().expect("4 bytes")) as u64,
            sectors: u32::from_le_bytes(e[12..16].try_into().expect("4 bytes")) as u64,
        }
    })
}

fn is_extended(kind: u8) -> bool {
    matches!(kind, 0x05 | 0x0F | 0x85)
}

fn mbr_plan(
    read: &mut ReadFn<'_>,
    mbr: &[u8],
    entries: &[MbrEntry; 4],
    disk: u64,
    ss: u64,
) -> Result<Allocated, Unusable> {
    // In sectors: the end of the last partition (or of the last EBR).
    let mut end = 0u64;
    let mut extended = None;
    for (i, e) in entries.iter().enumerate() {
        if e.kind == 0 || e.sectors == 0 {
            continue;
        }
        if is_extended(e.kind) {
            if extended.is_some() {
                return Err(Unusable::Table("it has two extended partitions".into()));
            }
            extended = Some(i);
            end = end.max(e.start + 1);
            end = end.max(logical_end(read, e.start, ss)?);
        } else {
            end = end.max(e.start + e.sectors);
        }
    }
    if end == 0 {
        return Err(Unusable::Table(
            "its partition table lists no partitions".into(),
        ));
    }
    let bytes = end * ss;
    if bytes > disk {
        return Err(Unusable::Table(format!(
            "its partitions end at byte {bytes}, beyond the end of the device ({disk} bytes): \
             the table is damaged, or the image was written to a smaller card"
        )));
    }
    let mut plan = Allocated::whole(TableKind::Mbr, bytes, bytes);
    if let Some(i) = extended {
        let e = entries[i];
        if e.start + e.sectors > end {
            // The extended partition reached past its last logical partition: declare it
            // ending there, or the image's table would point past the image.
            let mut first = mbr[..512].to_vec();
            let at = 0x1BE + 16 * i;
            let sectors = u32::try_from(end - e.start).expect("smaller than before");
            first[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
            first[at + 5..at + 8].copy_from_slice(&chs(end - 1));
            plan.patches.push((0, first));
        }
    }
    Ok(plan)
}

/// Follows the chain of extended boot records from the extended partition at `ext` (in
/// sectors) and returns the end of the last logical partition or EBR, in sectors.
fn logical_end(read: &mut ReadFn<'_>, ext: u64, ss: u64) -> Result<u64, Unusable> {
    let mut end = 0;
    let mut ebr = ext;
    let mut seen = std::collections::BTreeSet::new();
    loop {
        if !seen.insert(ebr) || seen.len() > 1024 {
            return Err(Unusable::Table(format!(
                "its chain of logical partitions loops (at sector {ebr})"
            )));
        }
        let sector = read(ebr * ss, 512)?;
        if sector.len() < 512 || sector[510..512] != [0x55, 0xAA] {
            return Err(Unusable::Table(format!(
                "the extended boot record at sector {ebr} has no signature"
            )));
        }
        let [logical, next, ..] = mbr_entries(&sector);
        end = end.max(ebr + 1);
        if logical.kind != 0 && logical.sectors > 0 {
            end = end.max(ebr + logical.start + logical.sectors);
        }
        if next.kind == 0 || next.sectors == 0 {
            return Ok(end);
        }
        ebr = ext + next.start;
    }
}

/// The CHS address of sector `lba` in the usual 255-head, 63-sector geometry, or the
/// "beyond 1024 cylinders" marker.
fn chs(lba: u64) -> [u8; 3] {
    let cylinder = lba / (255 * 63);
    if cylinder > 1023 {
        return [0xFE, 0xFF, 0xFF];
    }
    let head = (lba / 63) % 255;
    let sector = lba % 63 + 1;
    [
        head as u8,
        (sector as u8) | (((cylinder >> 2) & 0xC0) as u8),
        (cylinder & 0xFF) as u8,
    ]
}

pub(crate) fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

pub(crate) fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Sets a GPT header's CRC over its first `size` bytes.
fn seal(header: &mut [u8], size: usize) {
    header[16..20].fill(0);
    let crc = crc32fast::hash(&header[..size]);
    header[16..20].copy_from_slice(&crc.to_le_bytes());
}

/// A GPT read and checked: its primary header, partition array, and where things are.
struct Gpt {
    header: Vec<u8>,
    /// The header's own size (bytes 12-15).
    size: usize,
    array: Vec<u8>,
    entries_lba: u64,
    array_sectors: u64,
    /// Every partition's first and last LBA.
    parts: Vec<(u64, u64)>,
}

/// Reads and checks the GPT whose header is at LBA 1 (`ss`-byte sectors).
fn gpt_read(read: &mut ReadFn<'_>, disk: u64, ss: u64) -> Result<Gpt, Unusable> {
    let bad = |what: &str| Unusable::Table(format!("its GPT {what}"));
    // Every number below comes from the disk: a damaged or hostile table must give an
    // error naming the field, never a panic and never an arithmetic wrap that makes a
    // short image look complete.
    let header = read(ss, ss as usize)?;
    if header.len() < 92 {
        return Err(bad(&format!(
            "header at byte {ss} is cut short: the disk ends {} bytes into it (a header has 92)",
            header.len()
        )));
    }
    let size = le32(&header, 12) as usize;
    if !(92..=header.len()).contains(&size) {
        return Err(bad(&format!(
            "header size (bytes 12-15) is {size}, not between 92 and {}",
            header.len()
        )));
    }
    let mut check = header[..size].to_vec();
    let crc = le32(&check, 16);
    check[16..20].fill(0);
    if crc32fast::hash(&check) != crc {
        return Err(bad(
            "header is damaged (CRC mismatch); repair it with gdisk or sfdisk",
        ));
    }
    let entries_lba = le64(&header, 72);
    let count = le32(&header, 80) as u64;
    let entry_size = le32(&header, 84) as u64;
    if entry_size < 128 || entry_size % 8 != 0 || count * entry_size > 4 << 20 {
        return Err(bad("partition array has an impossible size"));
    }
    let array_len = (count * entry_size) as usize;
    let array_at = entries_lba
        .checked_mul(ss)
        .filter(|&at| at < disk)
        .ok_or_else(|| {
            bad(&format!(
                "partition array LBA (header bytes 72-79) is {entries_lba}, beyond the end of \
                 the device ({disk} bytes)"
            ))
        })?;
    let array = read(array_at, array_len)?;
    if array.len() < array_len || crc32fast::hash(&array) != le32(&header, 88) {
        return Err(bad("partition array is damaged (CRC mismatch)"));
    }
    // The table itself must lie before the partitions, or an image that ends with them
    // would leave it out.
    let array_sectors = (array_len as u64).div_ceil(ss);
    let first_usable = le64(&header, 40);
    let array_end = entries_lba.saturating_add(array_sectors);
    if entries_lba < 2 || first_usable < array_end {
        return Err(bad(&format!(
            "first usable LBA (header bytes 40-47) is {first_usable}, inside its own header or \
             partition array (LBA 1 to {})",
            array_end.saturating_sub(1)
        )));
    }
    let mut parts = Vec::new();
    for (i, e) in array.chunks(entry_size as usize).enumerate() {
        if e[..16].iter().all(|&b| b == 0) {
            continue;
        }
        let (first_lba, last_lba) = (le64(e, 32), le64(e, 40));
        if last_lba < first_lba {
            return Err(bad(&format!(
                "partition {} ends (LBA {last_lba}) before it starts (LBA {first_lba})",
                i + 1
            )));
        }
        if first_lba < first_usable {
            return Err(bad(&format!(
                "partition {} starts at LBA {first_lba}, before the first usable LBA \
                 {first_usable}",
                i + 1
            )));
        }
        parts.push((first_lba, last_lba));
    }
    Ok(Gpt {
        header,
        size,
        array,
        entries_lba,
        array_sectors,
        parts,
    })
}

fn gpt(read: &mut ReadFn<'_>, mbr: &[u8], disk: u64, ss: u64) -> Result<Allocated, Unusable> {
    let bad = |what: &str| Unusable::Table(format!("its GPT {what}"));
    let Gpt {
        mut header,
        size,
        array,
        array_sectors,
        parts,
        ..
    } = gpt_read(read, disk, ss)?;
    let last = parts.iter().map(|&(_, last)| last).max();
    let last = last.ok_or_else(|| bad("lists no partitions"))?;
    let partitions_end = last
        .checked_add(1)
        .and_then(|sectors| sectors.checked_mul(ss))
        .filter(|&end| end <= disk)
        .ok_or_else(|| {
            bad(&format!(
                "partitions end at LBA {last}, beyond the end of the device ({disk} bytes)"
            ))
        })?;
    // From here on every value is bounded by the disk's size (ss >= 512, array <= 4 MiB).
    let new_last = last + array_sectors + 1;
    let image = (new_last + 1)
        .checked_mul(ss)
        .ok_or_else(|| bad("backup header would lie beyond 2^64 bytes"))?;
    if image >= disk {
        // The partitions fill the disk: nothing to leave out, nothing to move.
        return Ok(Allocated::whole(TableKind::Gpt, partitions_end, disk));
    }

    let mut plan = Allocated::whole(TableKind::Gpt, partitions_end, partitions_end);
    let mut first = mbr[..512].to_vec();
    for i in 0..4 {
        let at = 0x1BE + 16 * i;
        // The protective entry (from LBA 1); a hybrid MBR's other entries stay as they are.
        if first[at + 4] == 0xEE && le32(&first, at + 8) == 1 {
            let sectors = u32::try_from(new_last).unwrap_or(u32::MAX);
            first[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
            first[at + 5..at + 8].copy_from_slice(&chs(new_last));
        }
    }
    plan.patches.push((0, first));

    header[32..40].copy_from_slice(&new_last.to_le_bytes());
    header[48..56].copy_from_slice(&last.to_le_bytes());
    seal(&mut header, size);
    plan.patches.push((ss, header.clone()));

    let mut tail = array;
    tail.resize((array_sectors * ss) as usize, 0);
    let mut backup = header;
    backup[24..32].copy_from_slice(&new_last.to_le_bytes());
    backup[32..40].copy_from_slice(&1u64.to_le_bytes());
    backup[72..80].copy_from_slice(&(last + 1).to_le_bytes());
    backup[size..].fill(0);
    seal(&mut backup, size);
    tail.extend_from_slice(&backup);
    plan.tail = tail;
    Ok(plan)
}

/// The last partition of a disk image (by where it ends), as [`shrink_last_partition`]
/// sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastPartition {
    /// Its number in the table (1 for the first entry).
    pub number: usize,
    /// Its first byte.
    pub start: u64,
    /// Its length in bytes.
    pub len: u64,
    /// The table it is in.
    pub table: TableKind,
}

/// The partition of the image in `file` (`size` bytes, 512-byte sectors) that ends last:
/// the one a shrink cuts. A logical partition of an MBR (inside an extended one) is refused,
/// as is a table that does not hold together.
pub fn last_partition(file: &std::fs::File, size: u64) -> Result<LastPartition, String> {
    let mut read = file_reader(file, size, "the image");
    let plan = plan_inner(&mut read, size, 512).map_err(|u| match u {
        Unusable::Table(detail) => detail,
        Unusable::Io(e) => e.to_string(),
    })?;
    match plan.table {
        TableKind::Mbr => {
            let mbr = read(0, 512).map_err(|e| e.to_string())?;
            let entries = mbr_entries(&mbr);
            let (i, e) = entries
                .iter()
                .enumerate()
                .filter(|(_, e)| e.kind != 0 && e.sectors > 0)
                .max_by_key(|(_, e)| e.start + e.sectors)
                .ok_or("its partition table lists no partitions")?;
            if is_extended(e.kind) {
                return Err(format!(
                    "its last partition is a logical one (inside extended partition {})",
                    i + 1
                ));
            }
            Ok(LastPartition {
                number: i + 1,
                start: e.start * 512,
                len: e.sectors * 512,
                table: TableKind::Mbr,
            })
        }
        TableKind::Gpt => {
            let gpt = gpt_read(&mut read, size, 512).map_err(|u| match u {
                Unusable::Table(detail) => detail,
                Unusable::Io(e) => e.to_string(),
            })?;
            let entry_size = le32(&gpt.header, 84) as usize;
            let (i, first, last) = gpt
                .array
                .chunks(entry_size)
                .enumerate()
                .filter(|(_, e)| e[..16].iter().any(|&b| b != 0))
                .map(|(i, e)| (i, le64(e, 32), le64(e, 40)))
                .max_by_key(|&(_, _, last)| last)
                .ok_or("its GPT lists no partitions")?;
            Ok(LastPartition {
                number: i + 1,
                start: first * 512,
                len: (last - first + 1) * 512,
                table: TableKind::Gpt,
            })
        }
    }
}

/// Makes the image in `file` end its last partition (`last`, from [`last_partition`])
/// after `new_len` bytes (a multiple of 512): the MBR entry's sector count, or the GPT
/// entry's last LBA with the array's and the header's CRCs. A GPT's backup is rebuilt
/// at the new end by an allocated-only read ([`crate::ReadOptions::allocated_only`]).
pub fn shrink_last_partition(
    file: &std::fs::File,
    last: &LastPartition,
    new_len: u64,
) -> Result<(), Error> {
    use std::os::unix::fs::FileExt;
    assert!(
        new_len % 512 == 0 && new_len <= last.len,
        "a shrink, in sectors"
    );
    let write = |at: u64, data: &[u8]| {
        file.write_all_at(data, at).map_err(|source| Error::Write {
            path: "the image being shrunk".into(),
            offset: at,
            source,
        })
    };
    let read = |at: u64, len: usize| -> Result<Vec<u8>, Error> {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, at)
            .map_err(|e| Error::read("the image being shrunk", at, e))?;
        Ok(buf)
    };
    let sectors = new_len / 512;
    match last.table {
        TableKind::Mbr => {
            let mut mbr = read(0, 512)?;
            let at = 0x1BE + 16 * (last.number - 1);
            let count = u32::try_from(sectors).expect("smaller than it was");
            mbr[at + 12..at + 16].copy_from_slice(&count.to_le_bytes());
            mbr[at + 5..at + 8].copy_from_slice(&chs(last.start / 512 + sectors - 1));
            write(0, &mbr)
        }
        TableKind::Gpt => {
            let mut header = read(512, 512)?;
            let size = le32(&header, 12) as usize;
            let entries_at = le64(&header, 72) * 512;
            let array_len = (le32(&header, 80) * le32(&header, 84)) as usize;
            let mut array = read(entries_at, array_len)?;
            let e = (last.number - 1) * le32(&header, 84) as usize;
            let last_lba = last.start / 512 + sectors - 1;
            array[e + 40..e + 48].copy_from_slice(&last_lba.to_le_bytes());
            header[88..92].copy_from_slice(&crc32fast::hash(&array).to_le_bytes());
            seal(&mut header, size);
            write(entries_at, &array)?;
            write(512, &header)
        }
    }
}

/// Positioned reads of an image file of `size` bytes, short at its end; errors name it
/// `what`.
pub(crate) fn file_reader<'a>(
    file: &'a std::fs::File,
    size: u64,
    what: &'a str,
) -> impl FnMut(u64, usize) -> Result<Vec<u8>, Error> + 'a {
    use std::os::unix::fs::FileExt;
    move |offset: u64, len: usize| {
        let len = len.min(size.saturating_sub(offset) as usize);
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| Error::read(what, offset, e))?;
        Ok(buf)
    }
}

/// A disk's partitions and the bytes its partition table itself takes.
pub(crate) struct Table {
    pub kind: TableKind,
    /// Each partition's first byte and length.
    pub parts: Vec<(u64, u64)>,
    /// Byte ranges of the table's own structures: the first sector, extended boot
    /// records, GPT headers and arrays (primary and backup).
    pub meta: Vec<(u64, u64)>,
}

/// The partitions of the disk behind `read` (`disk` bytes, `sector`-byte sectors), checked
/// as [`plan`] checks them. `Err` says why the first sector is not a usable table.
pub(crate) fn table(read: &mut ReadFn<'_>, disk: u64, sector: u64) -> Result<Table, String> {
    let unusable = |u: Unusable| match u {
        Unusable::Table(detail) => detail,
        Unusable::Io(e) => e.to_string(),
    };
    // The same checks as a plan: a table that could not be planned is not listed either.
    let plan = plan_inner(read, disk, sector).map_err(unusable)?;
    let mut table = Table {
        kind: plan.table,
        parts: Vec::new(),
        meta: vec![(0, 512)],
    };
    match plan.table {
        TableKind::Mbr => {
            let mbr = read(0, 512).map_err(|e| e.to_string())?;
            for e in mbr_entries(&mbr) {
                if e.kind == 0 || e.sectors == 0 {
                    continue;
                }
                if !is_extended(e.kind) {
                    table.parts.push((e.start * sector, e.sectors * sector));
                    continue;
                }
                // The chain was walked (and found sound) by the plan above.
                let mut ebr = e.start;
                for _ in 0..1024 {
                    let record = read(ebr * sector, 512).map_err(|e| e.to_string())?;
                    table.meta.push((ebr * sector, sector));
                    let [logical, next, ..] = mbr_entries(&record);
                    if logical.kind != 0 && logical.sectors > 0 {
                        let start = (ebr + logical.start) * sector;
                        table.parts.push((start, logical.sectors * sector));
                    }
                    if next.kind == 0 || next.sectors == 0 {
                        break;
                    }
                    ebr = e.start + next.start;
                }
            }
        }
        TableKind::Gpt => {
            let ss = [sector, 512, 4096]
                .into_iter()
                .find(|&ss| read(ss, 8).is_ok_and(|h| h.starts_with(b"EFI PART")))
                .unwrap_or(sector);
            let gpt = gpt_read(read, disk, ss).map_err(unusable)?;
            table.meta.push((ss, ss));
            table
                .meta
                .push((gpt.entries_lba * ss, gpt.array_sectors * ss));
            // The backup header and the array before it, where the primary says it is.
            let alternate = le64(&gpt.header, 32);
            if alternate > gpt.array_sectors && (alternate + 1).saturating_mul(ss) <= disk {
                let backup = alternate - gpt.array_sectors;
                table.meta.push((backup * ss, (gpt.array_sectors + 1) * ss));
            }
            for (first, last) in gpt.parts {
                table.parts.push((first * ss, (last - first + 1) * ss));
            }
        }
    }
    Ok(table)
}

/// Reads `len` bytes at `offset` through an aligned buffer (the disk may be open with
/// O_DIRECT). Fewer bytes come back only at the end of the disk.
pub(crate) fn read_bytes(disk: &Target, offset: u64, len: usize) -> Result<Vec<u8>, Error> {
    let start = offset - offset % ALIGN as u64;
    let skip = (offset - start) as usize;
    let mut buf = AlignedBuf::new(skip + len);
    let got = disk.read_at(&mut buf, skip + len, start)?;
    Ok(buf[skip.min(got)..got].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_from(read: &mut ReadFn<'_>, disk: u64, sector: u64) -> Result<Allocated, String> {
        match plan_inner(read, disk, sector) {
            Ok(plan) => Ok(plan),
            Err(Unusable::Table(detail)) => Err(detail),
            Err(Unusable::Io(e)) => Err(e.to_string()),
        }
    }

    fn entry(sector: &mut [u8], i: usize, kind: u8, start: u32, sectors: u32) {
        let at = 0x1BE + 16 * i;
        sector[at + 4] = kind;
        sector[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
        sector[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
        sector[510] = 0x55;
        sector[511] = 0xAA;
    }

    fn reader(disk: &[u8]) -> impl FnMut(u64, usize) -> Result<Vec<u8>, Error> + '_ {
        |offset, len| {
            let from = (offset as usize).min(disk.len());
            Ok(disk[from..(from + len).min(disk.len())].to_vec())
        }
    }

    #[test]
    fn mbr_with_logical_partitions_ends_at_the_last_logical_one() {
        let mut disk = vec![0u8; 4096 * 512];
        entry(&mut disk[..512], 0, 0x0c, 8, 100);
        entry(&mut disk[..512], 1, 0x05, 200, 3000);
        // EBR at 200: logical at 200+2, 300 sectors; next EBR at 200+600.
        entry(&mut disk[200 * 512..201 * 512], 0, 0x83, 2, 300);
        entry(&mut disk[200 * 512..201 * 512], 1, 0x05, 600, 500);
        // EBR at 800: logical at 802, 400 sectors (ends at 1202).
        entry(&mut disk[800 * 512..801 * 512], 0, 0x83, 2, 400);
        let plan = plan_from(&mut reader(&disk), disk.len() as u64, 512).unwrap();
        assert_eq!(plan.table, TableKind::Mbr);
        assert_eq!(plan.copy, 1202 * 512);
        assert!(plan.tail.is_empty());
        // The extended partition is cut down to end with the last logical one.
        let mut first = disk[..512].to_vec();
        plan.patch(0, &mut first);
        let ext = mbr_entries(&first)[1];
        assert_eq!((ext.start, ext.sectors), (200, 1002));
        assert_eq!(mbr_entries(&first)[0].sectors, 100);
    }

    #[test]
    fn a_looping_ebr_chain_and_a_superfloppy_are_refused() {
        let mut disk = vec![0u8; 1024 * 512];
        entry(&mut disk[..512], 0, 0x05, 10, 500);
        entry(&mut disk[10 * 512..11 * 512], 0, 0x83, 2, 20);
        entry(&mut disk[10 * 512..11 * 512], 1, 0x05, 0, 20);
        let err = plan_from(&mut reader(&disk), disk.len() as u64, 512).unwrap_err();
        assert!(err.contains("loops"), "{err}");

        let mut fat = vec![0u8; 1024 * 512];
        fat[0x1BE] = 0x33;
        fat[510] = 0x55;
        fat[511] = 0xAA;
        let err = plan_from(&mut reader(&fat), fat.len() as u64, 512).unwrap_err();
        assert!(err.contains("not a partition table"), "{err}");

        let blank = vec![0u8; 1024];
        let err = plan_from(&mut reader(&blank), 1024, 512).unwrap_err();
        assert!(err.contains("no partition table"), "{err}");
    }

    #[test]
    fn partitions_past_the_end_of_the_device_are_refused() {
        let mut disk = vec![0u8; 100 * 512];
        entry(&mut disk[..512], 0, 0x83, 8, 1000);
        let err = plan_from(&mut reader(&disk), disk.len() as u64, 512).unwrap_err();
        assert!(err.contains("beyond the end"), "{err}");
    }

    #[test]
    fn patches_apply_across_chunk_boundaries() {
        let plan = Allocated {
            table: TableKind::Gpt,
            partitions_end: 0,
            copy: 100,
            patches: vec![(6, vec![1, 2, 3, 4])],
            tail: Vec::new(),
        };
        let mut a = [0u8; 8];
        plan.patch(0, &mut a);
        let mut b = [0u8; 8];
        plan.patch(8, &mut b);
        assert_eq!(a, [0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(b, [3, 4, 0, 0, 0, 0, 0, 0]);
    }

    /// A GPT disk of `sectors` sectors of `ss` bytes with partitions (first, last LBA),
    /// laid out as sfdisk does: protective MBR, header at LBA 1, 128 entries from LBA 2,
    /// backup array and header at the end.
    fn gpt_disk(ss: u64, sectors: u64, parts: &[(u64, u64)]) -> Vec<u8> {
        let ssz = ss as usize;
        let mut disk = vec![0u8; (sectors * ss) as usize];
        entry(&mut disk[..512], 0, 0xEE, 1, (sectors - 1) as u32);
        let mut array = vec![0u8; 128 * 128];
        for (i, (first, last)) in parts.iter().enumerate() {
            let e = &mut array[128 * i..128 * (i + 1)];
            e[..16].copy_from_slice(&[0x0F; 16]);
            e[16..32].copy_from_slice(&[i as u8 + 1; 16]);
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
        }
        let array_sectors = (array.len() as u64).div_ceil(ss);
        let last = sectors - 1;
        let mut header = vec![0u8; ssz];
        header[..8].copy_from_slice(b"EFI PART");
        header[8..12].copy_from_slice(&[0, 0, 1, 0]);
        header[12..16].copy_from_slice(&92u32.to_le_bytes());
        header[24..32].copy_from_slice(&1u64.to_le_bytes());
        header[32..40].copy_from_slice(&last.to_le_bytes());
        header[40..48].copy_from_slice(&(2 + array_sectors).to_le_bytes());
        header[48..56].copy_from_slice(&(last - array_sectors - 1).to_le_bytes());
        header[72..80].copy_from_slice(&2u64.to_le_bytes());
        header[80..84].copy_from_slice(&128u32.to_le_bytes());
        header[84..88].copy_from_slice(&128u32.to_le_bytes());
        header[88..92].copy_from_slice(&crc32fast::hash(&array).to_le_bytes());
        seal(&mut header, 92);
        disk[ssz..2 * ssz].copy_from_slice(&header);
        disk[2 * ssz..2 * ssz + array.len()].copy_from_slice(&array);
        let backup_array = ((last - array_sectors) * ss) as usize;
        disk[backup_array..backup_array + array.len()].copy_from_slice(&array);
        let mut backup = header.clone();
        backup[24..32].copy_from_slice(&last.to_le_bytes());
        backup[32..40].copy_from_slice(&1u64.to_le_bytes());
        backup[72..80].copy_from_slice(&(last - array_sectors).to_le_bytes());
        seal(&mut backup, 92);
        disk[(last * ss) as usize..].copy_from_slice(&backup);
        disk
    }

    fn crc_ok(header: &[u8]) -> bool {
        let mut copy = header[..92].to_vec();
        let crc = le32(&copy, 16);
        copy[16..20].fill(0);
        crc32fast::hash(&copy) == crc
    }

    #[test]
    fn gpt_images_end_with_a_valid_backup_table_for_512_and_4096_byte_sectors() {
        for ss in [512u64, 4096] {
            let sectors = 4096;
            let disk = gpt_disk(ss, sectors, &[(40, 99), (100, 999)]);
            let plan = plan_from(&mut reader(&disk), disk.len() as u64, ss).unwrap();
            assert_eq!(plan.table, TableKind::Gpt);
            assert_eq!(plan.partitions_end, 1000 * ss);
            let array_sectors = (128 * 128u64).div_ceil(ss);
            let new_last = 999 + array_sectors + 1;
            assert_eq!(plan.len(), (new_last + 1) * ss, "ss {ss}");

            let mut image = disk[..plan.copy as usize].to_vec();
            plan.patch(0, &mut image);
            image.extend_from_slice(&plan.tail);
            let ssz = ss as usize;
            let primary = &image[ssz..2 * ssz];
            assert!(crc_ok(primary), "ss {ss}: primary CRC");
            assert_eq!(le64(primary, 32), new_last, "alternate LBA");
            assert_eq!(le64(primary, 48), 999, "last usable LBA");
            let backup = &image[(new_last * ss) as usize..];
            assert_eq!(backup.len(), ssz);
            assert!(crc_ok(backup), "ss {ss}: backup CRC");
            assert_eq!(&backup[..8], b"EFI PART");
            assert_eq!(le64(backup, 24), new_last);
            assert_eq!(le64(backup, 32), 1);
            assert_eq!(le64(backup, 72), 1000);
            let array = &image[(1000 * ss) as usize..(1000 * ss) as usize + 128 * 128];
            assert_eq!(crc32fast::hash(array), le32(backup, 88));
            assert_eq!(array, &disk[2 * ssz..2 * ssz + 128 * 128]);
            assert_eq!(mbr_entries(&image[..512])[0].sectors, new_last);
            assert_eq!(mbr_entries(&image[..512])[0].kind, 0xEE);
        }
    }

    #[test]
    fn a_damaged_gpt_header_and_a_hybrid_mbr() {
        let mut disk = gpt_disk(512, 4096, &[(40, 99)]);
        // A hybrid MBR: a FAT entry beside the protective one stays as it is.
        entry(&mut disk[..512], 1, 0x0c, 40, 60);
        let plan = plan_from(&mut reader(&disk), disk.len() as u64, 512).unwrap();
        let mut first = disk[..512].to_vec();
        plan.patch(0, &mut first);
        assert_eq!(mbr_entries(&first)[1].sectors, 60);
        assert_eq!(mbr_entries(&first)[0].sectors, 99 + 32 + 1);

        disk[512 + 40] ^= 1;
        let err = plan_from(&mut reader(&disk), disk.len() as u64, 512).unwrap_err();
        assert!(err.contains("CRC mismatch"), "{err}");
    }

    /// Rewrites the primary GPT's array CRC and header CRC after a test changed them, so
    /// only the field under test is wrong.
    fn reseal_primary(disk: &mut [u8], ss: usize) {
        let lba = le64(&disk[ss..2 * ss], 72) as usize;
        let array = if lba < disk.len() / ss {
            crc32fast::hash(&disk[lba * ss..lba * ss + 128 * 128])
        } else {
            crc32fast::hash(&disk[0..128 * 128])
        };
        disk[ss + 88..ss + 92].copy_from_slice(&array.to_le_bytes());
        seal(&mut disk[ss..2 * ss], 92);
    }

    #[test]
    fn a_gpt_header_cut_short_by_the_end_of_the_image_is_refused_not_a_panic() {
        let full = gpt_disk(512, 64, &[(40, 50)]);
        for len in 512 + 8..=512 + 120 {
            let disk = &full[..len];
            let err = plan_from(&mut reader(disk), len as u64, 512).unwrap_err();
            assert!(err.starts_with("its GPT "), "{len} bytes: {err}");
            if len < 512 + 92 {
                assert!(err.contains("cut short"), "{len} bytes: {err}");
            }
        }
    }

    #[test]
    fn hostile_gpt_numbers_are_errors_naming_the_field_not_wraps() {
        let ss = 512usize;
        // A partition ending at LBA 2^64-1: its end in bytes wraps to 0 in release builds,
        // which once gave an "image" of 33 sectors reported as a complete backup.
        for last in [u64::MAX, (1u64 << 55) - 1, 1u64 << 60] {
            let mut disk = gpt_disk(512, 4096, &[(40, 99)]);
            disk[2 * ss + 40..2 * ss + 48].copy_from_slice(&last.to_le_bytes());
            reseal_primary(&mut disk, ss);
            let err = plan_from(&mut reader(&disk), disk.len() as u64, 512).unwrap_err();
            assert!(
                err.contains(&format!("partitions end at LBA {last}, beyond the end")),
                "{err}"
            );
        }
        // The partition array's LBA times the sector size wraps past 2^64.
        let mut disk = gpt_disk(512, 4096, &[(40, 99)]);
        disk[ss + 72..ss + 80].copy_from_slice(&(1u64 << 55).to_le_bytes());
        reseal_primary(&mut disk, ss);
        let err = plan_from(&mut reader(&disk), disk.len() as u64, 512).unwrap_err();
        assert!(
            err.contains("partition array LBA (header bytes 72-79) is 36028797018963968"),
            "{err}"
        );
        // A partition that ends before it starts.
        let mut disk = gpt_disk(512, 4096, &[(40, 99), (500, 100)]);
        reseal_primary(&mut disk, ss);
        let err = plan_from(&mut reader(&disk), disk.len() as u64, 512).unwrap_err();
        assert!(
            err.contains("partition 2 ends (LBA 100) before it starts (LBA 500)"),
            "{err}"
        );
        // A first usable LBA inside the partition array, and a partition before it.
        let mut disk = gpt_disk(512, 4096, &[(40, 99)]);
        disk[ss + 40..ss + 48].copy_from_slice(&0u64.to_le_bytes());
        reseal_primary(&mut disk, ss);
        let err = plan_from(&mut reader(&disk), disk.len() as u64, 512).unwrap_err();
        assert!(
            err.contains("first usable LBA (header bytes 40-47) is 0, inside its own header"),
            "{err}"
        );
        let mut disk = gpt_disk(512, 4096, &[(1, 99)]);
        reseal_primary(&mut disk, ss);
        let err = plan_from(&mut reader(&disk), disk.len() as u64, 512).unwrap_err();
        assert!(
            err.contains("partition 1 starts at LBA 1, before the first usable LBA 34"),
            "{err}"
        );
        // A header size larger than the sector read.
        let mut disk = gpt_disk(512, 4096, &[(40, 99)]);
        disk[ss + 12..ss + 16].copy_from_slice(&600u32.to_le_bytes());
        let err = plan_from(&mut reader(&disk), disk.len() as u64, 512).unwrap_err();
        assert!(err.contains("header size (bytes 12-15) is 600"), "{err}");
    }

    #[test]
    fn chs_addresses() {
        assert_eq!(chs(0), [0, 1, 0]);
        assert_eq!(chs(63), [1, 1, 0]);
        assert_eq!(chs(255 * 63), [0, 1, 1]);
        assert_eq!(chs(255 * 63 * 300), [0, 1 | 0x40, 44]);
        assert_eq!(chs(u32::MAX as u64), [0xFE, 0xFF, 0xFF]);
    }
}
