//! Classification on fixture trees: copies of real machines' sysfs, mountinfo, swaps and udev
//! data, written out by hand in `fixtures/*.tree`. No device node is touched.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cardsmith_drives::{
    Bus, DevNum, Drive, Error, Event, Kind, Reason, Snapshot, Sources, Warning, Watcher,
};

/// Lays a `.tree` fixture out under a temporary directory (format: see laptop.tree).
fn lay_out(name: &str) -> tempfile::TempDir {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.tree"));
    let text = fs::read_to_string(&spec).expect("fixture exists");
    let root = tempfile::tempdir().unwrap();
    let mut dir = root.path().to_owned();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            dir = root.path().join(section);
            fs::create_dir_all(&dir).unwrap();
        } else if let Some((name, target)) = line.split_once(" -> ") {
            let link = dir.join(name);
            fs::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, link).unwrap();
        } else if let Some((name, end)) = line.split_once(" <<") {
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != end).collect();
            write(&dir.join(name), &(body.join("\n") + "\n"));
        } else if let Some((name, value)) = line.split_once(" = ") {
            write(&dir.join(name), &format!("{value}\n"));
        } else {
            panic!("{}: cannot read line {line:?}", spec.display());
        }
    }
    root
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn snapshot(root: &tempfile::TempDir) -> Snapshot {
    Snapshot::capture_from(&Sources::fixture(root.path())).expect("fixture reads")
}

fn drive<'a>(s: &'a Snapshot, name: &str) -> &'a Drive {
    s.drives()
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("{name} is listed"))
}

fn names<'a>(drives: impl Iterator<Item = &'a Drive>) -> Vec<&'a str> {
    drives.map(|d| d.name.as_str()).collect()
}

fn codes(d: &Drive) -> Vec<&'static str> {
    d.not_offered.iter().map(Reason::code).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn laptop_offers_the_card_reader_and_the_sd_slot_only() {
    let root = lay_out("laptop");
    let s = snapshot(&root);
    assert_eq!(names(s.offered()), ["mmcblk1", "sda"]);
    assert_eq!(
        names(s.drives().iter()),
        [
            "loop0",
            "loop2",
            "mmcblk0",
            "mmcblk0boot0",
            "mmcblk0boot1",
            "mmcblk0rpmb",
            "mmcblk1",
            "nvme0n1",
            "sda",
            "sdb",
            "zram0"
        ],
        "an unused loop device is no drive"
    );
}

#[test]
fn usb_card_reader_with_a_mounted_card() {
    let root = lay_out("laptop");
    let s = snapshot(&root);
    let sda = drive(&s, "sda");
    assert_eq!(sda.path, Path::new("/dev/sda"));
    assert_eq!(sda.dev, DevNum { major: 8, minor: 0 });
    assert_eq!(sda.size, 62_333_952 * 512);
    assert_eq!(sda.size_human, "31.9 GB");
    assert_eq!(sda.bus, Bus::Usb);
    assert_eq!(sda.kind, Kind::Disk);
    assert!(sda.removable && sda.hotplug && !sda.read_only);
    assert_eq!(sda.vendor.as_deref(), Some("Generic-"));
    assert_eq!(sda.model.as_deref(), Some("SD/MMC"));
    assert_eq!(sda.serial.as_deref(), Some("000000001206"));
    assert!(sda.offered && sda.not_offered.is_empty() && sda.warnings.is_empty());
    let [boot, rootfs] = &sda.partitions[..] else {
        panic!("two partitions: {:?}", sda.partitions)
    };
    assert_eq!(
        (boot.number, boot.start, boot.size),
        (1, 8192 * 512, 1_048_576 * 512)
    );
    assert_eq!(boot.volume.fs.as_deref(), Some("vfat"));
    assert_eq!(boot.volume.label.as_deref(), Some("bootfs"));
    assert_eq!(
        boot.volume.mountpoints,
        [PathBuf::from("/media/alice/bootfs")]
    );
    assert_eq!(rootfs.volume.label.as_deref(), Some("rootfs"));
    assert_eq!(
        rootfs.volume.mountpoints,
        [PathBuf::from("/media/alice/rootfs")]
    );
    assert!(sda.check_writable(false).is_ok());
}

#[test]
fn empty_reader_slot_has_no_medium() {
    let root = lay_out("laptop");
    let sdb = drive(&snapshot(&root), "sdb").clone();
    assert_eq!(codes(&sdb), ["no-medium"]);
    assert!(sdb.removable);
    assert!(matches!(
        sdb.check_writable(true),
        Err(Error::Refused {
            reason: Reason::NoMedium,
            ..
        })
    ));
}

