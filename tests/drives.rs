//! `cardsmith drives` and the safety of writing drives, on loop devices this test creates
//! (and always detaches). Needs root, which the README's test command has. The only device
//! the test did not create that it names is the root drive, and only to a process running
//! as nobody, which the kernel does not let open it.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// The fields of a drive in `cardsmith drives --json`, as the README documents them.
const DRIVE_FIELDS: [&str; 19] = [
    "name",
    "path",
    "dev",
    "size",
    "size_human",
    "vendor",
    "model",
    "serial",
    "bus",
    "kind",
    "removable",
    "hotplug",
    "read_only",
    "backing_file",
    "filesystem",
    "partitions",
    "offered",
    "not_offered",
    "warnings",
];

/// A loop device over a fresh ext4 filesystem (all of it initialised now, so that the
/// kernel does not write to it later on its own).
fn ext4_card(dir: &Path, len: usize, label: &str) -> (PathBuf, LoopDevice) {
    let backing = dir.join(format!("{label}.ext4"));
    ext4_file(&backing, len as u64, Some(label));
    let dev = LoopDevice::attach(&backing);
    (backing, dev)
}

/// A mounted filesystem, unmounted again when dropped if cardsmith did not.
struct Mounted {
    point: PathBuf,
}

impl Mounted {
    fn new(dev: &LoopDevice, point: &Path, options: &str) -> Mounted {
        fs::create_dir_all(point).unwrap();
        tool(
            "mount",
            &[
                "-t",
                "ext4",
                "-o",
                options,
                dev.arg(),
                point.to_str().unwrap(),
            ],
        );
        Mounted {
            point: point.to_owned(),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.point) {
            let _ = Command::new("umount").arg(&self.point).status();
        }
    }
}

fn list(args: &[&str]) -> Value {
    let out = cardsmith(args);
    assert_ok(&out);
    serde_json::from_str(&stdout(&out)).expect("drives --json prints one JSON document")
}

fn listed<'a>(doc: &'a Value, dev: &str) -> Option<&'a Value> {
    doc["drives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == dev)
}

#[test]
fn loop_devices_are_listed_by_all_as_virtual_with_their_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let (backing, dev) = ext4_card(dir.path(), 24 * MIB, "cs-listed");

    let all = list(&["drives", "--all", "--json"]);
    assert_eq!(all["schema"], 1);
    let drive = listed(&all, dev.arg()).expect("--all lists the loop device");
    let mut fields: Vec<&str> = drive
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort();
    let mut documented = DRIVE_FIELDS.to_vec();
    documented.sort();
    assert_eq!(fields, documented, "the JSON schema is stable");
    assert_eq!(drive["kind"], "loop");
    assert_eq!(drive["bus"], "virtual");
    assert_eq!(drive["size"], 24 * MIB);
    assert_eq!(drive["backing_file"], backing.to_str().unwrap());
    assert_eq!(drive["offered"], false);
    assert_eq!(drive["not_offered"][0]["code"], "virtual");
    assert_eq!(drive["filesystem"]["fs"], "ext4");
    assert_eq!(drive["filesystem"]["label"], "cs-listed");
    let dev_number = fs::read_to_string(format!(
        "/sys/block/{}/dev",
        dev.arg().trim_start_matches("/dev/")
    ))
    .unwrap();
    assert_eq!(drive["dev"], dev_number.trim());

    let as_nobody = cardsmith_as_nobody(&["drives", "--all", "--json"]);
    assert_ok(&as_nobody);
    let seen: Value = serde_json::from_str(&stdout(&as_nobody)).unwrap();
    assert_eq!(
        listed(&seen, dev.arg()).map(|d| &d["kind"]),
        Some(&Value::from("loop")),
        "a normal user sees the same drives"
    );

    let offered = list(&["drives", "--json"]);
    assert!(
        listed(&offered, dev.arg()).is_none(),
        "loop devices are not offered by default"
    );

    let out = cardsmith(&["drives", "--all"]);
    let text = stdout(&out);
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with(dev.arg()))
        .take(3)
        .collect();
    assert!(block[0].contains("loop device over"), "{text}");
    assert!(
        block[1].contains("ext4") && block[1].contains("\"cs-listed\""),
        "{text}"
    );
    assert!(block[2].contains("not offered: virtual"), "{text}");
}

/// The drives `cardsmith drives --all` marks as holding the running system.
fn root_drives_said() -> Vec<Value> {
    let all = list(&["drives", "--all", "--json"]);
    let drives = all["drives"].as_array().unwrap();
    drives
        .iter()
        .filter(|d| {
            let reasons = d["not_offered"].as_array().unwrap();
            reasons.iter().any(|r| r["code"] == "root")
        })
        .cloned()
        .collect()
}

#[test]
fn the_root_drive_is_the_one_util_linux_finds_under_slash() {
    let witnessed = root_disks_witnessed();
    let said = root_drives_said();
    let mut names: Vec<String> = said
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    // When / is on no disk, cardsmith must not invent one either.
    assert_eq!(
        names, witnessed,
        "findmnt and lsblk disagree with cardsmith"
    );
    for root in &said {
        assert_eq!(root["offered"], false);
        let reason = &root["not_offered"][0];
        assert!(
            reason["uses"]
                .as_array()
                .unwrap()
                .contains(&Value::from("/")),
            "{reason}"
        );
    }
}

