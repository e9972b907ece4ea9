//! What is known about a drive, and the verdict on it: offered, not offered (and why), or
//! not to be written at all.

use std::fmt;
use std::path::PathBuf;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// Drives larger than this get a warning that names their size: SD cards and USB sticks are
/// rarely bigger, backup disks usually are.
pub const LARGE_DRIVE: u64 = 128_000_000_000;

/// A block device number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevNum {
    pub major: u32,
    pub minor: u32,
}

impl DevNum {
    /// Parses sysfs's and mountinfo's "8:16".
    pub fn parse(text: &str) -> Option<DevNum> {
        let (major, minor) = text.trim().split_once(':')?;
        Some(DevNum {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }

    pub fn from_raw(rdev: u64) -> DevNum {
        DevNum {
            major: libc::major(rdev),
            minor: libc::minor(rdev),
        }
    }
}

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl Serialize for DevNum {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How the drive is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    Usb,
    Mmc,
    Sata,
    Nvme,
    Scsi,
    Virtio,
    /// Not hardware: loop, zram, ram disks.
    Virtual,
    Unknown,
}

impl fmt::Display for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Bus::Usb => "USB",
            Bus::Mmc => "SD/MMC",
            Bus::Sata => "SATA",
            Bus::Nvme => "NVMe",
            Bus::Scsi => "SCSI",
            Bus::Virtio => "virtio",
            Bus::Virtual => "virtual",
            Bus::Unknown => "unknown bus",
        };
        f.write_str(name)
    }
}

/// What sort of block device it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Disk,
    Loop,
    Zram,
    Ram,
    Optical,
    /// An eMMC's boot0/boot1 or RPMB area: firmware lives there, never an OS image.
    MmcHardwarePartition,
}

/// A filesystem (on a partition, or on the whole drive), as far as it is known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Volume {
    /// "vfat", "ext4", "swap", …; `None` when unknown or empty.
    pub fs: Option<String>,
    pub label: Option<String>,
    /// Where it is mounted now, in this process's mount namespace.
    pub mountpoints: Vec<PathBuf>,
    /// Device-mapper or RAID volumes built on top of it (e.g. "dm-0 (cryptroot)").
    pub used_by: Vec<String>,
}

impl Volume {
    pub fn is_empty(&self) -> bool {
        self.fs.is_none() && self.mountpoints.is_empty() && self.used_by.is_empty()
    }
}

/// One partition of a drive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    pub name: String,
    pub path: PathBuf,
    pub dev: DevNum,
    pub number: u32,
    /// Offset from the start of the drive, in bytes.
    pub start: u64,
    pub size: u64,
    #[serde(flatten)]
    pub volume: Volume,
}

/// Why a drive is not offered for writing. Some reasons also forbid writing it when it is
/// named explicitly; see [`Reason::forbids_writing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Holds the running system's root filesystem: never written.
    Root {
        uses: Vec<String>,
    },
    /// Holds another part of the running system (/boot, /home, swap, …).
    System {
        uses: Vec<String>,
    },
    ReadOnly,
    /// A card reader or drive with no medium in it.
    NoMedium,
    /// An internal disk that is neither removable nor hot-pluggable.
    Fixed,
    /// A loop device: an image file, not a drive.
    Virtual,
    MmcHardwarePartition,
    Zram,
    Ram,
    Optical,
}

impl Reason {
    /// The stable name scripts match on.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Root { .. } => "root",
            Reason::System { .. } => "system",
            Reason::ReadOnly => "read-only",
            Reason::NoMedium => "no-medium",
            Reason::Fixed => "fixed",
            Reason::Virtual => "virtual",
            Reason::MmcHardwarePartition => "mmc-hardware-partition",
            Reason::Zram => "zram",
            Reason::Ram => "ram",
            Reason::Optical => "optical",
        }
    }

    /// Whether the drive may not be written even when the user names it.
    pub fn forbids_writing(&self) -> bool {
        !matches!(
            self,
            Reason::System { .. } | Reason::Fixed | Reason::Virtual
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Root { uses } => write!(
                f,
                "system drive: it holds the running system ({})",
                uses.join(", ")
            ),
            Reason::System { uses } => write!(f, "system drive: it holds {}", uses.join(", ")),
            Reason::ReadOnly => {
                f.write_str("read-only (a card's lock switch, or a write-protected device)")
            }
            Reason::NoMedium => f.write_str("no medium: the reader is empty"),
            Reason::Fixed => f.write_str("fixed disk: neither removable nor hot-pluggable"),
            Reason::Virtual => f.write_str("virtual: a loop device over a file"),
            Reason::MmcHardwarePartition => {
                f.write_str("eMMC boot or RPMB area: firmware lives there, never an OS image")
            }
            Reason::Zram => f.write_str("zram: compressed memory, not storage"),
            Reason::Ram => f.write_str("RAM disk: memory, not storage"),
            Reason::Optical => f.write_str("optical drive: cardsmith does not burn discs"),
        }
    }
}

/// `{"code": "system", "text": "system drive: it holds /home", "uses": ["/home"]}`
impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let uses = match self {
            Reason::Root { uses } | Reason::System { uses } => Some(uses),
            _ => None,
        };
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("code", self.code())?;
        map.serialize_entry("text", &self.to_string())?;
        if let Some(uses) = uses {
            map.serialize_entry("uses", uses)?;
        }
        map.end()
    }
}

