//! Recognising a filesystem from its first bytes, for machines without udev's database
//! (containers, minimal installs). Only reads; only what `drives` shows: type and label.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Enough to reach the btrfs superblock at 64 KiB.
const PROBE_LEN: usize = 64 * 1024 + 4096;

/// The filesystem type and label on the device at `path`, if it can be read and is known.
pub fn probe(path: &Path) -> Option<(String, Option<String>)> {
    let mut head = Vec::with_capacity(PROBE_LEN);
    File::open(path)
        .ok()?
        .take(PROBE_LEN as u64)
        .read_to_end(&mut head)
        .ok()?;
    identify(&head)
}

/// Recognises ext2/3/4, vfat, exFAT, NTFS, swap, ISO 9660, XFS and btrfs.
pub fn identify(head: &[u8]) -> Option<(String, Option<String>)> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    let text = |offset: usize, len: usize| label(head.get(offset..offset + len)?);
    if at(1080, &[0x53, 0xEF]) {
        let compat = le32(head, 1024 + 0x5C)?;
        let incompat = le32(head, 1024 + 0x60)?;
        let fs = if incompat & 0x2C0 != 0 {
            "ext4" // extents, 64bit or flex_bg
        } else if compat & 0x4 != 0 {
            "ext3" // has_journal
        } else {
            "ext2"
        };
        return Some((fs.into(), text(1024 + 0x78, 16)));
    }
    if at(3, b"EXFAT   ") {
        return Some(("exfat".into(), None));
    }
    if at(3, b"NTFS    ") {
        return Some(("ntfs".into(), None));
    }
    if at(510, &[0x55, 0xAA]) && at(82, b"FAT32   ") {
        return Some(("vfat".into(), text(71, 11).filter(|l| l != "NO NAME")));
    }
    if at(510, &[0x55, 0xAA]) && (at(54, b"FAT12   ") || at(54, b"FAT16   ")) {
        return Some(("vfat".into(), text(43, 11).filter(|l| l != "NO NAME")));
    }
    if at(0, b"XFSB") {
        return Some(("xfs".into(), text(108, 12)));
    }
    if at(65536 + 64, b"_BHRfS_M") {
        return Some(("btrfs".into(), text(65536 + 299, 256)));
    }
    if at(32769, b"CD001") {
        return Some(("iso9660".into(), text(32808, 32)));
    }
    for page in [4096, 8192, 16384, 65536] {
        if at(page - 10, b"SWAPSPACE2") {
            return Some(("swap".into(), text(1024 + 28, 16)));
        }
    }
    None
}

fn le32(head: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        head.get(offset..offset + 4)?.try_into().ok()?,
    ))
}

/// A fixed-width label field: NUL- or space-padded, empty means none.
fn label(field: &[u8]) -> Option<String> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let text = String::from_utf8_lossy(&field[..end]).trim_end().to_owned();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext4_and_its_label() {
        let mut head = vec![0u8; PROBE_LEN];
        head[1080..1082].copy_from_slice(&[0x53, 0xEF]);
        head[1024 + 0x60] = 0x40; // extents
        head[1024 + 0x78..1024 + 0x78 + 6].copy_from_slice(b"rootfs");
        assert_eq!(
            identify(&head),
            Some(("ext4".into(), Some("rootfs".into())))
        );
    }

    #[test]
    fn fat32_without_a_label_has_none() {
        let mut head = vec![0u8; 4096];
        head[510..512].copy_from_slice(&[0x55, 0xAA]);
        head[82..90].copy_from_slice(b"FAT32   ");
        head[71..82].copy_from_slice(b"NO NAME    ");
        assert_eq!(identify(&head), Some(("vfat".into(), None)));
    }

    #[test]
    fn zeros_are_nothing() {
        assert_eq!(identify(&vec![0u8; PROBE_LEN]), None);
    }
}
