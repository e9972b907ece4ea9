//! Reading the system's block devices at one moment (sysfs, mountinfo, swaps, udev's
//! database) and classifying each drive.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::drive::{
    human_size, Bus, DevNum, Drive, Kind, Partition, Reason, Volume, Warning, LARGE_DRIVE,
};
use crate::mounts::{self, mount_containing, overlay_dirs, Mount};
use crate::probe::probe;
use crate::Error;

/// Mount points whose drive is part of the running system.
const SYSTEM_MOUNTS: [&str; 8] = [
    "/",
    "/boot",
    "/boot/firmware",
    "/boot/efi",
    "/efi",
    "/usr",
    "/var",
    "/home",
];

/// Filesystems whose data is not on a local drive.
const IN_MEMORY_OR_REMOTE: [&str; 12] = [
    "tmpfs",
    "ramfs",
    "rootfs",
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "9p",
    "virtiofs",
    "ceph",
    "glusterfs",
    "overlay",
];

/// How deep holder chains (LVM on LUKS on a partition, loop over a file on a loop…) are
/// followed; real systems need three or four levels.
const MAX_DEPTH: usize = 16;

/// Where the snapshot is read from: the running system, or a fixture tree laid out like one
/// (`sys/block`, `proc/self/mountinfo`, `proc/swaps`, `run/udev/data`).
#[derive(Debug, Clone)]
pub struct Sources {
    root: PathBuf,
    live: bool,
}

impl Sources {
    /// The running system. Device nodes are also looked at (stat, and reading a filesystem's
    /// first bytes when udev has not recorded its type).
    pub fn live() -> Sources {
        Sources {
            root: PathBuf::from("/"),
            live: true,
        }
    }

