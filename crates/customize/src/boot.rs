//! The FAT boot partition, edited in place through the `fatfs` crate over its byte range:
//! no mounting, on an image file or a block device. Only files in the root directory are
//! written (fatfs 0.3.6 writes bad `.`/`..` entries when it creates directories).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::Error;

const SECTOR: u64 = 512;

/// MBR partition types of FAT filesystems (and the EFI system partition).
const FAT_TYPES: [u8; 7] = [0x01, 0x04, 0x06, 0x0b, 0x0c, 0x0e, 0xef];

/// GPT type GUIDs, as stored (mixed-endian): Microsoft basic data, EFI system partition.
const GPT_FAT_TYPES: [[u8; 16]; 2] = [
    [
        0xa2, 0xa0, 0xd0, 0xeb, 0xe5, 0xb9, 0x33, 0x44, 0x87, 0xc0, 0x68, 0xb6, 0xb7, 0x26, 0x99,
        0xc7,
    ],
    [
        0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9,
        0x3b,
    ],
];

/// Where the boot partition is: byte offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub offset: u64,
    pub len: u64,
}

fn read_at(file: &mut (impl Read + Seek), offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Whether a partition's first sector is a FAT boot sector.
fn looks_fat(disk: &mut (impl Read + Seek), offset: u64) -> bool {
    read_at(disk, offset, 512).is_ok_and(|s| {
        s[510..512] == [0x55, 0xAA] && (s[54..57] == *b"FAT" || s[82..87] == *b"FAT32")
    })
}

/// Finds the first FAT partition of an MBR or GPT disk.
pub fn find(disk: &mut (impl Read + Seek), path: &Path) -> Result<Span, Error> {
    let none = |detail: &str| Error::NoBootPartition {
        path: path.to_owned(),
        detail: detail.to_owned(),
    };
    let table = partitions(disk).map_err(|why| none(&why))?;
    let gpt = table.gpt;
    table
        .spans
        .into_iter()
        .find(|&(kind, span)| kind.is_fat() && looks_fat(disk, span.offset))
        .map(|(_, span)| span)
        .ok_or_else(|| {
            none(if gpt {
                "its GPT has no FAT partition"
            } else {
                "it has no FAT boot partition, so there is nowhere to put the settings"
            })
        })
}

/// A partition's type, from an MBR or a GPT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Mbr(u8),
    Gpt([u8; 16]),
}

impl Kind {
    fn is_fat(self) -> bool {
        match self {
            Kind::Mbr(t) => FAT_TYPES.contains(&t),
            Kind::Gpt(g) => GPT_FAT_TYPES.contains(&g),
        }
    }
}

/// The partitions of a disk that lie inside it, in table order.
pub struct Table {
    pub gpt: bool,
    pub spans: Vec<(Kind, Span)>,
}

/// Reads the MBR (primary partitions) or GPT of a disk; the error says why there is none.
pub fn partitions(disk: &mut (impl Read + Seek)) -> Result<Table, String> {
    let mbr =
        read_at(disk, 0, 512).map_err(|e| format!("cannot read its partition table ({e})"))?;
    if mbr[510..512] != [0x55, 0xAA] {
        return Err("it has no partition table (no MBR signature): is it an OS image?".into());
    }
    let disk_len = disk.seek(SeekFrom::End(0)).unwrap_or(u64::MAX);
    let entries: Vec<(u8, u64, u64)> = (0..4)
        .map(|i| 446 + i * 16)
        .map(|e| {
            (
                mbr[e + 4],
                le32(&mbr, e + 8) * SECTOR,
                le32(&mbr, e + 12) * SECTOR,
            )
        })
        .collect();
    if entries.iter().any(|(kind, _, _)| *kind == 0xee) {
        return Ok(Table {
            gpt: true,
            spans: gpt_spans(disk, disk_len).unwrap_or_default(),
        });
    }
    let spans = entries
        .into_iter()
        .filter(|&(kind, offset, len)| {
            kind != 0 && len > 0 && offset.saturating_add(len) <= disk_len
        })
        .map(|(kind, offset, len)| (Kind::Mbr(kind), Span { offset, len }))
        .collect();
    Ok(Table { gpt: false, spans })
}

