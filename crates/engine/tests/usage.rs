//! The allocation map against tools cardsmith did not write: filesystems made by mke2fs,
//! mkfs.vfat and mkswap, tables by sfdisk and sgdisk. Two witnesses per filesystem: the
//! used blocks e2fsprogs (dumpe2fs) or dosfstools (fsck.fat) count, and a copy of only
//! the mapped bytes into an empty disk, which must check clean (e2fsck -fn, fsck.fat -n,
//! sgdisk -v) and give back every file byte for byte (debugfs, mtype).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cardsmith_engine::{usage_of, Filesystem, Target, Usage};
use common::{make_os_image, run};

const MIB: u64 = 1 << 20;

/// Files with varied sizes and contents, some of them removed again so the free space
/// has holes.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for i in 0..24u32 {
        let len = [0usize, 1, 511, 4096, 5000, 70_000, 300_000][i as usize % 7] + i as usize;
        let data: Vec<u8> = (0..len).map(|j| (j as u32 * 31 + i * 7) as u8).collect();
        let name = format!("d{}/file{i}.bin", i % 3);
        fs::create_dir_all(dir.join(format!("d{}", i % 3))).unwrap();
        fs::write(dir.join(&name), &data).unwrap();
        files.push((name, data));
    }
    files
}

/// A disk of `size` bytes with one partition of `kind` from 1 MiB to the end (sfdisk),
/// holding the filesystem image `part` (made elsewhere).
fn disk_with(dir: &Path, part: &Path, size: u64, kind: &str) -> PathBuf {
    let disk = dir.join("disk.img");
    let f = fs::File::create(&disk).unwrap();
    f.set_len(size).unwrap();
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", "--no-reread", "--no-tell-kernel"])
        .arg(&disk)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sfdisk (fdisk)");
    writeln!(
        sfdisk.stdin.take().unwrap(),
        "label: dos\nstart=2048, type={kind}"
    )
    .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    let src = fs::File::open(part).unwrap();
    let len = src.metadata().unwrap().len();
    let mut buf = vec![0u8; 4 << 20];
    let mut at = 0;
    while at < len {
        let n = buf.len().min((len - at) as usize);
        src.read_exact_at(&mut buf[..n], at).unwrap();
        if buf[..n].iter().any(|&b| b != 0) {
            f.write_all_at(&buf[..n], MIB + at).unwrap();
        }
        at += n as u64;
    }
    disk
}

fn map(path: &Path) -> Usage {
    usage_of(&Target::open_for_read(path).unwrap()).unwrap()
}

/// A copy of `disk` holding only the mapped bytes (zeros elsewhere).
fn mapped_copy(disk: &Path, usage: &Usage, out: &Path) {
    let src = fs::File::open(disk).unwrap();
    let dst = fs::File::create(out).unwrap();
    dst.set_len(usage.size).unwrap();
    for &(a, b) in &usage.ranges {
        let mut buf = vec![0u8; (b - a) as usize];
        src.read_exact_at(&mut buf, a).unwrap();
        dst.write_all_at(&buf, a).unwrap();
    }
}

/// The partition's bytes of `disk` as a file of its own (the tools want a filesystem
/// image, not a disk).
fn partition(disk: &Path, start: u64, len: u64, out: &Path) {
    let src = fs::File::open(disk).unwrap();
    let dst = fs::File::create(out).unwrap();
    dst.set_len(len).unwrap();
    let mut buf = vec![0u8; 4 << 20];
    let mut at = 0;
    while at < len {
        let n = buf.len().min((len - at) as usize);
        src.read_exact_at(&mut buf[..n], start + at).unwrap();
        // Zeros stay holes: the copy of a large, mostly empty partition stays small.
        if buf[..n].iter().any(|&b| b != 0) {
            dst.write_all_at(&buf[..n], at).unwrap();
        }
        at += n as u64;
    }
}