#[test]
fn nvme_system_disk_is_the_root_drive_and_never_writable() {
    let root = lay_out("laptop");
    let s = snapshot(&root);
    let nvme = drive(&s, "nvme0n1");
    assert_eq!(nvme.bus, Bus::Nvme);
    assert_eq!(nvme.model.as_deref(), Some("Samsung SSD 980 PRO 1TB"));
    assert_eq!(nvme.serial.as_deref(), Some("S5GXNF0R123456A"));
    assert!(!nvme.removable && !nvme.hotplug);
    assert!(nvme.holds_root());
    assert_eq!(
        nvme.not_offered,
        [
            Reason::Root {
                uses: strings(&["/", "/boot/efi", "swap /dev/nvme0n1p3"])
            },
            Reason::Fixed
        ]
    );
    assert_eq!(
        nvme.warnings,
        [Warning::Large {
            size: 1_953_525_168 * 512
        }]
    );
    let refused = nvme.check_writable(true).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("system drive: it holds the running system (/, /boot/efi"),
        "{refused}"
    );
}

#[test]
fn built_in_sd_slot_with_a_card_is_offered() {
    let root = lay_out("laptop");
    let s = snapshot(&root);
    let sd = drive(&s, "mmcblk1");
    assert_eq!(sd.bus, Bus::Mmc);
    assert!(sd.removable, "an SD card is removable although rm=0");
    assert!(!sd.hotplug);
    assert_eq!(sd.model.as_deref(), Some("SC32G"));
    assert_eq!(sd.serial.as_deref(), Some("0x1c2d3e4f"));
    assert!(sd.offered && sd.check_writable(false).is_ok());
}

#[test]
fn soldered_emmc_is_fixed_and_its_hardware_partitions_never_writable() {
    let root = lay_out("laptop");
    let s = snapshot(&root);
    let emmc = drive(&s, "mmcblk0");
    assert_eq!(emmc.bus, Bus::Mmc);
    assert!(!emmc.removable, "type MMC: soldered in");
    assert_eq!(emmc.model.as_deref(), Some("DG4064"));
    assert_eq!(emmc.serial.as_deref(), Some("0x8a3e17c2"));
    assert_eq!(codes(emmc), ["fixed"]);
    assert_eq!(emmc.partitions[0].volume.label.as_deref(), Some("SHARE"));
    for (name, expected) in [
        ("mmcblk0boot0", &["mmc-hardware-partition", "read-only"][..]),
        ("mmcblk0boot1", &["mmc-hardware-partition", "read-only"][..]),
        ("mmcblk0rpmb", &["mmc-hardware-partition"][..]),
    ] {
        let d = drive(&s, name);
        assert_eq!(d.kind, Kind::MmcHardwarePartition, "{name}");
        assert_eq!(codes(d), expected, "{name}");
        let refused = d.check_writable(true).unwrap_err().to_string();
        assert!(refused.contains("eMMC boot or RPMB area"), "{refused}");
    }
}

#[test]
fn zram_swap_and_snap_loop_devices() {
    let root = lay_out("laptop");
    let s = snapshot(&root);
    let zram = drive(&s, "zram0");
    assert_eq!(zram.bus, Bus::Virtual);
    assert_eq!(
        zram.not_offered,
        [
            Reason::Zram,
            Reason::System {
                uses: strings(&["swap /dev/zram0"])
            }
        ]
    );
    assert!(zram.check_writable(true).is_err());
    let snap = drive(&s, "loop0");
    assert_eq!(snap.kind, Kind::Loop);
    assert_eq!(codes(snap), ["read-only", "virtual"]);
    assert_eq!(
        snap.backing_file.as_deref(),
        Some(Path::new("/var/lib/snapd/snaps/core22_1380.snap"))
    );
    let squashfs = snap.filesystem.as_ref().expect("mounted");
    assert_eq!(squashfs.fs.as_deref(), Some("squashfs"));
    assert_eq!(squashfs.mountpoints, [PathBuf::from("/snap/core22/1380")]);
}

#[test]
fn a_loop_device_over_the_root_partition_is_the_root_drive_too() {
    let root = lay_out("laptop");
    let s = snapshot(&root);
    let over_root = drive(&s, "loop2");
    assert!(over_root.holds_root(), "{:?}", over_root.not_offered);
    let refused = over_root.check_writable(true).unwrap_err().to_string();
    assert!(
        refused.contains("/ on /dev/nvme0n1, which it writes through to"),
        "{refused}"
    );
}