fn gpt_spans(disk: &mut (impl Read + Seek), disk_len: u64) -> Option<Vec<(Kind, Span)>> {
    let header = read_at(disk, SECTOR, 92).ok()?;
    if &header[0..8] != b"EFI PART" {
        return None;
    }
    // Untrusted numbers: an entry is 128 bytes to 4 KiB, a table at most 256 entries.
    let table = le64(&header, 72).checked_mul(SECTOR)?;
    let count = le32(&header, 80).min(256) as usize;
    let size = le32(&header, 84) as usize;
    if !(128..=4096).contains(&size) {
        return None;
    }
    let entries = read_at(disk, table, count * size).ok()?;
    Some(
        entries
            .chunks(size)
            .filter_map(|e| {
                let kind: [u8; 16] = e[0..16].try_into().ok()?;
                if kind == [0; 16] {
                    return None;
                }
                let (first, last) = (le64(e, 32), le64(e, 40));
                let span = Span {
                    offset: first.checked_mul(SECTOR)?,
                    len: last
                        .checked_add(1)?
                        .checked_sub(first)?
                        .checked_mul(SECTOR)?,
                };
                let inside = span
                    .offset
                    .checked_add(span.len)
                    .is_some_and(|end| end <= disk_len);
                inside.then_some((Kind::Gpt(kind), span))
            })
            .collect(),
    )
}

/// A byte range of a file, as a file of its own: what fatfs edits.
pub struct Slice<F> {
    inner: F,
    span: Span,
    pos: u64,
}

impl<F: Seek> Slice<F> {
    pub fn new(inner: F, span: Span) -> Slice<F> {
        Slice {
            inner,
            span,
            pos: 0,
        }
    }

    fn room(&self, want: usize) -> usize {
        (self.span.len.saturating_sub(self.pos)).min(want as u64) as usize
    }

    fn place(&mut self) -> io::Result<()> {
        self.inner
            .seek(SeekFrom::Start(self.span.offset + self.pos))
            .map(|_| ())
    }
}

impl<F: Read + Seek> Read for Slice<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.room(buf.len());
        self.place()?;
        let got = self.inner.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl<F: Write + Seek> Write for Slice<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.room(buf.len());
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "past the end of the partition",
            ));
        }
        self.place()?;
        let put = self.inner.write(&buf[..n])?;
        self.pos += put as u64;
        Ok(put)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<F: Seek> Seek for Slice<F> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.span.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

/// Reads a file through an O_DIRECT descriptor, which wants whole aligned blocks: what
/// reading back a device's boot partition from the medium (not the page cache) needs.
pub struct DirectReader {
    file: File,
    pos: u64,
    block: Aligned,
    /// Where the buffered block starts, and how many of its bytes the medium gave.
    block_at: Option<(u64, usize)>,
}

const ALIGN: usize = 4096;

/// A 4096-aligned buffer of one block.
struct Aligned {
    storage: Vec<u8>,
    start: usize,
}

impl Aligned {
    fn new() -> Aligned {
        let storage = vec![0u8; ALIGN * 2];
        let start = storage.as_ptr().align_offset(ALIGN);
        Aligned { storage, start }
    }

    fn bytes(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + ALIGN]
    }
}

impl DirectReader {
    pub fn new(file: File) -> DirectReader {
        DirectReader {
            file,
            pos: 0,
            block: Aligned::new(),
            block_at: None,
        }
    }
}

