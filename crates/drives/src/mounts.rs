//! /proc/self/mountinfo and /proc/swaps: what is mounted, and what swaps, right now.

use std::path::{Component, Path, PathBuf};

use crate::drive::DevNum;

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub id: u32,
    /// The filesystem's device number; 0:N for filesystems without a block device (and btrfs).
    pub dev: DevNum,
    /// The mount point.
    pub mountpoint: PathBuf,
    pub fstype: String,
    /// What was mounted: "/dev/sda1", "/dev/mapper/vg-root", "overlay", "tmpfs", …
    pub source: String,
    /// The filesystem's own options (overlay's lowerdir= and upperdir= live there).
    pub super_options: String,
}

/// Parses mountinfo (proc(5)). Lines that do not parse are skipped: a kernel that adds a
/// field must not make every drive look unmounted, so the fields are found around the "-"
/// separator rather than by position alone.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_mount_line).collect()
}

fn parse_mount_line(line: &str) -> Option<Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields.iter().position(|f| *f == "-")?;
    if sep < 6 || fields.len() < sep + 3 {
        return None;
    }
    Some(Mount {
        id: fields[0].parse().ok()?,
        dev: DevNum::parse(fields[2])?,
        mountpoint: PathBuf::from(unescape(fields[4])),
        fstype: fields[sep + 1].to_owned(),
        source: unescape(fields[sep + 2]),
        super_options: fields.get(sep + 3).map(|s| unescape(s)).unwrap_or_default(),
    })
}

/// Undoes the kernel's octal escapes (`\\040` for a space, `\\011`, `\\012`, `\\134`).
pub fn unescape(field: &str) -> String {
    decode_escapes(field, |digits| {
        let digits = digits.get(..3)?;
        let value = digits.iter().try_fold(0u32, |n, &c| {
            (b'0'..=b'7')
                .contains(&c)
                .then(|| n * 8 + u32::from(c - b'0'))
        })?;
        Some((u8::try_from(value).ok()?, 3))
    })
}

/// Copies `text`, replacing every backslash escape that `decode` recognises. `decode` sees
/// what follows the backslash and returns the byte it stands for and how many bytes it
/// used; an escape it does not recognise is kept as it is.
pub(crate) fn decode_escapes(text: &str, decode: impl Fn(&[u8]) -> Option<(u8, usize)>) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = (bytes[i] == b'\\')
            .then(|| decode(&bytes[i + 1..]))
            .flatten();
        match escape {
            Some((byte, used)) => {
                out.push(byte);
                i += 1 + used;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses /proc/swaps: the name of each active swap device or file.
pub fn parse_swaps(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .map(unescape)
        .collect()
}

/// The mount whose mount point is the longest prefix of `path` (the one a file lives on).
pub fn mount_containing<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mountpoint))
        // Later mounts on the same point hide earlier ones.
        .max_by_key(|m| (depth(&m.mountpoint), m.id))
}

/// The number of components in a path; deeper mount points are unmounted first.
pub fn depth(path: &Path) -> usize {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

/// The directories an overlay filesystem is made of (lowerdir, upperdir, workdir).
pub fn overlay_dirs(super_options: &str) -> Vec<PathBuf> {
    super_options
        .split(',')
        .filter_map(|opt| opt.split_once('='))
        .filter(|(key, _)| matches!(*key, "lowerdir" | "upperdir" | "workdir"))
        .flat_map(|(_, value)| value.split(':'))
        .filter(|dir| dir.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

#[cfg(test)]
#[path = "../../../tests/common/mutate.rs"]
mod mutate;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_mountinfo_swaps_udev_data_and_superblocks_never_panic() {
        let seeds = [
            MOUNTINFO.as_bytes().to_vec(),
            b"Filename Type Size Used Priority\n/dev/zram0 partition 8388604 0 100\n".to_vec(),
            b"259:2".to_vec(),
            b"E:ID_FS_LABEL_ENC=my\\x20card\\x2\nE:ID_MODEL_ENC=Ultra\\x20\\xff\n".to_vec(),
            {
                // A FAT boot sector's fields where the probe looks for them.
                let mut fat = vec![0u8; 512];
                fat[0..3].copy_from_slice(&[0xEB, 0x58, 0x90]);
                fat[0x52..0x5A].copy_from_slice(b"FAT32   ");
                fat[0x47..0x52].copy_from_slice(b"BOOTFS     ");
                fat[510..].copy_from_slice(&[0x55, 0xAA]);
                fat
            },
        ];
        super::mutate::hostile("mountinfo", &seeds, 100_000, 8192, |b| {
            let text = String::from_utf8_lossy(b);
            let _ = parse_mountinfo(&text);
            let _ = parse_swaps(&text);
            let _ = DevNum::parse(&text);
            let _ = crate::snapshot::udev_decode(&text);
            let _ = crate::probe::identify(b);
        });
    }

    const MOUNTINFO: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro
25 22 259:1 / /boot/efi rw,relatime shared:2 master:3 - vfat /dev/nvme0n1p1 rw,fmask=0077
61 22 8:17 / /media/pi/my\\040card rw,nosuid,nodev shared:40 - vfat /dev/sdb1 rw
70 22 0:45 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw,lowerdir=/var/lib/docker/l/A:/var/lib/docker/l/B,upperdir=/var/lib/docker/x/diff,workdir=/var/lib/docker/x/work
garbage line
";

    #[test]
    fn mountinfo_fields_are_found_around_the_separator() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 4);
        assert_eq!(mounts[0].dev, DevNum::parse("259:2").unwrap());
        assert_eq!(mounts[0].mountpoint, Path::new("/"));
        assert_eq!(mounts[1].fstype, "vfat");
        assert_eq!(mounts[1].source, "/dev/nvme0n1p1");
        assert_eq!(mounts[2].mountpoint, Path::new("/media/pi/my card"));
    }

    #[test]
    fn a_file_lives_on_the_deepest_mount_above_it() {
        let mounts = parse_mountinfo(MOUNTINFO);
        let on = |p: &str| mount_containing(&mounts, Path::new(p)).map(|m| m.id);
        assert_eq!(on("/boot/efi/EFI/debian/grubx64.efi"), Some(25));
        assert_eq!(on("/boot/vmlinuz"), Some(22));
        assert_eq!(on("/media/pi/my card/config.txt"), Some(61));
        assert_eq!(on("/media/pi/my cardigan"), Some(22));
    }

    #[test]
    fn overlay_layers_are_listed() {
        let mounts = parse_mountinfo(MOUNTINFO);
        let dirs = overlay_dirs(&mounts[3].super_options);
        assert_eq!(dirs.len(), 4);
        assert_eq!(dirs[1], Path::new("/var/lib/docker/l/B"));
    }

    #[test]
    fn swaps_name_devices_and_files() {
        let swaps = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                     /dev/dm-1                               partition\t1003516\t\t0\t\t-2\n\
                     /swap\\040file                          file\t\t102396\t\t0\t\t-3\n";
        assert_eq!(parse_swaps(swaps), ["/dev/dm-1", "/swap file"]);
    }

    #[test]
    fn escapes_are_undone_and_lone_backslashes_kept() {
        assert_eq!(unescape("a\\040b\\134c\\0"), "a b\\c\\0");
        assert_eq!(unescape("\\777"), "\\777", "not a byte: kept as it is");
    }
}
