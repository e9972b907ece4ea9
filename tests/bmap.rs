//! `cardsmith bmap`: the block map of an OS-like image, as bmaptool (Debian's bmap-tools)
//! uses it. `bmaptool copy` finds the map beside the image (raw, and compressed with xz),
//! checks every range's checksum while it copies, and what it copied holds a root
//! filesystem e2fsck finds clean, a boot partition fsck.fat finds clean, and every file.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (the test command installs bmap-tools)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// scripts/os-image with files of known content in its root, and its partitions' offsets.
fn os_image(dir: &Path) -> (std::path::PathBuf, Vec<(String, Vec<u8>)>) {
    let root = dir.join("root");
    let mut files = Vec::new();
    for i in 0..6u32 {
        let data: Vec<u8> = (0..(150_000 * i + 17))
            .map(|j| (j * 13 + i) as u8)
            .collect();
        let name = format!("srv/file{i}.bin");
        fs::create_dir_all(root.join("srv")).unwrap();
        fs::write(root.join(&name), &data).unwrap();
        files.push((name, data));
    }
    let image = dir.join("os.img");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/os-image");
    run(Command::new(script)
        .arg(&image)
        .args(["64", "160"])
        .arg(&root));
    (image, files)
}

/// The `n`th MBR partition's (start, length) in bytes.
fn partition(image: &[u8], n: usize) -> (u64, u64) {
    let e = &image[0x1BE + 16 * n..0x1BE + 16 * (n + 1)];
    let lba = u64::from(u32::from_le_bytes(e[8..12].try_into().unwrap()));
    let sectors = u64::from(u32::from_le_bytes(e[12..16].try_into().unwrap()));
    (lba * 512, sectors * 512)
}

/// Checks what bmaptool wrote: both filesystems clean, every file there.
fn check_copy(dir: &Path, copy: &Path, files: &[(String, Vec<u8>)]) {
    let data = fs::read(copy).unwrap();
    let (boot_at, boot_len) = partition(&data, 0);
    let (root_at, root_len) = partition(&data, 1);
    let boot = dir.join("boot.part");
    fs::write(
        &boot,
        &data[boot_at as usize..(boot_at + boot_len) as usize],
    )
    .unwrap();
    run(Command::new("fsck.fat").arg("-n").arg(&boot));
    let root = dir.join("root.part");
    fs::write(
        &root,
        &data[root_at as usize..(root_at + root_len) as usize],
    )
    .unwrap();
    run(Command::new("e2fsck").arg("-fn").arg(&root));
    for (name, content) in files {
        let out = Command::new("debugfs")
            .args(["-R", &format!("cat /{name}")])
            .arg(&root)
            .output()
            .unwrap();
        assert_eq!(&out.stdout, content, "{name}");
    }
    let config = Command::new("mtype")
        .args(["-i", &boot.display().to_string(), "::config.txt"])
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&config.stdout).contains("arm_64bit=1"));
}

#[test]
fn bmaptool_copies_an_image_with_the_map_cardsmith_made() {
    let dir = tempfile::tempdir().unwrap();
    let (image, files) = os_image(dir.path());
    let out = cardsmith(&["bmap", image.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("in ") && said.contains("os.img.bmap"),
        "{said}"
    );
    assert!(
        said.contains("partition 1 (FAT32)") && said.contains("partition 2 (ext2/3/4)"),
        "{said}"
    );
    let bmap = fs::read_to_string(dir.path().join("os.img.bmap")).unwrap();
    assert!(bmap.contains("<bmap version=\"2.0\">"), "{bmap}");

    // bmaptool finds os.img.bmap beside os.img and checks each range while copying.
    let copy = dir.path().join("copy.img");
    let log = run(Command::new("bmaptool")
        .args(["copy"])
        .arg(&image)
        .arg(&copy)
        .env("LC_ALL", "C.UTF-8"));
    let _ = log;
    check_copy(dir.path(), &copy, &files);

    // A compressed image: decoded for the map, which lands where bmaptool looks for it.
    run(Command::new("xz").args(["-k", "-T2"]).arg(&image));
    fs::remove_file(dir.path().join("os.img.bmap")).unwrap();
    let xz = dir.path().join("os.img.xz");
    let out = cardsmith(&["bmap", xz.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap();
    assert_eq!(
        result["output"],
        dir.path().join("os.img.bmap").display().to_string()
    );
    assert_eq!(result["image_size"], fs::metadata(&image).unwrap().len());
    let mapped = result["mapped_bytes"].as_u64().unwrap();
    assert!(
        mapped < result["image_size"].as_u64().unwrap() / 3,
        "{result}"
    );
    fs::remove_file(&copy).unwrap();
    run(Command::new("bmaptool").args(["copy"]).arg(&xz).arg(&copy));
    check_copy(dir.path(), &copy, &files);

    // An existing map is replaced only with --force.
    let again = cardsmith(&["bmap", image.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists; pass --force"),
        "{}",
        stderr(&again)
    );
    let forced = cardsmith(&["bmap", image.to_str().unwrap(), "--force"]);
    assert!(forced.status.success(), "{}", stderr(&forced));
}

#[test]
fn a_map_naming_a_damaged_filesystem_counts_all_of_it_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (image, _) = os_image(dir.path());
    let data = fs::read(&image).unwrap();
    let (root_at, root_len) = partition(&data, 1);
    // The root superblock claims more blocks than its partition holds.
    let f = fs::OpenOptions::new().write(true).open(&image).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &u32::MAX.to_le_bytes(), root_at + 1024 + 4)
        .unwrap();
    drop(f);
    let out = cardsmith(&["bmap", image.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap();
    let root = &result["partitions"][1];
    assert_eq!(root["used_bytes"], root_len, "all of it: {root}");
    let note = root["note"].as_str().unwrap();
    assert!(
        note.contains("s_blocks_count") && note.contains("byte 1028"),
        "{note}"
    );
}
