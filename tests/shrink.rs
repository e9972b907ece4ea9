//! Backups that fit any card: `read --shrink` and `shrink`. Each shrunk image is checked by
//! tools cardsmith did not write: sfdisk --verify and sgdisk -v for the table, e2fsck -fn
//! for the filesystem, debugfs's rdump and diff for every file, mtools for cmdline.txt,
//! and a write of it to a card smaller than the original, verified.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

/// The folder of a Raspberry-Pi-OS-like root: Bookworm's first-boot script and the
/// initramfs step that grows the root, and about 300 MiB of files (large incompressible
/// ones, many small ones, a symlink, nested folders).
fn pi_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for folder in [
        "usr/lib/raspberrypi-sys-mods",
        "usr/share/initramfs-tools/scripts/local-premount",
        "etc",
        "home/pi/projects/deep/er",
        "var/lib/many",
    ] {
        fs::create_dir_all(root.join(folder)).unwrap();
    }
    fs::write(
        root.join("usr/lib/raspberrypi-sys-mods/firstboot"),
        "#!/bin/sh\n# stand-in\n",
    )
    .unwrap();
    fs::write(
        root.join("usr/share/initramfs-tools/scripts/local-premount/firstboot"),
        "#!/bin/sh\n# stand-in\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/os-release"),
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
         VERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n",
    )
    .unwrap();
    fs::write(
        root.join("etc/fstab"),
        "PARTUUID=5eed5eed-01 /boot/firmware vfat defaults 0 2\n\
         PARTUUID=5eed5eed-02 / ext4 defaults,noatime 0 1\n",
    )
    .unwrap();
    for i in 0..28u64 {
        write_file(
            &root.join(format!("home/pi/projects/data-{i}.bin")),
            &image_bytes(10 * MIB, 100 + i),
        );
    }
    for i in 0..500 {
        fs::write(
            root.join(format!("var/lib/many/entry-{i}.conf")),
            format!("entry {i}\n"),
        )
        .unwrap();
    }
    fs::write(root.join("home/pi/projects/deep/er/notes.txt"), "deep\n").unwrap();
    std::os::unix::fs::symlink("projects/deep/er/notes.txt", root.join("home/pi/notes")).unwrap();
    root
}

/// A 2 GiB Raspberry-Pi-OS-like card image (MBR, 64 MiB FAT32 boot, ext4 root filling the
/// rest, about 300 MiB of it used).
fn pi_card(dir: &Path) -> PathBuf {
    let root = pi_root(dir);
    let image = dir.join("card.img");
    make_os_image(&image, 64, 1983, &root);
    // The image holds it now; two tests run at once, and CI's disk is shared with builds.
    fs::remove_dir_all(root).unwrap();
    image
}

/// The same as a GPT disk (sgdisk), the root partition last, with the MiB after it for
/// the backup table.
fn pi_card_gpt(dir: &Path) -> PathBuf {
    let root = pi_root(dir);
    let image = dir.join("card-gpt.img");
    make_os_image(&image, 64, 1982, &root);
    fs::remove_dir_all(root).unwrap();
    let data = read_range(&image, 0, 512);
    let (boot, boot_len) = mbr_partition(&data, 0);
    let (root, root_len) = mbr_partition(&data, 1);
    fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(2048 << 20)
        .unwrap();
    run_ok(Command::new("sgdisk").arg("--zap-all").arg(&image));
    run_ok(
        Command::new("sgdisk")
            .arg(format!(
                "--new=1:{}:{}",
                boot / 512,
                (boot + boot_len) / 512 - 1
            ))
            .arg("--typecode=1:0700")
            .arg(format!(
                "--new=2:{}:{}",
                root / 512,
                (root + root_len) / 512 - 1
            ))
            .arg("--typecode=2:8300")
            .arg(&image),
    );
    image
}

/// The (start, length) of partition `n` (from 1) as sfdisk reads the table.
fn partition(image: &Path, n: usize) -> (u64, u64) {
    let out = run_ok(Command::new("sfdisk").arg("--json").arg(image));
    let table: Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &table["partitiontable"]["partitions"][n - 1];
    (
        p["start"].as_u64().unwrap() * 512,
        p["size"].as_u64().unwrap() * 512,
    )
}