#[test]
fn a_mounted_card_is_unmounted_then_written() {
    let dir = tempfile::tempdir().unwrap();
    let (backing, dev) = ext4_card(dir.path(), 32 * MIB, "cs-mounted");
    let point = dir.path().join("mnt");
    let _mounted = Mounted::new(&dev, &point, "rw");
    fs::write(point.join("notes.txt"), "old card").unwrap();
    let raw = dir.path().join("os.img");
    write_file(&raw, &image_bytes(5 * MIB, 3));

    let out = cardsmith(&[
        "write",
        raw.to_str().unwrap(),
        dev.arg(),
        "--yes",
        "--eject",
    ]);
    assert_ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("Unmounted {}", point.display())),
        "{err}"
    );
    assert!(
        err.contains("Not ejected") && err.contains("loop device (a file, not hardware)"),
        "{err}"
    );
    assert!(!is_mounted(&point), "cardsmith unmounted it");
    assert!(same_prefix(&raw, &backing, 5 * MIB as u64));
}

#[test]
fn a_busy_mount_point_refuses_the_write_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (backing, dev) = ext4_card(dir.path(), 32 * MIB, "cs-busy");
    let point = dir.path().join("mnt");
    let before = fs::read(&backing).unwrap();
    let _mounted = Mounted::new(&dev, &point, "ro");
    let in_use = fs::File::open(point.join("lost+found")).unwrap();
    let raw = dir.path().join("os.img");
    write_file(&raw, &image_bytes(5 * MIB, 4));

    let out = cardsmith(&["write", raw.to_str().unwrap(), dev.arg(), "--yes"]);
    assert_fails(
        &out,
        1,
        &[
            &format!("{} is busy and cannot be unmounted", point.display()),
            "nothing was written",
        ],
    );
    assert!(is_mounted(&point));
    drop(in_use);
    assert!(
        fs::read(&backing).unwrap() == before,
        "the card was written to"
    );
}

#[test]
fn large_drives_are_written_only_after_a_warning_that_names_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("big.bin");
    // Sparse: 200 GiB of address space, a few MiB on disk.
    fs::File::create(&backing)
        .unwrap()
        .set_len(200 << 30)
        .unwrap();
    let dev = LoopDevice::attach(&backing);
    let raw = dir.path().join("os.img");
    write_file(&raw, &image_bytes(2 * MIB, 5));
    let out = cardsmith(&["write", raw.to_str().unwrap(), dev.arg(), "--yes"]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("Warning: this drive is 215 GB"),
        "{}",
        stderr(&out)
    );
    let out = cardsmith(&["write", raw.to_str().unwrap(), dev.arg()]);
    assert_fails(
        &out,
        1,
        &["Warning: this drive is 215 GB", "Not without confirmation"],
    );
}

#[test]
fn a_drive_that_changes_while_the_user_confirms_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("card.bin");
    filled_file(&backing, 8 * MIB, 0xAA);
    let dev = LoopDevice::attach(&backing);
    let raw = dir.path().join("os.img");
    write_file(&raw, &image_bytes(3 * MIB, 6));
    let command = format!("{} write {} {}", bin(), raw.display(), dev.arg());
    // While the question is on screen, the device comes to hold something else (here: the
    // same loop device, grown, as when a reader's name passes to a new card).
    let swap_medium = || {
        fs::OpenOptions::new()
            .write(true)
            .open(&backing)
            .unwrap()
            .set_len(12 * MIB as u64)
            .unwrap();
        tool("losetup", &["-c", dev.arg()]);
    };
    let screen = on_terminal(&command, "Type yes to continue", swap_medium, "yes\n");
    assert!(screen.contains("changed since it was chosen"), "{screen}");
    assert!(
        screen.contains(&format!("size {} bytes is now {} bytes", 8 * MIB, 12 * MIB)),
        "{screen}"
    );
    let card = fs::read(&backing).unwrap();
    assert!(
        card[..8 * MIB].iter().all(|&b| b == 0xAA),
        "the card was written to"
    );
}

