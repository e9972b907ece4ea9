//! `cardsmith bmap`: the block map of an OS-like image, as bmaptool (Debian's bmap-tools)
//! uses it. `bmaptool copy` finds the map beside the image (raw, and compressed with xz),
//! checks every range's checksum while it copies, and what it copied holds a root
//! filesystem e2fsck finds clean, a boot partition fsck.fat finds clean, and every file.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

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
    make_os_image(&image, 64, 160, &root);
    (image, files)
}

/// Checks what bmaptool wrote: both filesystems clean, every file there.
fn check_copy(dir: &Path, copy: &Path, files: &[(String, Vec<u8>)]) {
    let data = fs::read(copy).unwrap();
    let (boot_at, boot_len) = mbr_partition(&data, 0);
    let (root_at, root_len) = mbr_partition(&data, 1);
    let boot = dir.join("boot.part");
    fs::write(
        &boot,
        &data[boot_at as usize..(boot_at + boot_len) as usize],
    )
    .unwrap();
    run_ok(Command::new("fsck.fat").arg("-n").arg(&boot));
    let root = dir.join("root.part");
    fs::write(
        &root,
        &data[root_at as usize..(root_at + root_len) as usize],
    )
    .unwrap();
    run_ok(Command::new("e2fsck").arg("-fn").arg(&root));
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
    run_ok(
        Command::new("bmaptool")
            .args(["copy"])
            .arg(&image)
            .arg(&copy)
            .env("LC_ALL", "C.UTF-8"),
    );
    check_copy(dir.path(), &copy, &files);

    // A compressed image: decoded for the map, which lands where bmaptool looks for it.
    run_ok(Command::new("xz").args(["-k", "-T2"]).arg(&image));
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
    run_ok(Command::new("bmaptool").args(["copy"]).arg(&xz).arg(&copy));
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
    let (root_at, root_len) = mbr_partition(&data, 1);
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

/// `cardsmith write IMAGE DEV --yes EXTRA… --json`, which must succeed: its result.
fn write_json(image: &Path, dev: &LoopDevice, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "write",
        image.to_str().unwrap(),
        dev.path.to_str().unwrap(),
        "--yes",
    ];
    args.extend_from_slice(extra);
    args.push("--json");
    let out = cardsmith(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    json_lines(&out).pop().unwrap()
}

/// A card (a loop device over a file filled with 0xAA) a little larger than `len`.
fn card(dir: &Path, len: u64) -> (std::path::PathBuf, LoopDevice) {
    let backing = dir.join("card.bin");
    fs::write(&backing, vec![0xAAu8; (len + 4 * MIB as u64) as usize]).unwrap();
    let dev = LoopDevice::attach(&backing);
    (backing, dev)
}

#[test]
fn a_card_gets_only_the_used_blocks_and_its_free_space_keeps_what_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let (image, files) = os_image(dir.path());
    let size = fs::metadata(&image).unwrap().len();
    let (backing, dev) = card(dir.path(), size);
    let out = cardsmith(&[
        "write",
        image.to_str().unwrap(),
        dev.path.to_str().unwrap(),
        "--yes",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    let result = lines.last().unwrap();
    let written = result["bytes_written"].as_u64().unwrap();
    assert_eq!(result["bytes"], size);
    assert!(written < size / 3, "{result}");
    assert_eq!(result["bytes_skipped"], size - written);
    assert_eq!(result["bytes_verified"], written);
    assert_eq!(result["block_map"], "the image's filesystems");
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "block_map" && l["mapped_bytes"] == written),
        "{lines:?}"
    );
    drop(dev);
    // Every file is there, both filesystems check clean (their free space holds 0xAA,
    // which neither tool reads).
    check_copy(dir.path(), &backing, &files);
    // The free space was skipped: every block outside the map still holds 0xAA.
    let map_out = cardsmith(&["bmap", image.to_str().unwrap()]);
    assert!(map_out.status.success(), "{}", stderr(&map_out));
    let ranges = bmap_ranges(&fs::read_to_string(dir.path().join("os.img.bmap")).unwrap());
    let card = fs::read(&backing).unwrap();
    let mut at = 0;
    let mut skipped = 0u64;
    for &(a, b) in ranges.iter().chain(std::iter::once(&(size, size))) {
        let gap = &card[at as usize..a as usize];
        assert!(
            gap.iter().all(|&x| x == 0xAA),
            "bytes {at}..{a} were written"
        );
        skipped += a - at;
        at = b;
    }
    assert_eq!(
        skipped,
        size - written,
        "the map cardsmith wrote by is the bmap's"
    );
}