#[test]
fn root_that_cannot_be_traced_makes_every_fixed_disk_a_system_drive() {
    let root = lay_out("zfs-root");
    let s = snapshot(&root);
    let nvme = drive(&s, "nvme0n1");
    assert_eq!(
        nvme.not_offered,
        [
            Reason::System {
                uses: strings(&[
                    "/ perhaps (zfs rpool/ROOT/ubuntu_k3f8s1, which cannot be traced to a drive)"
                ])
            },
            Reason::Fixed
        ]
    );
    assert!(matches!(
        nvme.check_writable(false),
        Err(Error::SystemDrive { .. })
    ));
    assert_eq!(names(s.offered()), ["sda"], "the USB stick stays offered");
}

#[test]
fn partitions_and_unused_loop_devices_are_not_drives() {
    let root = lay_out("laptop");
    let s = snapshot(&root);
    let err = s.find(Path::new("/dev/sda1")).unwrap_err().to_string();
    assert!(
        err.contains("/dev/sda1 is a partition of /dev/sda") && err.contains("name /dev/sda"),
        "{err}"
    );
    assert!(matches!(
        s.find(Path::new("/dev/loop1")),
        Err(Error::NotADrive { .. })
    ));
    assert!(matches!(
        s.find(Path::new("/dev/sdz")),
        Err(Error::Unknown { .. })
    ));
    assert_eq!(s.find(Path::new("/dev/sda")).unwrap().name, "sda");
}

#[test]
fn an_image_on_the_card_refuses_that_card_only() {
    let root = lay_out("laptop");
    let s = snapshot(&root);
    let on_card = Path::new("/media/alice/bootfs/backup.img");
    let card_fs = DevNum { major: 8, minor: 1 };
    let err = s
        .check_not_holding(drive(&s, "sda"), card_fs, Some(on_card), "backup.img")
        .unwrap_err();
    assert!(matches!(err, Error::HoldsSource { .. }), "{err}");
    assert!(s
        .check_not_holding(drive(&s, "mmcblk0"), card_fs, Some(on_card), "backup.img")
        .is_ok());
    let home_fs = DevNum {
        major: 259,
        minor: 2,
    };
    let in_home = Path::new("/home/alice/raspios.img.xz");
    assert!(s
        .check_not_holding(drive(&s, "sda"), home_fs, Some(in_home), "raspios.img.xz")
        .is_ok());
}

#[test]
fn desktop_offers_only_the_usb_ssd() {
    let root = lay_out("desktop");
    let s = snapshot(&root);
    assert_eq!(names(s.offered()), ["sdb"]);
    assert_eq!(
        names(s.drives().iter()),
        ["loop3", "sda", "sdb", "sdc", "sdd", "sr0"],
        "device-mapper volumes are not drives"
    );
}