    /// A copy of those files under `root`; device nodes are never touched.
    pub fn fixture(root: impl Into<PathBuf>) -> Sources {
        Sources {
            root: root.into(),
            live: false,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// A block device as sysfs shows it: a disk, a partition, or a holder (dm, md).
#[derive(Debug, Clone)]
struct Node {
    dev: DevNum,
    dir: PathBuf,
    /// The disk a partition belongs to.
    parent: Option<String>,
    slaves: Vec<String>,
    holders: Vec<String>,
    backing_file: Option<PathBuf>,
    dm_name: Option<String>,
}

/// The block devices, mounts and swaps of one moment, and the drives made of them.
#[derive(Debug, Clone)]
pub struct Snapshot {
    sources: Sources,
    nodes: HashMap<String, Node>,
    by_dev: HashMap<DevNum, String>,
    mounts: Vec<Mount>,
    swaps: Vec<String>,
    drives: Vec<Drive>,
}

fn read_text(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|source| Error::Inspect {
        path: path.to_owned(),
        source,
    })
}

/// A sysfs attribute, trimmed; `None` when absent or empty.
fn attr(dir: &Path, name: &str) -> Option<String> {
    let text = fs::read_to_string(dir.join(name)).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// A sysfs size or offset, which is in 512-byte sectors whatever the device's block size.
fn sectors(dir: &Path, name: &str) -> Option<u64> {
    attr(dir, name)?.parse::<u64>().ok()?.checked_mul(512)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Properties udev recorded for a device ("E:KEY=value" lines).
fn udev_properties(sources: &Sources, dev: DevNum) -> HashMap<String, String> {
    let path = sources.path(&format!("run/udev/data/b{dev}"));
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.strip_prefix("E:")?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Decodes udev's `\x20`-style escapes (ID_FS_LABEL_ENC, ID_MODEL_ENC).
pub(crate) fn udev_decode(text: &str) -> String {
    let decoded = mounts::decode_escapes(text, |rest| {
        let hex = rest.strip_prefix(b"x")?.get(..2)?;
        let byte = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
        Some((byte, 3))
    });
    decoded.trim().to_owned()
}

fn udev_text(props: &HashMap<String, String>, key: &str) -> Option<String> {
    let encoded = props.get(&format!("{key}_ENC")).map(|v| udev_decode(v));
    encoded
        .or_else(|| props.get(key).cloned())
        .filter(|v| !v.is_empty())
}

impl Snapshot {
    /// Reads the running system.
    pub fn capture() -> Result<Snapshot, Error> {
        Snapshot::capture_from(&Sources::live())
    }

    pub fn capture_from(sources: &Sources) -> Result<Snapshot, Error> {
        let block = sources.path("sys/block");
        let names = fs::read_dir(&block).map_err(|source| Error::Inspect {
            path: block.clone(),
            source,
        })?;
        let mut nodes = HashMap::new();
        for entry in names.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(dir) = fs::canonicalize(entry.path()) else {
                continue; // gone while we looked
            };
            let Some(node) = read_node(&dir, None) else {
                continue;
            };
            for part in entries(&dir) {
                let part_dir = dir.join(&part);
                if part_dir.join("partition").is_file() {
                    if let Some(p) = read_node(&part_dir, Some(name.clone())) {
                        nodes.insert(part, p);
                    }
                }
            }
            nodes.insert(name, node);
        }
        let by_dev = nodes
            .iter()
            .map(|(n, node)| (node.dev, n.clone()))
            .collect();
        let mounts = mounts::parse_mountinfo(&read_text(&sources.path("proc/self/mountinfo"))?);
        let swaps = mounts::parse_swaps(&read_text(&sources.path("proc/swaps"))?);
        let mut snapshot = Snapshot {
            sources: sources.clone(),
            nodes,
            by_dev,
            mounts,
            swaps,
            drives: Vec::new(),
        };
        snapshot.drives = snapshot.build_drives();
        Ok(snapshot)
    }

    /// Every drive, offered or not, by name.
    pub fn drives(&self) -> &[Drive] {
        &self.drives
    }

    /// The drives a user is offered: removable, writable, not part of the running system.
    pub fn offered(&self) -> impl Iterator<Item = &Drive> {
        self.drives.iter().filter(|d| d.offered)
    }

    /// The drive that `path` (a device node such as /dev/sdb) names. A partition, a
    /// device-mapper or RAID volume, or an unattached loop device is refused with a sentence
    /// saying what to name instead.
    pub fn find(&self, path: &Path) -> Result<&Drive, Error> {
        let name = self.node_name_for_path(path)?;
        if let Some(drive) = self.drives.iter().find(|d| d.name == name) {
            return Ok(drive);
        }
        let node = &self.nodes[&name];
        Err(match &node.parent {
            Some(disk) => Error::IsPartition {
                path: path.to_owned(),
                drive: dev_path(disk),
            },
            None if node.slaves.is_empty() => Error::NotADrive {
                path: path.to_owned(),
                what: "a block device that is not a drive (an unattached loop device, or an \
                       inactive RAID or device-mapper volume)"
                    .into(),
            },
            None => Error::NotADrive {
                path: path.to_owned(),
                what: format!(
                    "a volume built on {} (device-mapper or RAID), not a drive",
                    node.slaves.join(", ")
                ),
            },
        })
    }

    pub(crate) fn node_name_for_path(&self, path: &Path) -> Result<String, Error> {
        if self.sources.live {
            let meta = fs::metadata(path).map_err(|source| Error::Inspect {
                path: path.to_owned(),
                source,
            })?;
            if !meta.file_type().is_block_device() {
                return Err(Error::NotBlockDevice {
                    path: path.to_owned(),
                });
            }
            return self
                .by_dev
                .get(&DevNum::from_raw(meta.rdev()))
                .cloned()
                .ok_or_else(|| Error::Unknown {
                    path: path.to_owned(),
                });
        }
        self.name_for_dev_path(&path.to_string_lossy())
            .ok_or_else(|| Error::Unknown {
                path: path.to_owned(),
            })
    }

    /// The names of the drives a filesystem (by its device number) is stored on, following
    /// partitions, holders and loop backing files down to the hardware.
    pub fn drives_under(&self, dev: DevNum) -> BTreeSet<String> {
        match self.by_dev.get(&dev) {
            Some(name) => self.disks_under(name, 0),
            None => BTreeSet::new(),
        }
    }

    /// The names of the drives the file at `path` is stored on.
    pub fn drives_under_file(&self, path: &Path) -> BTreeSet<String> {
        self.disks_under_path(path, 0)
    }

    fn disks_under(&self, name: &str, depth: usize) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let Some(node) = self.nodes.get(name).filter(|_| depth < MAX_DEPTH) else {
            return out;
        };
        if let Some(disk) = &node.parent {
            return self.disks_under(disk, depth + 1);
        }
        if !node.slaves.is_empty() {
            for slave in &node.slaves {
                out.extend(self.disks_under(slave, depth + 1));
            }
            return out;
        }
        out.insert(name.to_owned());
        if let Some(file) = &node.backing_file {
            // A loop device over a file, or over another block device (`losetup /dev/loop0
            // /dev/sda2`), which is then as precious as that device.
            match self.name_for_dev_path(&file.to_string_lossy()) {
                Some(device) => out.extend(self.disks_under(&device, depth + 1)),
                None => out.extend(self.disks_under_path(file, depth + 1)),
            }
        }
        out
    }

    fn disks_under_path(&self, path: &Path, depth: usize) -> BTreeSet<String> {
        match mount_containing(&self.mounts, path) {
            Some(m) => self.disks_under_mount(m, depth + 1),
            None => BTreeSet::new(),
        }
    }

    fn disks_under_mount(&self, mount: &Mount, depth: usize) -> BTreeSet<String> {
        if let Some(name) = self.block_of_mount(mount) {
            return self.disks_under(&name, depth + 1);
        }
        let mut out = BTreeSet::new();
        if mount.fstype == "overlay" && depth < MAX_DEPTH {
            // A live system's / is an overlay over directories on the stick it booted from.
            for dir in overlay_dirs(&mount.super_options) {
                if mount_containing(&self.mounts, &dir).map(|m| m.id) != Some(mount.id) {
                    out.extend(self.disks_under_path(&dir, depth + 1));
                }
            }
        }
        out
    }

    /// The block device a mount is of: by device number, else by its source's name (btrfs
    /// reports an anonymous device number).
    fn block_of_mount(&self, mount: &Mount) -> Option<String> {
        self.by_dev
            .get(&mount.dev)
            .cloned()
            .or_else(|| self.name_for_dev_path(&mount.source))
    }

    /// The sysfs name of a /dev path: /dev/sdb1, /dev/mapper/vg-root, /dev/dm-0.
    fn name_for_dev_path(&self, path: &str) -> Option<String> {
        if let Some(mapped) = path.strip_prefix("/dev/mapper/") {
            return self
                .nodes
                .iter()
                .find(|(_, n)| n.dm_name.as_deref() == Some(mapped))
                .map(|(name, _)| name.clone());
        }
        let name = path.strip_prefix("/dev/")?;
        if self.nodes.contains_key(name) {
            return Some(name.to_owned());
        }
        if !self.sources.live {
            return None;
        }
        let meta = fs::metadata(path).ok()?;
        if !meta.file_type().is_block_device() {
            return None; // a character device's number may equal a block device's
        }
        self.by_dev.get(&DevNum::from_raw(meta.rdev())).cloned()
    }

    /// For each drive, the system uses it carries: "/", "/boot/efi", "swap /dev/dm-1".
    fn system_uses(&self) -> HashMap<String, Vec<String>> {
        let mut uses: HashMap<String, Vec<String>> = HashMap::new();
        for mount in &self.mounts {
            let point = mount.mountpoint.to_string_lossy();
            if SYSTEM_MOUNTS.contains(&point.as_ref()) {
                for disk in self.disks_under_mount(mount, 0) {
                    uses.entry(disk)
                        .or_default()
                        .push(point.clone().into_owned());
                }
            }
        }
        for swap in &self.swaps {
            let disks = match self.name_for_dev_path(swap) {
                Some(name) => self.disks_under(&name, 0),
                None => self.disks_under_path(Path::new(swap), 0),
            };
            for disk in disks {
                uses.entry(disk).or_default().push(format!("swap {swap}"));
            }
        }
        for list in uses.values_mut() {
            list.dedup();
        }
        uses
    }

    /// For a loop device over a block device: the drives its writes land on.
    fn written_through(&self, node: &Node) -> BTreeSet<String> {
        node.backing_file
            .as_ref()
            .and_then(|file| self.name_for_dev_path(&file.to_string_lossy()))
            .map(|device| self.disks_under(&device, 0))
            .unwrap_or_default()
    }

    fn root_disks(&self) -> BTreeSet<String> {
        self.root_mounts()
            .flat_map(|m| self.disks_under_mount(m, 0))
            .collect()
    }

    fn root_mounts(&self) -> impl Iterator<Item = &Mount> {
        self.mounts
            .iter()
            .filter(|m| m.mountpoint == Path::new("/"))
    }

    /// When / is on storage that cannot be traced to a drive (ZFS, bcachefs, an overlay
    /// over directories this namespace cannot see), every fixed disk might hold it: the
    /// system use to put on each of them. `None` when / was traced, or lives in memory or on
    /// the network.
    fn untraced_root(&self, traced: &BTreeSet<String>) -> Option<String> {
        if !traced.is_empty() {
            return None;
        }
        let root = self.root_mounts().last()?;
        let fstype = root.fstype.as_str();
        let elsewhere = IN_MEMORY_OR_REMOTE.contains(&fstype) || fstype.starts_with("fuse.");
        (!elsewhere).then(|| {
            format!(
                "/ perhaps ({fstype} {}, which cannot be traced to a drive)",
                root.source
            )
        })
    }

    fn build_drives(&self) -> Vec<Drive> {
        let uses = self.system_uses();
        let root = self.root_disks();
        let untraced = self.untraced_root(&root);
        let mut drives: Vec<Drive> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.parent.is_none() && n.slaves.is_empty())
            .filter_map(|(name, node)| {
                let mut system = uses.get(name).cloned().unwrap_or_default();
                let mut holds_root = root.contains(name);
                for disk in self.written_through(node) {
                    holds_root |= root.contains(&disk);
                    for what in uses.get(&disk).into_iter().flatten() {
                        system.push(format!("{what} on /dev/{disk}, which it writes through to"));
                    }
                }
                let mut drive = self.build_drive(name, node, system, holds_root)?;
                if let Some(root_use) = untraced.as_ref().filter(|_| drive.is_fixed_disk()) {
                    drive.add_system_use(root_use.clone());
                }
                Some(drive)
            })
            .collect();
        drives.sort_by(|a, b| a.name.cmp(&b.name));
        drives
    }

    fn build_drive(
        &self,
        name: &str,
        node: &Node,
        system: Vec<String>,
        holds_root: bool,
    ) -> Option<Drive> {
        let size = sectors(&node.dir, "size")?;
        let kind = kind_of(name, &node.dir);
        if kind == Kind::Loop && node.backing_file.is_none() {
            return None; // an unused loop device is not a drive
        }
        if name.starts_with("dm-") || name.starts_with("md") {
            return None; // holders without slaves: nothing a card could be
        }
        let props = udev_properties(&self.sources, node.dev);
        let device = node.dir.join("device");
        let bus = bus_of(&node.dir, &self.sources.root);
        let rm_flag = attr(&node.dir, "removable").as_deref() == Some("1");
        let hotplug = hotpluggable(&node.dir, &self.sources.root);
        // An SD card is removable whatever rm says; an eMMC (type "MMC") is soldered in.
        let emmc = bus == Bus::Mmc && attr(&device, "type").as_deref() == Some("MMC");
        let removable = rm_flag || hotplug || bus == Bus::Usb || (bus == Bus::Mmc && !emmc);
        let read_only = attr(&node.dir, "ro").as_deref() == Some("1");
        let partitions = self.partitions_of(name);
        let whole = self.volume_of(name, node, partitions.is_empty() && size > 0, kind);
        let mut not_offered = Vec::new();
        match kind {
            Kind::MmcHardwarePartition => not_offered.push(Reason::MmcHardwarePartition),
            Kind::Zram => not_offered.push(Reason::Zram),
            Kind::Ram => not_offered.push(Reason::Ram),
            Kind::Optical => not_offered.push(Reason::Optical),
            Kind::Disk | Kind::Loop => {}
        }
        if holds_root {
            not_offered.push(Reason::Root { uses: system });
        } else if !system.is_empty() {
            not_offered.push(Reason::System { uses: system });
        }
        if read_only {
            not_offered.push(Reason::ReadOnly);
        }
        if size == 0 && matches!(kind, Kind::Disk | Kind::Optical) {
            not_offered.push(Reason::NoMedium);
        }
        if kind == Kind::Loop {
            not_offered.push(Reason::Virtual);
        } else if kind == Kind::Disk && !removable {
            not_offered.push(Reason::Fixed);
        }
        let warnings = if size > LARGE_DRIVE {
            vec![Warning::Large { size }]
        } else {
            Vec::new()
        };
        Some(Drive {
            name: name.to_owned(),
            path: dev_path(name),
            dev: node.dev,
            size,
            size_human: human_size(size),
            // virtio and some PCI devices put a numeric vendor id there, not a name.
            vendor: attr(&device, "vendor")
                .filter(|v| !v.starts_with("0x"))
                .or_else(|| udev_text(&props, "ID_VENDOR")),
            model: attr(&device, "model")
                .or_else(|| attr(&device, "name"))
                .or_else(|| udev_text(&props, "ID_MODEL")),
            serial: props
                .get("ID_SERIAL_SHORT")
                .cloned()
                .or_else(|| attr(&device, "serial")),
            bus,
            kind,
            removable,
            hotplug,
            read_only,
            backing_file: node.backing_file.clone(),
            filesystem: whole.filter(|v| !v.is_empty()),
            partitions,
            offered: not_offered.is_empty(),
            not_offered,
            warnings,
        })
    }

    fn partitions_of(&self, disk: &str) -> Vec<Partition> {
        let mut parts: Vec<Partition> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.parent.as_deref() == Some(disk))
            .filter_map(|(name, node)| {
                Some(Partition {
                    name: name.clone(),
                    path: dev_path(name),
                    dev: node.dev,
                    number: attr(&node.dir, "partition")?.parse().ok()?,
                    start: sectors(&node.dir, "start")?,
                    size: sectors(&node.dir, "size")?,
                    volume: self
                        .volume_of(name, node, true, Kind::Disk)
                        .unwrap_or_default(),
                })
            })
            .collect();
        parts.sort_by_key(|p| p.number);
        parts
    }

    /// What is on a partition (or a whole drive): its filesystem, label, mount points and
    /// holders. `may_probe`: read the first bytes when udev has not said (live systems only,
    /// disks and loop devices only, never a drive whose partitions are listed).
    fn volume_of(&self, name: &str, node: &Node, may_probe: bool, kind: Kind) -> Option<Volume> {
        let props = udev_properties(&self.sources, node.dev);
        let mut mountpoints: Vec<PathBuf> = Vec::new();
        let mut mounted_fs = None;
        for m in &self.mounts {
            if self.block_of_mount(m).as_deref() == Some(name) {
                mountpoints.push(m.mountpoint.clone());
                mounted_fs.get_or_insert_with(|| m.fstype.clone());
            }
        }
        let mut fs = props.get("ID_FS_TYPE").cloned().or(mounted_fs);
        let mut label = udev_text(&props, "ID_FS_LABEL");
        let probe_ok = may_probe && self.sources.live && matches!(kind, Kind::Disk | Kind::Loop);
        if probe_ok && (fs.is_none() || label.is_none()) {
            if let Some((probed_fs, probed_label)) = probe(&dev_path(name)) {
                fs.get_or_insert(probed_fs);
                label = label.or(probed_label);
            }
        }
        let used_by = node
            .holders
            .iter()
            .map(
                |h| match self.nodes.get(h).and_then(|n| n.dm_name.as_ref()) {
                    Some(dm) => format!("{h} ({dm})"),
                    None => h.clone(),
                },
            )
            .collect();
        Some(Volume {
            fs: fs.filter(|f| !f.is_empty()),
            label,
            mountpoints,
            used_by,
        })
    }

    /// The device number of the block device `name`.
    pub(crate) fn dev_of(&self, name: &str) -> Option<DevNum> {
        self.nodes.get(name).map(|n| n.dev)
    }

    /// What uses the block device `name` or its partitions, as of this snapshot: each mount
    /// (as "DEVICE at MOUNTPOINT"), active swap, and device-mapper or RAID holder.
    pub(crate) fn users_of(&self, name: &str) -> Vec<String> {
        let names: BTreeSet<&str> = std::iter::once(name)
            .chain(
                self.nodes
                    .iter()
                    .filter(|(_, n)| n.parent.as_deref() == Some(name))
                    .map(|(n, _)| n.as_str()),
            )
            .collect();
        let mut users: Vec<String> = self
            .mounts
            .iter()
            .filter_map(|m| {
                let block = self.block_of_mount(m)?;
                names.contains(block.as_str()).then(|| {
                    format!(
                        "{} mounted at {}",
                        dev_path(&block).display(),
                        m.mountpoint.display()
                    )
                })
            })
            .collect();
        for swap in &self.swaps {
            if let Some(block) = self.name_for_dev_path(swap) {
                if names.contains(block.as_str()) {
                    users.push(format!("{swap} (active swap)"));
                }
            }
        }
        for n in &names {
            for holder in &self.nodes[*n].holders {
                users.push(format!("{} (used by {holder})", dev_path(n).display()));
            }
        }
        users
    }

    /// The mounts of `drive` and its partitions, as of this snapshot, each with the device
    /// node it is a mount of.
    pub fn mounts_on(&self, drive: &Drive) -> Vec<(&Mount, PathBuf)> {
        let names: BTreeSet<&str> = std::iter::once(drive.name.as_str())
            .chain(drive.partitions.iter().map(|p| p.name.as_str()))
            .collect();
        self.mounts
            .iter()
            .filter_map(|m| {
                let name = self.block_of_mount(m)?;
                names.contains(name.as_str()).then(|| (m, dev_path(&name)))
            })
            .collect()
    }
}

fn read_node(dir: &Path, parent: Option<String>) -> Option<Node> {
    let dev = DevNum::parse(&attr(dir, "dev")?)?;
    let backing_file = attr(dir, "loop/backing_file").map(PathBuf::from);
    Some(Node {
        dev,
        dir: dir.to_owned(),
        parent,
        slaves: entries(&dir.join("slaves")),
        holders: entries(&dir.join("holders")),
        backing_file,
        dm_name: attr(dir, "dm/name"),
    })
}

fn dev_path(name: &str) -> PathBuf {
    Path::new("/dev").join(name)
}

fn kind_of(name: &str, dir: &Path) -> Kind {
    let digits_after = |prefix: &str| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
    };
    if name.starts_with("loop") {
        Kind::Loop
    } else if name.starts_with("zram") {
        Kind::Zram
    } else if digits_after("ram") {
        Kind::Ram
    } else if digits_after("sr") || attr(dir, "device/type").as_deref() == Some("5") {
        Kind::Optical
    } else if name.starts_with("mmcblk")
        && (name.contains("boot") || name.contains("gp") || name.ends_with("rpmb"))
    {
        Kind::MmcHardwarePartition
    } else {
        Kind::Disk
    }
}