#[test]
fn all_blocks_writes_everything_and_a_map_for_another_image_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (image, _) = os_image(dir.path());
    let size = fs::metadata(&image).unwrap().len();
    let (backing, dev) = card(dir.path(), size);
    let result = write_json(&image, &dev, &["--all-blocks"]);
    assert_eq!(result["bytes_written"], size);
    assert_eq!(result["block_map"], serde_json::Value::Null);
    let card = fs::read(&backing).unwrap();
    assert!(
        card[..size as usize] == fs::read(&image).unwrap()[..],
        "every byte written"
    );

    // A map made by bmaptool for another image: refused before anything is written.
    let other = dir.path().join("other.img");
    fs::write(&other, vec![7u8; 3 * MIB]).unwrap();
    bmaptool_create(&other, &dir.path().join("other.bmap"));
    let before = fs::read(&backing).unwrap();
    let out = cardsmith(&[
        "write",
        image.to_str().unwrap(),
        dev.path.to_str().unwrap(),
        "--yes",
        "--bmap",
        dir.path().join("other.bmap").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("it belongs to another image"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("Nothing was written"),
        "{}",
        stderr(&out)
    );
    drop(dev);
    assert!(
        fs::read(&backing).unwrap() == before,
        "the card is as it was"
    );
}

#[test]
fn a_bmap_beside_the_image_is_used_and_its_checksums_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (image, files) = os_image(dir.path());
    let size = fs::metadata(&image).unwrap().len();
    // bmaptool's own map of a sparse copy holding only the used blocks.
    let map_out = cardsmith(&["bmap", image.to_str().unwrap()]);
    assert!(map_out.status.success());
    let ranges = bmap_ranges(&fs::read_to_string(dir.path().join("os.img.bmap")).unwrap());
    fs::remove_file(dir.path().join("os.img.bmap")).unwrap();
    let sparse = dir.path().join("sparse.img");
    let src = fs::read(&image).unwrap();
    let f = fs::File::create(&sparse).unwrap();
    f.set_len(size).unwrap();
    for &(a, b) in &ranges {
        std::os::unix::fs::FileExt::write_all_at(&f, &src[a as usize..b as usize], a).unwrap();
    }
    drop(f);
    bmaptool_create(&sparse, &dir.path().join("sparse.img.bmap"));
    let (backing, dev) = card(dir.path(), size);
    let result = write_json(&sparse, &dev, &[]);
    assert!(
        result["block_map"]
            .as_str()
            .unwrap()
            .ends_with("sparse.img.bmap"),
        "{result}"
    );
    drop(dev);
    check_copy(dir.path(), &backing, &files);

    // The same map over an image changed in a mapped block: refused before the card's
    // start is written.
    let f = fs::OpenOptions::new().write(true).open(&sparse).unwrap();
    let (a, b) = ranges[ranges.len() - 1];
    std::os::unix::fs::FileExt::write_all_at(&f, b"changed", (a + b) / 2).unwrap();
    drop(f);
    let dev = LoopDevice::attach(&backing);
    let out = cardsmith(&[
        "write",
        sparse.to_str().unwrap(),
        dev.path.to_str().unwrap(),
        "--yes",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("do not have the checksum the map gives them"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("first MiB zeroed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_compressed_image_without_a_map_skips_what_its_metadata_said_was_free() {
    let dir = tempfile::tempdir().unwrap();
    let (image, files) = os_image(dir.path());
    let size = fs::metadata(&image).unwrap().len();
    run_ok(Command::new("xz").args(["-k", "-T2"]).arg(&image));
    let xz = dir.path().join("os.img.xz");
    // The full map, from the raw image, for the check below (not beside the .xz).
    let map_out = cardsmith(&[
        "bmap",
        image.to_str().unwrap(),
        dir.path().join("full.bmap").to_str().unwrap(),
    ]);
    assert!(map_out.status.success(), "{}", stderr(&map_out));
    let used = bmap_ranges(&fs::read_to_string(dir.path().join("full.bmap")).unwrap());
    let (backing, dev) = card(dir.path(), size);
    let result = write_json(&xz, &dev, &[]);
    let written = result["bytes_written"].as_u64().unwrap();
    assert!(
        written < size / 2,
        "metadata came before the data it describes: {result}"
    );
    assert_eq!(result["bytes_verified"], written);
    assert_eq!(
        result["block_map"],
        "the image's filesystems, as it streamed"
    );
    drop(dev);
    check_copy(dir.path(), &backing, &files);
    // Every used block was written (the card equals the image there); what was skipped
    // still holds 0xAA and lies outside the used ranges.
    let card = fs::read(&backing).unwrap();
    let src = fs::read(&image).unwrap();
    for &(a, b) in &used {
        assert!(
            card[a as usize..b as usize] == src[a as usize..b as usize],
            "used bytes {a}..{b}"
        );
    }
    let skipped = card[..size as usize]
        .chunks(4096)
        .filter(|c| c.iter().all(|&x| x == 0xAA))
        .count();
    assert!(
        skipped as u64 * 4096 >= size - written,
        "{skipped} blocks untouched"
    );
}

#[test]
fn discard_trims_the_skipped_ranges_of_a_card_that_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (image, files) = os_image(dir.path());
    let size = fs::metadata(&image).unwrap().len();
    let (backing, dev) = card(dir.path(), size);
    let result = write_json(&image, &dev, &["--discard"]);
    let written = result["bytes_written"].as_u64().unwrap();
    let discarded = result["bytes_discarded"].as_u64().unwrap();
    // A loop device passes discards to its file as holes: the skipped space reads zeros.
    assert!(discarded > (size - written) / 2, "{result}");
    drop(dev);
    check_copy(dir.path(), &backing, &files);
    let card = fs::read(&backing).unwrap();
    let untouched = card[..size as usize]
        .chunks(4096)
        .filter(|c| c.iter().all(|&x| x == 0xAA))
        .count() as u64;
    assert!(
        untouched * 4096 < size - written - discarded + 4 * MIB as u64,
        "{untouched} blocks still 0xAA"
    );
    use std::os::unix::fs::MetadataExt;
    let allocated = fs::metadata(&backing).unwrap().blocks() * 512;
    assert!(
        allocated < size / 2,
        "the discarded ranges are holes in the card's file: {allocated}"
    );
}

#[test]
fn a_block_map_can_come_from_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let (image, files) = os_image(dir.path());
    let size = fs::metadata(&image).unwrap().len();
    let map = dir.path().join("elsewhere.bmap");
    let made = cardsmith(&["bmap", image.to_str().unwrap(), map.to_str().unwrap()]);
    assert!(made.status.success(), "{}", stderr(&made));
    let server = common::http::Server::start();
    server.serve("/os.img.bmap", fs::read(&map).unwrap());
    let url = server.url("/os.img.bmap");
    let (backing, dev) = card(dir.path(), size);
    let result = write_json(&image, &dev, &["--bmap", &url]);
    assert_eq!(result["block_map"], url.as_str());
    assert!(
        result["bytes_written"].as_u64().unwrap() < size / 3,
        "{result}"
    );
    drop(dev);
    check_copy(dir.path(), &backing, &files);
    // A URL that answers 404: the write is refused, saying why.
    server.serve("/missing.bmap", Vec::new());
    server.status("/missing.bmap", 404);
    let dev = LoopDevice::attach(&backing);
    let missing = server.url("/missing.bmap");
    let out = cardsmith(&[
        "write",
        image.to_str().unwrap(),
        dev.path.to_str().unwrap(),
        "--yes",
        "--bmap",
        &missing,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot fetch the block map"),
        "{}",
        stderr(&out)
    );
}