/// Used blocks per dumpe2fs: every block of the groups' ranges not in a "Free blocks" list.
fn e2fs_used(image: &Path) -> (u64, BTreeSet<u64>) {
    let text = run(Command::new("dumpe2fs").arg(image));
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in dumpe2fs"))
            .trim()
            .parse()
            .unwrap()
    };
    let (blocks, first) = (field("Block count:"), field("First block:"));
    let block_size = field("Block size:");
    let mut used: BTreeSet<u64> = (first..blocks).collect();
    for line in text.lines() {
        // The groups' lists are indented; the superblock's "Free blocks:" count is not.
        let Some(list) = line.strip_prefix("  Free blocks: ") else {
            continue;
        };
        for item in list.split(", ").filter(|s| !s.is_empty()) {
            let (a, b) = item.split_once('-').unwrap_or((item, item));
            let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
            for n in a..=b {
                used.remove(&n);
            }
        }
    }
    (block_size, used)
}

/// The blocks (from the partition's start) the map says are used.
fn mapped_blocks(usage: &Usage, start: u64, len: u64, block: u64, first: u64) -> BTreeSet<u64> {
    let mut set = BTreeSet::new();
    for &(a, b) in &usage.ranges {
        let (a, b) = (a.max(start), b.min(start + len));
        if a >= b {
            continue;
        }
        for n in (a - start) / block..(b - start).div_ceil(block) {
            if n >= first {
                set.insert(n);
            }
        }
    }
    set
}

fn ext_case(name: &str, size_mib: u64, mkfs: &[&str]) {
    ext_case_checking(name, size_mib, mkfs, |_| {});
}

fn ext_case_checking(name: &str, size_mib: u64, mkfs: &[&str], check: impl Fn(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let files = tree(&root);
    let part = dir.path().join("part.img");
    fs::File::create(&part)
        .unwrap()
        .set_len(size_mib * MIB)
        .unwrap();
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&root)
        .args(mkfs)
        .arg(&part));
    // Some files removed again: free space with holes between used blocks.
    for (path, _) in files.iter().step_by(4) {
        run(Command::new("debugfs")
            .args(["-w", "-R", &format!("rm /{path}")])
            .arg(&part));
    }
    check(&part);
    let disk = disk_with(dir.path(), &part, (size_mib + 2) * MIB, "83");
    let usage = map(&disk);
    assert_eq!(usage.parts.len(), 1, "{name}");
    let p = &usage.parts[0];
    assert_eq!(p.filesystem, Filesystem::Ext, "{name}: {p:?}");
    assert_eq!(p.note, None, "{name}");
    // Witness 1: exactly the blocks e2fsprogs counts as used.
    let (block, expected) = e2fs_used(&part);
    let first = *expected.iter().next().unwrap();
    let got = mapped_blocks(&usage, p.start, p.len, block, first.min(1));
    let missing: Vec<_> = expected.difference(&got).take(10).collect();
    let extra: Vec<_> = got
        .difference(&expected)
        .filter(|&&b| b >= first)
        .take(10)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{name}: blocks used by dumpe2fs but not mapped {missing:?}, mapped but free {extra:?}"
    );
    assert!(
        p.used < p.len / 2,
        "{name}: mostly free, {} of {}",
        p.used,
        p.len
    );
    // Witness 2: only the mapped bytes give a clean filesystem with every file.
    let copy = dir.path().join("copy.img");
    mapped_copy(&disk, &usage, &copy);
    let copied = dir.path().join("copy-part.img");
    partition(&copy, p.start, p.len, &copied);
    run(Command::new("e2fsck").args(["-fn"]).arg(&copied));
    for (i, (path, data)) in files.iter().enumerate() {
        if i % 4 == 0 {
            continue;
        }
        let out = Command::new("debugfs")
            .args(["-R", &format!("cat /{path}")])
            .arg(&copied)
            .output()
            .unwrap();
        assert_eq!(
            &out.stdout, data,
            "{name}: {path} differs in the mapped copy"
        );
    }
}

#[test]
fn ext4_with_4k_blocks_and_flex_bg() {
    ext_case("ext4 4K", 256, &["-b", "4096"]);
}