#[test]
fn sata_disk_under_lvm_root_is_the_root_drive() {
    let root = lay_out("desktop");
    let s = snapshot(&root);
    let sda = drive(&s, "sda");
    assert_eq!(sda.bus, Bus::Sata);
    assert_eq!(sda.vendor.as_deref(), Some("ATA"));
    assert_eq!(sda.model.as_deref(), Some("WDC WD10EZEX-08W"));
    assert_eq!(sda.serial.as_deref(), Some("WD-WCC6Y0KJ1234"));
    assert_eq!(
        sda.not_offered,
        [
            Reason::Root {
                uses: strings(&["/", "/boot", "swap /dev/dm-1"])
            },
            Reason::Fixed
        ]
    );
    let pv = &sda.partitions[1];
    assert_eq!(pv.volume.fs.as_deref(), Some("LVM2_member"));
    assert_eq!(pv.volume.used_by, ["dm-0 (vg0-root)", "dm-1 (vg0-swap)"]);
    assert!(pv.volume.mountpoints.is_empty());
    let err = s
        .find(Path::new("/dev/mapper/vg0-root"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("a volume built on sda2"), "{err}");
}

#[test]
fn usb_ssd_with_rm_0_is_removable_through_hotplug_and_large() {
    let root = lay_out("desktop");
    let s = snapshot(&root);
    let ssd = drive(&s, "sdb");
    assert_eq!(ssd.bus, Bus::Usb);
    assert!(ssd.hotplug, "the USB port says removable");
    assert!(ssd.removable);
    assert!(ssd.offered);
    assert_eq!(ssd.vendor.as_deref(), Some("Samsung"));
    assert_eq!(ssd.model.as_deref(), Some("PSSD T7"));
    assert_eq!(ssd.serial.as_deref(), Some("S6XBNS0T901234"));
    assert_eq!(
        ssd.warnings,
        [Warning::Large {
            size: 976_773_168 * 512
        }]
    );
    assert!(ssd.warnings[0].to_string().contains("500 GB"));
    assert_eq!(ssd.partitions[0].volume.label.as_deref(), Some("T7"));
}

#[test]
fn a_disk_holding_home_needs_explicit_permission() {
    let root = lay_out("desktop");
    let s = snapshot(&root);
    let usb_hdd = drive(&s, "sdd");
    assert_eq!(
        usb_hdd.not_offered,
        [Reason::System {
            uses: strings(&["/home"])
        }]
    );
    assert!(!usb_hdd.holds_root());
    let refused = usb_hdd.check_writable(false).unwrap_err();
    assert!(matches!(refused, Error::SystemDrive { .. }), "{refused}");
    assert!(refused.to_string().contains("--allow-system-drive"));
    assert!(usb_hdd.check_writable(true).is_ok());
    let image = Path::new("/home/bob/images/raspios-bookworm.img");
    let home_fs = DevNum {
        major: 8,
        minor: 49,
    };
    assert!(matches!(
        s.check_not_holding(usb_hdd, home_fs, Some(image), "raspios-bookworm.img"),
        Err(Error::HoldsSource { .. })
    ));
}

#[test]
fn fixed_data_disk_optical_drive_and_read_only_loop() {
    let root = lay_out("desktop");
    let s = snapshot(&root);
    let data = drive(&s, "sdc");
    assert_eq!(codes(data), ["fixed"], "/srv/data is not a system mount");
    assert!(
        data.check_writable(false).is_ok(),
        "named explicitly, it may be written"
    );
    assert_eq!(
        data.partitions[0].volume.mountpoints,
        [PathBuf::from("/srv/data")]
    );
    let dvd = drive(&s, "sr0");
    assert_eq!(dvd.kind, Kind::Optical);
    assert_eq!(codes(dvd), ["optical", "no-medium"]);
    let image = drive(&s, "loop3");
    assert_eq!(codes(image), ["read-only", "virtual"]);
    assert!(matches!(
        image.check_writable(true),
        Err(Error::Refused {
            reason: Reason::ReadOnly,
            ..
        })
    ));
}

#[test]
fn live_usb_stick_behind_an_overlay_root_is_the_root_drive() {
    let root = lay_out("live-usb");
    let s = snapshot(&root);
    let stick = drive(&s, "sda");
    assert!(stick.holds_root(), "{:?}", stick.not_offered);
    assert!(!stick.offered);
    assert_eq!(names(s.offered()), ["sdb"]);
}

fn wait_for(watcher: &Watcher, what: &str, test: impl Fn(&Event) -> bool) -> Event {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(event) = watcher.next(Duration::from_millis(100)) {
            if test(&event) {
                return event;
            }
        }
    }
    panic!("no event: {what}");
}

#[test]
fn watcher_reports_cards_inserted_and_readers_unplugged() {
    let root = lay_out("laptop");
    let watcher = Watcher::start(Sources::fixture(root.path()), Duration::from_millis(20));
    let mut initial = Vec::new();
    while initial.len() < 11 {
        match watcher.next(Duration::from_secs(5)) {
            Some(Event::Added(d)) => initial.push(d.name),
            other => panic!("expected the initial drives, got {other:?}"),
        }
    }
    assert!(initial.contains(&"sda".to_owned()));
    let reader = root.path().join(
        "sys/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/host0/target0:0:0/0:0:0:1/block/sdb",
    );
    // Replaced in one step, as sysfs reads are: a half-written file would read as a drive
    // without a size.
    fs::write(reader.join("size.new"), "31116288\n").unwrap();
    fs::rename(reader.join("size.new"), reader.join("size")).unwrap();
    let inserted = wait_for(&watcher, "card inserted", |e| {
        matches!(e, Event::Changed(_))
    });
    let Event::Changed(card) = inserted else {
        unreachable!()
    };
    assert_eq!((card.name.as_str(), card.size), ("sdb", 31_116_288 * 512));
    assert!(card.offered, "a card in the slot is offered");
    fs::remove_file(root.path().join("sys/block/sda")).unwrap();
    let gone = wait_for(&watcher, "reader unplugged", |e| {
        matches!(e, Event::Removed(_))
    });
    assert!(matches!(gone, Event::Removed(d) if d.name == "sda"));
    assert!(watcher.pending().is_empty(), "nothing else changed");
}