/// The bus, from the device's place in the sysfs tree.
fn bus_of(dir: &Path, root: &Path) -> Bus {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let any = |f: &dyn Fn(&str) -> bool| parts.iter().any(|p| f(p));
    if parts.get(2).map(String::as_str) == Some("virtual") {
        Bus::Virtual
    } else if any(&|p| p.starts_with("usb")) {
        Bus::Usb
    } else if any(&|p| p.starts_with("mmc")) {
        Bus::Mmc
    } else if any(&|p| p.starts_with("nvme")) {
        Bus::Nvme
    } else if any(&|p| p.starts_with("ata")) {
        Bus::Sata
    } else if any(&|p| p.starts_with("virtio")) {
        Bus::Virtio
    } else if any(&|p| p.starts_with("host") || p.starts_with("target")) {
        Bus::Scsi
    } else {
        Bus::Unknown
    }
}

/// Whether a parent device says it can be unplugged (util-linux's HOTPLUG column): the
/// nearest `removable` attribute above the block device that says "removable" or "fixed".
fn hotpluggable(dir: &Path, root: &Path) -> bool {
    let devices = root.join("sys/devices");
    let mut at = dir.parent();
    while let Some(d) = at.filter(|d| d.starts_with(&devices) && *d != devices) {
        match attr(d, "removable").as_deref() {
            Some("removable") => return true,
            Some("fixed") => return false,
            _ => at = d.parent(),
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udev_escapes_are_decoded() {
        assert_eq!(udev_decode("my\\x20card\\x21"), "my card!");
        assert_eq!(udev_decode("plain\\x2"), "plain\\x2");
    }

    #[test]
    fn kinds_from_names() {
        let nowhere = Path::new("/nonexistent");
        assert_eq!(kind_of("mmcblk0boot1", nowhere), Kind::MmcHardwarePartition);
        assert_eq!(kind_of("mmcblk0rpmb", nowhere), Kind::MmcHardwarePartition);
        assert_eq!(kind_of("mmcblk0", nowhere), Kind::Disk);
        assert_eq!(kind_of("ram0", nowhere), Kind::Ram);
        assert_eq!(kind_of("sr0", nowhere), Kind::Optical);
        assert_eq!(kind_of("sra", nowhere), Kind::Disk);
    }
}