#[test]
fn ext4_with_groups_never_written_counts_their_backups_and_tables() {
    // 1 GiB: 8 groups, most BLOCK_UNINIT, with superblock backups in 1, 3, 5 and 7.
    ext_case_checking(
        "ext4 uninit",
        1024,
        &["-b", "4096", "-O", "^flex_bg"],
        |part| {
            let text = run(Command::new("dumpe2fs").arg(part));
            let uninit = text.matches("BLOCK_UNINIT").count();
            assert!(uninit >= 4, "only {uninit} groups are BLOCK_UNINIT");
        },
    );
}

#[test]
fn ext4_with_1k_blocks_has_its_first_data_block_at_1() {
    ext_case("ext4 1K", 48, &["-b", "1024"]);
}

#[test]
fn ext4_without_flex_bg_and_with_meta_bg() {
    ext_case(
        "ext4 meta_bg",
        160,
        &["-b", "1024", "-O", "^flex_bg,^resize_inode,meta_bg"],
    );
}

#[test]
fn ext2_without_checksums() {
    ext_case("ext2", 64, &["-t", "ext2", "-b", "2048"]);
}

fn fat_case(bits: u8, size_mib: u64, cluster_sectors: &str) {
    let name = format!("FAT{bits}");
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("part.img");
    fs::File::create(&part)
        .unwrap()
        .set_len(size_mib * MIB)
        .unwrap();
    run(Command::new("mkfs.vfat")
        .args(["-F", &bits.to_string(), "-s", cluster_sectors, "-n", "CARD"])
        .arg(&part));
    let root = dir.path().join("root");
    let files = tree(&root);
    let image = format!("{}", part.display());
    run(Command::new("mcopy")
        .args(["-s", "-i", &image])
        .arg(root.join("d0"))
        .arg(root.join("d1"))
        .arg(root.join("d2"))
        .arg("::/")
        .env("MTOOLS_SKIP_CHECK", "1"));
    for (path, _) in files.iter().step_by(4) {
        run(Command::new("mdel")
            .args(["-i", &image, &format!("::/{path}")])
            .env("MTOOLS_SKIP_CHECK", "1"));
    }
    let disk = disk_with(dir.path(), &part, (size_mib + 2) * MIB, "c");
    let usage = map(&disk);
    let p = &usage.parts[0];
    assert_eq!(p.filesystem, Filesystem::Fat(bits), "{name}: {p:?}");
    // Witness 1: fsck.fat counts the clusters in use.
    let report = run(Command::new("fsck.fat").args(["-n", "-v"]).arg(&part));
    let clusters = report
        .lines()
        .find_map(|l| l.split_once(" files, ").map(|(_, r)| r.to_owned()))
        .unwrap_or_else(|| panic!("{name}: no cluster count in {report}"));
    let (in_use, _) = clusters.split_once('/').unwrap();
    let in_use: u64 = in_use.trim().parse().unwrap();
    let boot = fs::read(&part).unwrap();
    let sector = u64::from(u16::from_le_bytes([boot[11], boot[12]]));
    let cluster = sector * u64::from(boot[13]);
    let reserved = u64::from(u16::from_le_bytes([boot[14], boot[15]]));
    let fat_size = match u16::from_le_bytes([boot[22], boot[23]]) {
        0 => u64::from(u32::from_le_bytes(boot[36..40].try_into().unwrap())),
        n => u64::from(n),
    };
    let root_sectors = (u64::from(u16::from_le_bytes([boot[17], boot[18]])) * 32).div_ceil(sector);
    let data = (reserved + u64::from(boot[16]) * fat_size + root_sectors) * sector;
    let mapped_data: u64 = usage
        .ranges
        .iter()
        .map(|&(a, b)| (a.max(p.start + data), b.min(p.start + p.len)))
        .filter(|(a, b)| a < b)
        .map(|(a, b)| b - a)
        .sum();
    assert_eq!(mapped_data / cluster, in_use, "{name}: clusters in use");
    // Witness 2: the mapped copy checks clean and holds every file.
    let copy = dir.path().join("copy.img");
    mapped_copy(&disk, &usage, &copy);
    let copied = dir.path().join("copy-part.img");
    partition(&copy, p.start, p.len, &copied);
    run(Command::new("fsck.fat").args(["-n"]).arg(&copied));
    for (i, (path, data)) in files.iter().enumerate() {
        if i % 4 == 0 {
            continue;
        }
        let out = Command::new("mtype")
            .args(["-i", &copied.display().to_string(), &format!("::/{path}")])
            .env("MTOOLS_SKIP_CHECK", "1")
            .output()
            .unwrap();
        assert_eq!(
            &out.stdout, data,
            "{name}: {path} differs in the mapped copy"
        );
    }
}