impl Read for DirectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let base = self.pos / ALIGN as u64 * ALIGN as u64;
        let valid = match self.block_at {
            Some((at, valid)) if at == base => valid,
            _ => {
                let got = self.file.read_at(self.block.bytes(), base)?;
                self.block_at = Some((base, got));
                got
            }
        };
        let within = (self.pos - base) as usize;
        if within >= valid {
            return Ok(0); // the end of the device
        }
        let n = buf.len().min(valid - within);
        buf[..n].copy_from_slice(&self.block.bytes()[within..within + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for DirectReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let end = self.file.metadata()?.len();
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => end.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        Ok(self.pos)
    }
}

pub use cardsmith_engine::set_direct;

/// A file fatfs may read but not change: reading back must not write.
pub struct ReadOnly<R>(pub R);

impl<R: Read> Read for ReadOnly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R> Write for ReadOnly<R> {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "reading back only",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<R: Seek> Seek for ReadOnly<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.0.seek(to)
    }
}

/// Reads every named root-directory file of the FAT filesystem on `storage`.
pub fn read_files<S: Read + Write + Seek>(
    storage: S,
    names: &[&str],
) -> io::Result<Vec<Option<Vec<u8>>>> {
    let fs = fatfs::FileSystem::new(storage, fatfs::FsOptions::new())?;
    let root = fs.root_dir();
    names
        .iter()
        .map(|name| match root.open_file(name) {
            Ok(mut file) => {
                let mut data = Vec::new();
                file.read_to_end(&mut data)?;
                Ok(Some(data))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .collect()
}

/// Writes root-directory files (each truncated first if it exists), then unmounts, checking
/// the error fatfs reports there.
pub fn write_files<S: Read + Write + Seek>(
    storage: S,
    files: &[(String, Vec<u8>)],
) -> io::Result<()> {
    let fs = fatfs::FileSystem::new(storage, fatfs::FsOptions::new().update_accessed_date(false))?;
    {
        let root = fs.root_dir();
        for (name, data) in files {
            let mut file = root.create_file(name)?;
            file.truncate()?;
            file.write_all(data)?;
            file.flush()?;
        }
    }
    fs.unmount()
}

/// The volume label of the FAT filesystem on `storage` ("bootfs" on Raspberry Pi OS since
/// Bookworm, "boot" before).
pub fn label<S: Read + Write + Seek>(storage: S) -> io::Result<String> {
    let fs = fatfs::FileSystem::new(storage, fatfs::FsOptions::new())?;
    Ok(fs.volume_label().trim().to_owned())
}

/// Makes `file` (a card of `size` bytes) a fresh card: an MBR with one FAT partition from
/// 1 MiB to the end (type 0x0c, FAT32 from 64 MiB up), formatted with the label BOOTFS.
/// Returns where the partition is.
pub fn format_card(file: &File, size: u64) -> io::Result<Span> {
    use std::os::unix::fs::FileExt;
    // The engine opened devices with O_DIRECT; the MBR and fatfs write odd sizes.
    set_direct(file, false)?;
    const START: u64 = 2048;
    let sectors = (size / SECTOR)
        .checked_sub(START)
        .filter(|&s| s >= 2048)
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "too small for a FAT partition")
        })?
        .min(u64::from(u32::MAX));
    let mut mbr = [0u8; 512];
    let mut id = [0u8; 4];
    getrandom::fill(&mut id).map_err(|e| io::Error::other(e.to_string()))?;
    mbr[440..444].copy_from_slice(&id);
    let entry = &mut mbr[446..462];
    entry[..8].copy_from_slice(&[0x00, 0xfe, 0xff, 0xff, 0x0c, 0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&(START as u32).to_le_bytes());
    entry[12..16].copy_from_slice(&(sectors as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    file.write_all_at(&mbr, 0)?;
    let span = Span {
        offset: START * SECTOR,
        len: sectors * SECTOR,
    };
    let mut options = fatfs::FormatVolumeOptions::new().volume_label(*b"BOOTFS     ");
    if span.len >= 64 << 20 {
        options = options.fat_type(fatfs::FatType::Fat32);
    }
    let disk = file.try_clone()?;
    fatfs::format_volume(Slice::new(disk, span), options)?;
    file.sync_all()?;
    Ok(span)
}