#[test]
fn a_normal_user_asking_for_the_root_drive_hears_system_drive() {
    // The disk comes from util-linux, not from cardsmith: a cardsmith that lost track of
    // the root drive must fail here, not skip.
    let witnessed = root_disks_witnessed();
    let Some(disk) = witnessed.first() else {
        eprintln!("findmnt says / is on no block device here (an overlay?): no root disk");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let image = world_readable_image(dir.path(), MIB);
    // nobody cannot open the disk (the kernel says no, and there is no UDisks2 to ask):
    // cardsmith must refuse before trying, for the right reason.
    let path = format!("/dev/{disk}");
    let path = path.as_str();
    let out = cardsmith_as_nobody(&["write", image.to_str().unwrap(), path, "--yes"]);
    assert_fails(&out, 1, &["system drive", "running system"]);
    let err = stderr(&out);
    assert!(
        !err.contains("ermission") && !err.contains("UDisks"),
        "{err}"
    );
}

/// An active swap on a loop device: what makes a drive a system drive without touching
/// the machine's own mounts. Switched off again when dropped.
struct Swap {
    dev: String,
}

impl Swap {
    fn on(dev: &LoopDevice) -> Swap {
        tool("swapon", &[dev.arg()]);
        Swap {
            dev: dev.arg().to_owned(),
        }
    }

    fn off(dev: &str) {
        let swaps = fs::read_to_string("/proc/swaps").unwrap();
        if swaps
            .lines()
            .any(|l| l.split_whitespace().next() == Some(dev))
        {
            tool("swapoff", &[dev]);
        }
    }
}

impl Drop for Swap {
    fn drop(&mut self) {
        Swap::off(&self.dev);
    }
}

#[test]
fn a_system_drive_is_written_only_after_its_name_is_typed() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("swap.bin");
    filled_file(&backing, 16 * MIB, 0);
    fs::set_permissions(&backing, fs::Permissions::from_mode(0o600)).unwrap();
    tool("mkswap", &["-q", backing.to_str().unwrap()]);
    let before = fs::read(&backing).unwrap();
    let dev = LoopDevice::attach(&backing);
    let swap = Swap::on(&dev);
    let name = dev.arg().trim_start_matches("/dev/").to_owned();
    let raw = dir.path().join("os.img");
    write_file(&raw, &image_bytes(3 * MIB, 8));
    let image = raw.to_str().unwrap();

    let out = cardsmith(&["write", image, dev.arg(), "--yes"]);
    assert_fails(
        &out,
        1,
        &[
            &format!("is a system drive: it holds swap {}", dev.arg()),
            "--allow-system-drive",
        ],
    );
    let out = cardsmith(&["write", image, dev.arg(), "--yes", "--allow-system-drive"]);
    assert_fails(&out, 1, &["is erased only after its name is typed"]);

    // customize follows the same rule: --yes does not consent for a system drive.
    let custom = ["customize", dev.arg(), "--hostname", "node1", "--yes"];
    let out = cardsmith(&[&custom[..], &["--allow-system-drive"]].concat());
    assert_fails(
        &out,
        1,
        &[
            "Customise",
            "is a SYSTEM DRIVE",
            "is changed only after its name is typed",
        ],
    );
    let command = format!(
        "{} customize {} --hostname node1 --yes --allow-system-drive",
        bin(),
        dev.arg()
    );
    let screen = on_terminal(
        &command,
        &format!("Type the drive's name ({name}) to change it"),
        || {},
        "yes\n",
    );
    assert!(
        screen.contains("Files on its boot partition will be replaced"),
        "{screen}"
    );
    assert!(screen.contains("nothing was written"), "{screen}");

    let command = format!("{} write {image} {} --allow-system-drive", bin(), dev.arg());
    let prompt = format!("Type the drive's name ({name}) to erase it");
    let screen = on_terminal(&command, &prompt, || {}, "yes\n");
    assert!(screen.contains("SYSTEM DRIVE"), "{screen}");
    assert!(screen.contains("nothing was written"), "{screen}");
    assert!(
        fs::read(&backing).unwrap() == before,
        "the swap was written to"
    );

    // Typing the name is consent; the swap is switched off meanwhile so the drive can be
    // opened exclusively.
    let screen = on_terminal(
        &command,
        &prompt,
        || Swap::off(&swap.dev),
        &format!("{name}\n"),
    );
    assert!(screen.contains("verified"), "{screen}");
    assert!(same_prefix(&raw, &backing, 3 * MIB as u64));
}

#[test]
fn erase_leaves_one_clean_fat32_partition_over_the_card() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("card.bin");
    filled_file(&backing, 96 * MIB, 0xAA);
    let dev = LoopDevice::attach(&backing);
    let out = cardsmith(&["erase", dev.arg()]);
    assert_fails(&out, 1, &["Erase", "Not without confirmation"]);
    assert!(
        read_range(&backing, 0, 512).iter().all(|&b| b == 0xAA),
        "refused: untouched"
    );

    let out = cardsmith(&["erase", dev.arg(), "--yes", "--json"]);
    assert_ok(&out);
    let table = stdout(&tool("sfdisk", &["--dump", backing.to_str().unwrap()]));
    assert!(
        table.contains("start=        2048, size=      194560, type=c"),
        "{table}"
    );
    let part = dir.path().join("part.fat");
    write_file(&part, &read_range(&backing, MIB as u64, 95 * MIB));
    let fsck = Command::new("fsck.fat")
        .args(["-n", part.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{}", stdout(&fsck));
    let label = stdout(&tool("mlabel", &["-i", part.to_str().unwrap(), "-s", "::"]));
    assert!(label.contains("BOOTFS"), "{label}");
    assert_eq!(
        &read_range(&part, 82, 8),
        b"FAT32   ",
        "a FAT32 boot sector"
    );
}