/// Something to tell the user before they confirm, that does not stop the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// Larger than [`LARGE_DRIVE`].
    Large { size: u64 },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Large { size } => write!(
                f,
                "this drive is {}: larger than SD cards and USB sticks usually are; make sure it \
                 is not a backup or data disk",
                human_size(*size)
            ),
        }
    }
}

/// A whole drive (never a partition), with what cardsmith concluded about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drive {
    pub name: String,
    pub path: PathBuf,
    pub dev: DevNum,
    /// Capacity in bytes; 0 for an empty reader.
    pub size: u64,
    pub size_human: String,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub bus: Bus,
    pub kind: Kind,
    /// The rm flag, or hot-pluggable, or on a USB or MMC bus (USB SSDs often say rm=0).
    pub removable: bool,
    pub hotplug: bool,
    pub read_only: bool,
    /// For a loop device, the file behind it.
    pub backing_file: Option<PathBuf>,
    /// A filesystem on the whole drive, without a partition table.
    pub filesystem: Option<Volume>,
    pub partitions: Vec<Partition>,
    /// Listed by default and suggested for writing.
    pub offered: bool,
    /// Why it is not offered; empty when it is.
    pub not_offered: Vec<Reason>,
    pub warnings: Vec<Warning>,
}

impl Drive {
    /// Whether it holds the running system's root filesystem.
    pub fn holds_root(&self) -> bool {
        self.not_offered
            .iter()
            .any(|r| matches!(r, Reason::Root { .. }))
    }

    /// The system uses (mount points, swaps) that make it a system drive other than the root
    /// drive; `None` when it is not one.
    pub fn system_uses(&self) -> Option<&[String]> {
        self.not_offered.iter().find_map(|r| match r {
            Reason::System { uses } => Some(uses.as_slice()),
            _ => None,
        })
    }

    /// A hardware disk that is neither removable nor hot-pluggable.
    pub fn is_fixed_disk(&self) -> bool {
        self.not_offered.contains(&Reason::Fixed)
    }

    /// Whether it is changed only after its name is typed (a system drive or a fixed
    /// disk: "yes" out of habit, or `--yes` in a script, is not consent for it).
    pub fn needs_name_typed(&self) -> bool {
        self.system_uses().is_some() || self.is_fixed_disk()
    }

    /// Marks the drive as a system drive because of `what`.
    pub(crate) fn add_system_use(&mut self, what: String) {
        for reason in &mut self.not_offered {
            if let Reason::Root { uses } | Reason::System { uses } = reason {
                uses.push(what);
                return;
            }
        }
        self.not_offered
            .insert(0, Reason::System { uses: vec![what] });
        self.offered = false;
    }

    /// Every mount point on the drive, its partitions first.
    pub fn mountpoints(&self) -> impl Iterator<Item = &PathBuf> {
        self.partitions
            .iter()
            .map(|p| &p.volume)
            .chain(self.filesystem.as_ref())
            .flat_map(|v| v.mountpoints.iter())
    }

    /// "SanDisk Ultra" or "Generic STORAGE DEVICE", or the backing file of a loop device.
    pub fn description(&self) -> String {
        let words: Vec<&str> = [self.vendor.as_deref(), self.model.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        if !words.is_empty() {
            return words.join(" ");
        }
        match &self.backing_file {
            Some(file) => format!("loop device over {}", file.display()),
            None => format!("{} {}", self.bus, kind_noun(self.kind)),
        }
    }
}

/// `{"code": "large", "text": "this drive is 500 GB: …", "size": 500107862016}`
impl Serialize for Warning {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Warning::Large { size } = self;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("code", "large")?;
        map.serialize_entry("text", &self.to_string())?;
        map.serialize_entry("size", size)?;
        map.end()
    }
}

fn kind_noun(kind: Kind) -> &'static str {
    match kind {
        Kind::Disk => "disk",
        Kind::Loop => "loop device",
        Kind::Zram => "zram device",
        Kind::Ram => "RAM disk",
        Kind::Optical => "optical drive",
        Kind::MmcHardwarePartition => "eMMC hardware partition",
    }
}

/// Sizes as drives are sold: decimal units, three significant digits ("31.9 GB").
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 999.95 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let decimals = if value < 10.0 {
        2
    } else if value < 100.0 {
        1
    } else {
        0
    };
    format!("{value:.decimals$} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_the_label_on_the_card() {
        assert_eq!(human_size(512), "512 bytes");
        assert_eq!(human_size(31_914_983_424), "31.9 GB");
        assert_eq!(human_size(500_107_862_016), "500 GB");
        assert_eq!(human_size(2_000_398_934_016), "2.00 TB");
        assert_eq!(human_size(67_108_864), "67.1 MB");
    }

    #[test]
    fn dev_numbers_parse_and_print_as_in_sysfs() {
        let dev = DevNum::parse("259:3\n").unwrap();
        assert_eq!((dev.major, dev.minor), (259, 3));
        assert_eq!(dev.to_string(), "259:3");
        assert!(DevNum::parse("8").is_none());
    }
}