#[test]
fn fat12() {
    fat_case(12, 2, "1");
}

#[test]
fn fat16() {
    fat_case(16, 32, "2");
}

#[test]
fn fat32() {
    fat_case(32, 64, "1");
}

#[test]
fn gpt_swap_and_unknown_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("gpt.img");
    fs::File::create(&disk).unwrap().set_len(64 * MIB).unwrap();
    run(Command::new("sgdisk")
        .args([
            "-n",
            "1:2048:+16M",
            "-t",
            "1:8200",
            "-n",
            "2:0:+16M",
            "-n",
            "3:0:0",
        ])
        .arg(&disk));
    let table = run(Command::new("sgdisk").arg("-p").arg(&disk));
    let starts: Vec<u64> = table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 3 && f[0].parse::<u32>().is_ok()).then(|| f[1].parse::<u64>().unwrap() * 512)
        })
        .collect();
    assert_eq!(starts.len(), 3, "{table}");
    // Swap in the first, noise in the second, nothing in the third.
    let swap = dir.path().join("swap.img");
    fs::File::create(&swap).unwrap().set_len(16 * MIB).unwrap();
    run(Command::new("mkswap").arg(&swap));
    let f = fs::OpenOptions::new().write(true).open(&disk).unwrap();
    f.write_all_at(&fs::read(&swap).unwrap(), starts[0])
        .unwrap();
    let noise: Vec<u8> = (0..MIB as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    f.write_all_at(&noise, starts[1]).unwrap();
    drop(f);
    let usage = map(&disk);
    let kinds: Vec<Filesystem> = usage.parts.iter().map(|p| p.filesystem).collect();
    assert_eq!(
        kinds,
        [Filesystem::Swap, Filesystem::Other, Filesystem::Other]
    );
    assert_eq!(usage.parts[0].used, 4096, "swap: its header page");
    assert_eq!(usage.parts[1].used, 16 * MIB, "unknown: all of it");
    // The backup GPT at the disk's end is in use; the mapped copy verifies clean.
    assert!(usage.touches(64 * MIB - 512, 64 * MIB));
    let copy = dir.path().join("copy.img");
    mapped_copy(&disk, &usage, &copy);
    let verify = run(Command::new("sgdisk").arg("-v").arg(&copy));
    assert!(verify.contains("No problems found"), "{verify}");
}

#[test]
fn an_os_like_image_maps_its_boot_and_root_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let files = tree(&root);
    let image = dir.path().join("os.img");
    make_os_image(&image, 200, 32, &root);
    let usage = map(&image);
    let kinds: Vec<Filesystem> = usage.parts.iter().map(|p| p.filesystem).collect();
    assert_eq!(kinds, [Filesystem::Fat(32), Filesystem::Ext], "{usage:?}");
    assert!(
        usage.used() < usage.size / 3,
        "{} of {}",
        usage.used(),
        usage.size
    );
    let copy = dir.path().join("copy.img");
    mapped_copy(&image, &usage, &copy);
    let p = &usage.parts[1];
    let copied = dir.path().join("root.img");
    partition(&copy, p.start, p.len, &copied);
    run(Command::new("e2fsck").args(["-fn"]).arg(&copied));
    for (path, data) in &files {
        let out = Command::new("debugfs")
            .args(["-R", &format!("cat /{path}")])
            .arg(&copied)
            .output()
            .unwrap();
        assert_eq!(&out.stdout, data, "{path}");
    }
}