/// e2fsck's verdict on the filesystem at `offset` of `image`, read-only.
fn e2fsck_clean(image: &Path, offset: u64) -> bool {
    Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(format!("{}?offset={offset}", image.display()))
        .output()
        .unwrap()
        .status
        .success()
}

/// Every file of the ext4 filesystem at `offset` of `image`, dumped by debugfs into `dir`.
fn rdump(image: &Path, offset: u64, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let out = run_ok(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("rdump / {}", dir.display()))
            .arg(format!("{}?offset={offset}", image.display())),
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("rror"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file of the root partition (2) of `was` and of `now` is the same (debugfs's
/// rdump, then diff), compared in folders under `dir`.
fn same_root_files(was: &Path, now: &Path, dir: &Path) {
    for (image, into) in [(was, "was"), (now, "now")] {
        let (root, _) = partition(image, 2);
        rdump(image, root, &dir.join(into));
    }
    same_trees(&dir.join("was"), &dir.join("now"));
    for into in ["was", "now"] {
        fs::remove_dir_all(dir.join(into)).unwrap();
    }
}

fn same_trees(a: &Path, b: &Path) {
    let diff = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "files differ: {}",
        String::from_utf8_lossy(&diff.stdout)
    );
}

/// cmdline.txt of the FAT partition at `offset` of `image`, as mtools reads it.
fn cmdline(image: &Path, offset: u64) -> String {
    let out = run_ok(
        Command::new("mtype")
            .arg("-i")
            .arg(format!("{}@@{offset}", image.display()))
            .arg("::cmdline.txt"),
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `image` on a loop device, backed up from it into `backup` with `--shrink`: the JSON
/// result.
fn shrunk_from_card(image: &Path, backup: &Path) -> Value {
    let card = LoopDevice::attach(image);
    let out = cardsmith(&[
        "read",
        card.arg(),
        backup.to_str().unwrap(),
        "--shrink",
        "--json",
    ]);
    assert_ok(&out);
    json_lines(&out).pop().unwrap()
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".cardsmith"))
        .collect()
}

#[test]
fn a_shrunk_backup_fits_a_smaller_card_keeps_every_file_and_grows_back_on_first_boot() {
    let dir = tempfile::tempdir().unwrap();
    let image = pi_card(dir.path());
    let before = sha256sum(&image);
    // Left by a run that was killed: cleared at the next start.
    let stale = dir.path().join(".cardsmith-shrink-999999999-1");
    fs::create_dir(&stale).unwrap();
    let backup = dir.path().join("backup.img");
    let result = shrunk_from_card(&image, &backup);
    let shrink = &result["shrink"];
    assert_eq!(shrink["shrunk"], true, "{result}");
    assert_eq!(shrink["grows_with"], "firstboot", "{result}");
    assert_eq!(
        shrink["cmdline_added"], "init=/usr/lib/raspberrypi-sys-mods/firstboot",
        "{result}"
    );
    let len = fs::metadata(&backup).unwrap().len();
    assert!(len < 700 * MIB as u64, "{len} bytes");
    assert_eq!(result["bytes"].as_u64(), Some(len));
    assert_eq!(before, sha256sum(&image), "the card is not changed");
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
    // The witnesses: sfdisk, e2fsck, debugfs + diff, mtools, sha256sum.
    let verify = run_ok(Command::new("sfdisk").arg("--verify").arg(&backup));
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("No errors detected"),
        "{verify:?}"
    );
    let (root, root_len) = partition(&backup, 2);
    assert_eq!(
        root + root_len,
        len,
        "the image ends with the root partition"
    );
    assert!(e2fsck_clean(&backup, root));
    same_root_files(&image, &backup, dir.path());
    let (boot, _) = partition(&backup, 1);
    let line = cmdline(&backup, boot);
    assert!(
        line.trim_end()
            .ends_with("rootwait init=/usr/lib/raspberrypi-sys-mods/firstboot"),
        "{line:?}"
    );
    assert_eq!(line.lines().count(), 1, "one line: {line:?}");
    let check = Command::new("sha256sum")
        .args(["-c", "backup.img.sha256"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(check.status.success());

    // Restored to a 1 GiB card (half the one it came from), it verifies.
    let small = dir.path().join("small-card.img");
    filled_file(&small, 1 << 30, 0x55);
    let small_card = LoopDevice::attach(&small);
    assert_ok(&cardsmith(&[
        "write",
        backup.to_str().unwrap(),
        small_card.arg(),
        "--yes",
    ]));
}

#[test]
fn a_gpt_card_is_shrunk_with_its_backup_table_moved_to_the_new_end() {
    let dir = tempfile::tempdir().unwrap();
    let image = pi_card_gpt(dir.path());
    let backup = dir.path().join("backup.img.zst");
    let result = shrunk_from_card(&image, &backup);
    assert_eq!(result["shrink"]["shrunk"], true, "{result}");
    assert_eq!(result["table"], "GPT");
    let raw = dir.path().join("backup.img");
    compress("zstd", &["-d", "-q"], &backup, &raw);
    let v = run_ok(Command::new("sgdisk").arg("-v").arg(&raw));
    let said = String::from_utf8_lossy(&v.stdout);
    assert!(said.contains("No problems found"), "{said}");
    let (root, root_len) = partition(&raw, 2);
    let len = fs::metadata(&raw).unwrap().len();
    assert_eq!(
        root + root_len + 33 * 512,
        len,
        "partition, then the backup table"
    );
    assert!(len < 700 * MIB as u64);
    assert!(e2fsck_clean(&raw, root));
    same_root_files(&image, &raw, dir.path());
}

#[test]
fn a_filesystem_with_errors_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let image = pi_card(dir.path());
    let (root, _) = partition(&image, 2);
    // debugfs clears an inode a folder still names: e2fsck finds the entry broken.
    run_ok(
        Command::new("debugfs")
            .args(["-w", "-R", "clri /home/pi/projects/deep/er/notes.txt"])
            .arg(format!("{}?offset={root}", image.display())),
    );
    assert!(!e2fsck_clean(&image, root), "the witness sees the damage");
    let backup = dir.path().join("backup.img");
    let out = cardsmith(&[
        "read",
        image.to_str().unwrap(),
        backup.to_str().unwrap(),
        "--shrink",
    ]);
    assert_fails(&out, 1, &["has errors", "e2fsck -f", "nothing was written"]);
    assert!(!backup.exists() && !dir.path().join("backup.img.sha256").exists());
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn too_little_room_for_the_copy_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let image = pi_card(dir.path());
    let small = SmallDisk::new(&dir.path().join("small"), "64m");
    let backup = dir.path().join("backup.img");
    let out = cardsmith(&[
        "read",
        image.to_str().unwrap(),
        backup.to_str().unwrap(),
        "--shrink",
        "--tmp",
        small.point.to_str().unwrap(),
    ]);
    assert_fails(&out, 1, &["the temporary copy needs", "--tmp DIR"]);
    assert!(!backup.exists());
    assert!(leftovers(&small.point).is_empty());
}

#[test]
fn a_last_partition_that_is_not_ext_is_left_as_it_is_and_still_backed_up() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("fat.img");
    filled_file(&image, 96 << 20, 0);
    fs::write(
        dir.path().join("table"),
        "label: dos\nstart=2048, size=65536, type=83\nstart=67584, type=c\n",
    )
    .unwrap();
    run_ok(
        Command::new("sfdisk")
            .arg("--quiet")
            .arg(&image)
            .stdin(fs::File::open(dir.path().join("table")).unwrap()),
    );
    let backup = dir.path().join("backup.img");
    let out = cardsmith(&[
        "read",
        image.to_str().unwrap(),
        backup.to_str().unwrap(),
        "--shrink",
        "--json",
    ]);
    assert_ok(&out);
    let result = json_lines(&out).pop().unwrap();
    assert_eq!(result["shrink"]["shrunk"], false);
    let why = result["shrink"]["not_shrunk"].as_str().unwrap();
    assert!(why.contains("not ext2/3/4"), "{why}");
    assert!(backup.exists());
}

#[test]
fn shrink_takes_an_image_file_compressed_or_raw_and_can_replace_it() {
    let dir = tempfile::tempdir().unwrap();
    let image = pi_card(dir.path());
    let original = dir.path().join("original.img");
    // Sparse, as the card image is: a plain copy would fill in its 1.7 GiB of holes.
    run_ok(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(&image)
            .arg(&original),
    );
    let zst = dir.path().join("card.img.zst");
    compress("zstd", &["-q", "-T2"], &image, &zst);
    let out_path = dir.path().join("small.img");
    let out = cardsmith(&[
        "shrink",
        zst.to_str().unwrap(),
        out_path.to_str().unwrap(),
        "--no-expand",
        "--json",
    ]);
    assert_ok(&out);
    let result = json_lines(&out).pop().unwrap();
    assert_eq!(result["shrink"]["shrunk"], true, "{result}");
    assert!(result["shrink"]["grows_with"].is_null());
    assert!(result["shrink"]["expansion"]
        .as_str()
        .unwrap()
        .contains("resize2fs"));
    let (boot, _) = partition(&out_path, 1);
    assert!(!cmdline(&out_path, boot).contains("init="), "--no-expand");
    same_root_files(&original, &out_path, dir.path());

    // In place: the raw image is replaced, with its checksum beside it.
    let out = cardsmith(&["shrink", image.to_str().unwrap()]);
    assert_ok(&out);
    assert!(fs::metadata(&image).unwrap().len() < 700 * MIB as u64);
    let check = Command::new("sha256sum")
        .args(["-c", "card.img.sha256"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(check.status.success());
    assert!(leftovers(dir.path()).is_empty());
}

/// What the shrink re-arms, image by image: the word it adds to cmdline.txt (mtools reads
/// it back) and what it says, for Trixie (the `resize` word; the filesystem through
/// cloud-init, or by hand without it), cloud-init with growpart (nothing to add), and an
/// image with neither (not re-armed, how to grow it by hand).
#[test]
fn each_os_gets_its_own_first_boot_growth() {
    /// Name, files the root holds, then what is expected: the grower, the word added to
    /// cmdline.txt, and words of what the summary says.
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        Option<&'a str>,
        Option<&'a str>,
        &'a str,
    );
    let cases: [Case<'_>; 4] = [
        (
            "trixie-cloud",
            &[
                "usr/share/initramfs-tools/scripts/local-premount/resize_early",
                "usr/bin/cloud-init",
                "usr/bin/growpart",
            ],
            Some("resize-word"),
            Some("resize"),
            "cloud-init's resizefs",
        ),
        (
            "trixie",
            &[
                "usr/share/initramfs-tools/scripts/local-premount/resize_early",
                "usr/lib/systemd/system/rpi-resize.service",
            ],
            Some("resize-word"),
            Some("resize"),
            "sudo resize2fs /dev/mmcblk0p2",
        ),
        (
            "cloud",
            &["usr/bin/cloud-init", "usr/bin/growpart"],
            Some("cloud-init"),
            None,
            "on every boot",
        ),
        ("plain", &["usr/bin/true"], None, None, "resizepart 2 100%"),
    ];
    for (name, files, grower, word, said) in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for file in files {
            let path = root.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, "#!/bin/sh\n").unwrap();
        }
        fs::create_dir_all(root.join("srv")).unwrap();
        write_file(&root.join("srv/data.bin"), &image_bytes(40 * MIB, 7));
        let image = dir.path().join("card.img");
        make_os_image(&image, 64, 600, &root);
        let out_path = dir.path().join("small.img");
        let out = cardsmith(&[
            "shrink",
            image.to_str().unwrap(),
            out_path.to_str().unwrap(),
            "--shrink-margin",
            "16M",
            "--json",
        ]);
        assert_ok(&out);
        let result = json_lines(&out).pop().unwrap();
        let shrink = &result["shrink"];
        assert_eq!(shrink["shrunk"], true, "{name}: {result}");
        assert_eq!(shrink["grows_with"].as_str(), grower, "{name}: {result}");
        assert_eq!(shrink["cmdline_added"].as_str(), word, "{name}: {result}");
        assert!(
            shrink["expansion"].as_str().unwrap().contains(said),
            "{name}: {result}"
        );
        let (boot, _) = partition(&out_path, 1);
        let line = cmdline(&out_path, boot);
        let ends = line
            .trim_end()
            .ends_with(&format!(" {}", word.unwrap_or("rootwait")));
        assert!(ends, "{name}: {line:?}");
        // 40 MiB of files and a 16 MiB margin: far below the 600 MiB it was.
        let (_, root_len) = partition(&out_path, 2);
        assert!(root_len < 200 * MIB as u64, "{name}: {root_len}");
    }
}
