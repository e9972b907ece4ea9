//! `cardsmith read`: backups of loop devices this test creates (and always detaches), in
//! every output format, judged by the system's own tools: `zstd`/`xz`/`gzip -dc`, `cmp`,
//! `sha256sum -c`, `sfdisk --verify`. Needs root, which the README's test command has.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const OLD: u8 = 0xAA;
const DEMO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../os-list-sample/demo-systemd.img.xz"
);

/// A card: a file of `len` bytes of old data (0xAA) and a loop device over it.
struct Card {
    backing: PathBuf,
    dev: LoopDevice,
}

fn card(dir: &Path, name: &str, len: usize) -> Card {
    let backing = dir.join(name);
    filled_file(&backing, len, OLD);
    let dev = LoopDevice::attach(&backing);
    Card { backing, dev }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs `program args` with standard output into `dst`.
fn decompress(program: &str, src: &Path, dst: &Path) {
    let status = Command::new(program)
        .args(["-dc", s(src)])
        .stdout(File::create(dst).unwrap())
        .status()
        .unwrap_or_else(|e| panic!("{program} is needed: {e}"));
    assert!(status.success(), "{program} -dc {} failed", src.display());
}

/// `sha256sum -c FILE`, run in the file's folder as a user would.
fn sha256sum_check(sums: &Path) -> String {
    let out = Command::new("sha256sum")
        .args(["-c", sums.file_name().unwrap().to_str().unwrap()])
        .current_dir(sums.parent().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sha256sum -c {}: {}{}",
        sums.display(),
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// Partitions a file with sfdisk.
fn sfdisk(file: &Path, script: &str) {
    let mut child = Command::new("sfdisk")
        .args(["--quiet", s(file)])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sfdisk (fdisk package) is needed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "sfdisk failed");
}

/// The partitions sfdisk sees: (node, start sector, sectors, the rest of its JSON).
fn partitions(file: &Path) -> Vec<(String, u64, u64, Value)> {
    let out = tool("sfdisk", &["--json", s(file)]);
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    doc["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["node"].as_str().unwrap().to_owned(),
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
                p.clone(),
            )
        })
        .collect()
}

/// `sfdisk --verify`: clean, or the test fails with what it said. (It exits 0 and says "No
/// errors detected" even for a GPT it only read through its backup header; what it
/// corrected goes to standard error, which must stay empty.)
#[track_caller]
fn assert_sfdisk_clean(image: &Path) -> String {
    let out = tool("sfdisk", &["--verify", s(image)]);
    let said = stdout(&out);
    assert!(said.contains("No errors detected"), "{said}");
    assert_eq!(stderr(&out).trim(), "", "sfdisk --verify complained");
    said
}

/// Fills sectors [start, start+sectors) of `file` with image-like bytes.
fn fill(file: &Path, start: u64, sectors: u64, seed: u64) {
    let f = OpenOptions::new().write(true).open(file).unwrap();
    f.write_all_at(&image_bytes((sectors * 512) as usize, seed), start * 512)
        .unwrap();
    f.sync_all().unwrap();
}

/// `cmp` over the byte range of one partition in two files.
#[track_caller]
fn assert_same_range(a: &Path, b: &Path, start: u64, sectors: u64, what: &str) {
    let (offset, len) = (start * 512, sectors * 512);
    let out = Command::new("cmp")
        .args([
            "-n",
            &len.to_string(),
            "-i",
            &format!("{offset}:{offset}"),
            s(a),
            s(b),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what} differs: {}",
        stdout(&out) + &stderr(&out)
    );
}

fn result(out: &std::process::Output) -> Value {
    json_lines(out).pop().expect("a result line")
}

/// `cardsmith read DEV OUT --allocated-only --json`, which must succeed: its result.
fn read_allocated(dev: &LoopDevice, out_path: &Path) -> Value {
    let out = cardsmith(&["read", dev.arg(), s(out_path), "--allocated-only", "--json"]);
    assert_ok(&out);
    result(&out)
}

#[test]
fn every_format_round_trips_through_the_system_tools() {
    let dir = tempfile::tempdir().unwrap();
    let a = card(dir.path(), "a.card", 64 * MIB);
    assert_ok(&cardsmith(&["write", DEMO, a.dev.arg(), "--yes"]));
    let backups = dir.path().join("backups");
    fs::create_dir(&backups).unwrap();
    for (name, tool_name) in [
        ("card.img", None),
        ("card.img.zst", Some("zstd")),
        ("card.img.xz", Some("xz")),
        ("card.img.gz", Some("gzip")),
    ] {
        let out_path = backups.join(name);
        // Every block: the whole card round-trips (the used-blocks default is tested on
        // its own below).
        let out = cardsmith(&["read", a.dev.arg(), s(&out_path), "--all-blocks", "--json"]);
        assert_ok(&out);
        let done = result(&out);
        assert_eq!(done["bytes"], 64 * MIB, "{name}");
        assert_eq!(done["bytes_read"], 64 * MIB, "{name}");
        assert_eq!(done["stored_bytes"], fs::metadata(&out_path).unwrap().len());
        // Decompressed by the system's tool into the name the .sha256 file gives.
        let plain = backups.join("card.img");
        if let Some(program) = tool_name {
            decompress(program, &out_path, &plain);
        }
        assert!(same_prefix(&plain, &a.backing, 64 * MIB as u64), "{name}");
        assert_eq!(fs::metadata(&plain).unwrap().len(), 64 * MIB as u64);
        let checked = sha256sum_check(&backups.join(format!("{name}.sha256")));
        assert_eq!(checked.trim(), "card.img: OK", "{name}");
        assert_eq!(done["sha256"], sha256sum(&a.backing), "{name}");
        // A card checked against its backup, compressed or not.
        assert_ok(&cardsmith(&["verify", s(&out_path), a.dev.arg()]));
        if tool_name.is_some() {
            fs::remove_file(&plain).unwrap();
        }
    }
    // xz backups are multi-block (so they decode in parallel): 64 MiB makes 3 blocks.
    let listing = stdout(&tool(
        "xz",
        &["--robot", "-l", s(&backups.join("card.img.xz"))],
    ));
    let blocks: u64 = listing
        .lines()
        .find(|l| l.starts_with("totals"))
        .and_then(|l| l.split('\t').nth(2))
        .unwrap()
        .parse()
        .unwrap();
    assert!(blocks >= 3, "{listing}");

    // Restoring is an ordinary write, checked against the backup's .sha256, and gives back
    // the card byte for byte.
    let b = card(dir.path(), "b.card", 64 * MIB);
    let out = cardsmith(&[
        "write",
        s(&backups.join("card.img.zst")),
        b.dev.arg(),
        "--yes",
    ]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains(&format!(
            "Checking the image against {}",
            backups.join("card.img.zst.sha256").display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(same_prefix(&a.backing, &b.backing, 64 * MIB as u64));

    // A backup damaged since (one byte, deep inside) is caught before the card can boot.
    let damaged = backups.join("damaged.img");
    decompress("zstd", &backups.join("card.img.zst"), &damaged);
    let line = fs::read_to_string(backups.join("card.img.zst.sha256")).unwrap();
    write_file(
        &backups.join("damaged.img.sha256"),
        line.replace("card.img", "damaged.img").as_bytes(),
    );
    poke(&damaged, 40 * MIB as u64, 0x5A);
    let out = cardsmith(&["write", s(&damaged), b.dev.arg(), "--yes"]);
    assert_fails(&out, 4, &["SHA-256 mismatch"]);
    assert!(
        read_range(&b.backing, 0, MIB).iter().all(|&x| x == 0),
        "the restored card does not boot"
    );
}

#[test]
fn allocated_only_mbr_with_logical_partitions_restores_onto_a_smaller_card() {
    let dir = tempfile::tempdir().unwrap();
    let a = card(dir.path(), "a.card", 64 * MIB);
    // A primary FAT partition, and an extended partition over the rest of the card with two
    // logical partitions in its first half: the extended one must be cut down in the image.
    sfdisk(
        &a.backing,
        "label: dos\nstart=2048, size=16384, type=c\nstart=20480, type=5\n\
         start=22528, size=20480, type=83\nstart=45056, size=16384, type=83\n",
    );
    let parts = partitions(&a.backing);
    for (i, (_, start, sectors, p)) in parts.iter().enumerate() {
        if p["type"] != "5" {
            fill(&a.backing, *start, *sectors, 100 + i as u64);
        }
    }
    let end = 45056 + 16384;
    let out_path = dir.path().join("small.img");
    let done = read_allocated(&a.dev, &out_path);
    assert_eq!(done["table"], "MBR");
    assert_eq!(done["partitions_end"], end * 512);
    assert_eq!(done["bytes"], end * 512);
    assert_eq!(fs::metadata(&out_path).unwrap().len(), end * 512);
    assert_sfdisk_clean(&out_path);
    let image_parts = partitions(&out_path);
    assert_eq!(image_parts.len(), 4, "{image_parts:?}");
    assert_eq!(
        (image_parts[1].1, image_parts[1].2),
        (20480, end - 20480),
        "the extended partition ends with its last logical one"
    );

    // Onto a card smaller than the original: every partition arrives.
    let b = card(dir.path(), "b.card", 40 * MIB);
    assert_ok(&cardsmith(&["write", s(&out_path), b.dev.arg(), "--yes"]));
    for (node, start, sectors, p) in &parts {
        if p["type"] != "5" {
            assert_same_range(&a.backing, &b.backing, *start, *sectors, node);
        }
    }
    // B's table, read through its EBR chain, lists the same partitions (the extended one
    // cut down as in the image).
    let on_b = partitions(&b.backing);
    let layout = |v: &[(String, u64, u64, Value)]| {
        v.iter()
            .map(|p| {
                (
                    p.1,
                    (p.3["type"] != "5").then_some(p.2),
                    p.3["type"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(layout(&on_b), layout(&parts));
    assert_eq!((on_b[1].1, on_b[1].2), (20480, end - 20480));
}

#[test]
fn allocated_only_gpt_moves_the_backup_table_and_stays_valid() {
    let dir = tempfile::tempdir().unwrap();
    let a = card(dir.path(), "a.card", 64 * MIB);
    sfdisk(
        &a.backing,
        "label: gpt\nstart=2048, size=16384, type=U, name=\"EFI\"\n\
         start=18432, size=20480, type=L, name=\"root\"\nstart=40960, size=8192, type=L, name=\"data\"\n",
    );
    let parts = partitions(&a.backing);
    for (i, (_, start, sectors, _)) in parts.iter().enumerate() {
        fill(&a.backing, *start, *sectors, 200 + i as u64);
    }
    let last_lba = 40960 + 8192 - 1;
    let out_path = dir.path().join("small.img.zst");
    let done = read_allocated(&a.dev, &out_path);
    assert_eq!(done["table"], "GPT");
    assert_eq!(done["partitions_end"], (last_lba + 1) * 512);
    // The documented rounding: the last partition's end plus the backup table, 32 sectors
    // of 128 entries and 1 header sector.
    let expected = (last_lba + 1 + 33) * 512;
    assert_eq!(done["bytes"], expected);
    let plain = dir.path().join("small.img");
    decompress("zstd", &out_path, &plain);
    assert_eq!(fs::metadata(&plain).unwrap().len(), expected);
    sha256sum_check(&dir.path().join("small.img.zst.sha256"));
    let said = assert_sfdisk_clean(&plain);
    assert!(said.contains("Using 3 out of 128 partitions"), "{said}");
    // gdisk's own check, a second witness.
    let gdisk = stdout(&tool("sgdisk", &["--verify", s(&plain)]));
    assert!(gdisk.contains("No problems found"), "{gdisk}");
    let dump = stdout(&tool("sfdisk", &["--dump", s(&plain)]));
    assert!(dump.contains(&format!("last-lba: {last_lba}")), "{dump}");

    let b = card(dir.path(), "b.card", 48 * MIB);
    assert_ok(&cardsmith(&["write", s(&out_path), b.dev.arg(), "--yes"]));
    let on_b = partitions(&b.backing);
    assert_eq!(on_b.len(), parts.len());
    for ((node, start, sectors, p), (_, b_start, b_sectors, b_p)) in parts.iter().zip(&on_b) {
        assert_eq!((start, sectors), (b_start, b_sectors), "{node}");
        for key in ["type", "uuid", "name"] {
            assert_eq!(p[key], b_p[key], "{node} {key}");
        }
        assert_same_range(&a.backing, &b.backing, *start, *sectors, node);
    }
}

#[test]
fn allocated_only_needs_a_partition_table() {
    let dir = tempfile::tempdir().unwrap();
    let a = card(dir.path(), "a.card", 4 * MIB);
    let out_path = dir.path().join("x.img");
    let out = cardsmith(&["read", a.dev.arg(), s(&out_path), "--allocated-only"]);
    assert_fails(
        &out,
        1,
        &["needs a partition table", "without --allocated-only"],
    );
    assert_eq!(names(dir.path()), ["a.card"]);
}

#[test]
fn a_gpt_cut_short_is_refused_with_a_reason_not_a_crash() {
    // A protective MBR and the first 8 bytes of a GPT header, then the end of the file:
    // --allocated-only once indexed past the short read and panicked.
    let dir = tempfile::tempdir().unwrap();
    for len in [520usize, 600] {
        let mut data = vec![0u8; len];
        data[0x1BE + 4] = 0xEE;
        data[0x1BE + 8] = 1;
        data[510] = 0x55;
        data[511] = 0xAA;
        data[512..520].copy_from_slice(b"EFI PART");
        if len >= 528 {
            data[524..528].copy_from_slice(&92u32.to_le_bytes());
        }
        let file = dir.path().join(format!("short-{len}.img"));
        write_file(&file, &data);
        let out_path = dir.path().join(format!("backup-{len}.img"));
        let out = cardsmith(&["read", s(&file), s(&out_path), "--allocated-only"]);
        assert_fails(&out, 1, &["its GPT header at byte 512 is cut short"]);
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
        assert!(!out_path.exists());
    }
}

#[test]
fn an_existing_backup_is_replaced_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let a = card(dir.path(), "a.card", 4 * MIB);
    let out_path = dir.path().join("b.img.gz");
    write_file(&out_path, b"an older backup");
    let out = cardsmith(&["read", a.dev.arg(), s(&out_path)]);
    assert_fails(&out, 1, &["b.img.gz already exists", "--force"]);
    assert_eq!(fs::read(&out_path).unwrap(), b"an older backup");

    // A lone checksum file is not overwritten either.
    let other = dir.path().join("c.img");
    write_file(&dir.path().join("c.img.sha256"), b"keep me\n");
    let out = cardsmith(&["read", a.dev.arg(), s(&other)]);
    assert_fails(&out, 1, &["c.img.sha256 already exists"]);
    assert!(!other.exists());

    let out = cardsmith(&["read", a.dev.arg(), s(&out_path), "--force"]);
    assert_ok(&out);
    let plain = dir.path().join("b.img");
    decompress("gzip", &out_path, &plain);
    assert!(same_prefix(&plain, &a.backing, 4 * MIB as u64));
    assert_eq!(
        names(dir.path()),
        [
            "a.card",
            "b.img",
            "b.img.bmap",
            "b.img.gz",
            "b.img.gz.sha256",
            "c.img.sha256"
        ],
        "no temporary file is left"
    );
}

#[test]
fn a_full_disk_leaves_no_partial_file_and_the_old_backup_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let a = card(dir.path(), "a.card", 16 * MIB);
    // Incompressible contents: the compressed backup cannot fit either.
    let noise: Vec<u8> = {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        (0..16 * MIB)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    fs::write(&a.backing, &noise).unwrap();
    let small = SmallDisk::new(&dir.path().join("small"), "8m");

    // Raw: refused before anything is read, saying how much is needed.
    let out = cardsmith(&["read", a.dev.arg(), s(&small.point.join("b.img"))]);
    assert_fails(&out, 1, &["not enough space", "16.0 MiB"]);
    assert!(names(&small.point).is_empty());

    // Compressed: the disk fills up during the read.
    let old = small.point.join("b.img.zst");
    write_file(&old, b"an older backup");
    let out = cardsmith(&["read", a.dev.arg(), s(&old), "--force"]);
    assert_fails(&out, 1, &["is full", "Nothing was kept"]);
    assert_eq!(names(&small.point), ["b.img.zst"]);
    assert_eq!(fs::read(&old).unwrap(), b"an older backup");
}

/// Two processes that keep both cores busy until dropped: a machine under load.
struct CpuHog {
    children: Vec<std::process::Child>,
}

impl CpuHog {
    fn start() -> CpuHog {
        let children = (0..2)
            .map(|_| {
                let mut hog = Command::new("sh");
                hog.args(["-c", "while :; do :; done"]);
                // SAFETY: prctl is async-signal-safe; nothing else runs before exec. The
                // hog dies with the test, however the test ends.
                unsafe {
                    hog.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                hog.spawn().expect("sh")
            })
            .collect();
        CpuHog { children }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn ctrl_c_stops_the_read_within_a_second_in_every_format_under_load_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = card(dir.path(), "a.card", 256 * MIB);
    fs::write(&a.backing, image_bytes(256 * MIB, 7)).unwrap();
    let out_dir = dir.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let _hog = CpuHog::start();
    let mut took_all = Vec::new();
    // How long each runs before Ctrl-C: xz long enough to have blocks in flight; the fast
    // formats must still be running.
    for (name, after) in [
        ("b.img.xz", 400),
        ("b.img.zst", 50),
        ("b.img.gz", 200),
        ("b.img", 0),
    ] {
        let mut child = cardsmith_command()
            .args(["read", a.dev.arg(), s(&out_dir.join(name)), "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        lines.read_line(&mut first).unwrap();
        let event: Value = serde_json::from_str(&first).unwrap();
        assert_eq!(event["phase"], "read", "{first}");
        std::thread::sleep(Duration::from_millis(after));
        let (status, took) = interrupt(&mut child, Duration::from_secs(20));
        assert_eq!(status.code(), Some(130), "{name}");
        let rest: String = lines.lines().map_while(Result::ok).collect();
        assert!(rest.contains("\"left\":\"nothing_kept\""), "{name}: {rest}");
        assert!(names(&out_dir).is_empty(), "{name}: {:?}", names(&out_dir));
        eprintln!("{name}: Ctrl-C ended the backup in {took:?}");
        took_all.push((name, took));
    }
    for (name, took) in &took_all {
        assert!(
            *took < Duration::from_millis(1500),
            "{name}: Ctrl-C took {took:?} to end the backup (all: {took_all:?})"
        );
    }
}

/// A mounted filesystem, unmounted again when dropped.
struct Mounted {
    point: PathBuf,
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if is_mounted(&self.point) {
            let _ = Command::new("umount").arg(&self.point).status();
        }
    }
}

#[test]
fn a_mounted_card_is_read_with_a_warning_and_a_busy_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("ext4.card");
    ext4_file(&backing, 16 * MIB as u64, None);
    let dev = LoopDevice::attach(&backing);
    let point = dir.path().join("mnt");
    fs::create_dir(&point).unwrap();
    tool("mount", &["-t", "ext4", "-o", "ro", dev.arg(), s(&point)]);
    let mounted = Mounted { point };
    let out_path = dir.path().join("b.img");
    let out = cardsmith(&["read", dev.arg(), s(&out_path), "--json"]);
    assert_ok(&out);
    let events = json_lines(&out);
    let warning = events
        .iter()
        .find(|e| e["event"] == "warning")
        .expect("a warning");
    assert!(
        warning["warning"]
            .as_str()
            .unwrap()
            .contains("may change while it is read"),
        "{warning}"
    );
    assert!(
        is_mounted(&mounted.point),
        "nothing is unmounted for a read"
    );
    assert!(same_prefix(&out_path, &backing, 16 * MIB as u64));
    drop(mounted);

    // Held exclusively by another program (as a write in progress would): refused.
    let holder = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(&dev.path)
        .unwrap();
    let busy = dir.path().join("busy.img");
    let out = cardsmith(&["read", dev.arg(), s(&busy)]);
    assert_fails(&out, 1, &["busy", "nothing was read"]);
    assert!(!busy.exists());
    drop(holder);
}

#[test]
fn read_never_replaces_a_device_or_its_own_source() {
    let dir = tempfile::tempdir().unwrap();
    let a = card(dir.path(), "a.card", 4 * MIB);
    let b = card(dir.path(), "b.card", 4 * MIB);
    for force in [&[][..], &["--force"][..]] {
        let mut args = vec!["read", a.dev.arg(), b.dev.arg()];
        args.extend_from_slice(force);
        let out = cardsmith(&args);
        assert_fails(
            &out,
            1,
            &[&format!(
                "{} is a block device (a drive), not a backup file: a backup goes into a file",
                b.dev.arg()
            )],
        );
        assert!(!stderr(&out).contains("neither"), "{}", stderr(&out));
    }
    assert!(fs::read(&b.backing).unwrap().iter().all(|&x| x == OLD));
    let file = dir.path().join("image.bin");
    write_file(&file, &image_bytes(MIB, 4));
    let before = fs::read(&file).unwrap();
    let out = cardsmith(&["read", s(&file), s(&file), "--force"]);
    assert_fails(&out, 1, &["stored on"]);
    assert_eq!(
        fs::read(&file).unwrap(),
        before,
        "the source is not emptied"
    );
    let out = cardsmith(&["read", a.dev.arg(), s(&dir.path().join("x.img.bz2"))]);
    assert_fails(&out, 1, &["does not write .bz2 backups"]);
}

#[test]
fn a_backup_is_private_and_belongs_to_the_user_behind_sudo() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let a = card(dir.path(), "a.card", 4 * MIB);
    let owned = |p: &Path| {
        let m = fs::metadata(p).unwrap();
        (m.mode() & 0o777, m.uid(), m.gid())
    };
    let out_path = dir.path().join("backup.img.zst");
    assert_ok(&cardsmith(&["read", a.dev.arg(), s(&out_path)]));
    // The card's /etc/shadow and Wi-Fi keys are in there: the owner's eyes only.
    assert_eq!(owned(&out_path), (0o600, 0, 0));
    let sums = dir.path().join("backup.img.zst.sha256");
    assert_eq!(owned(&sums).0 & 0o600, 0o600);

    let theirs = dir.path().join("theirs.img");
    let out = cardsmith_env(
        &["read", a.dev.arg(), s(&theirs)],
        &[
            ("SUDO_UID", Path::new("65534")),
            ("SUDO_GID", Path::new("65534")),
        ],
    );
    assert_ok(&out);
    assert_eq!(owned(&theirs), (0o600, 65534, 65534));
    assert_eq!(owned(&dir.path().join("theirs.img.sha256")).1, 65534);
}

#[test]
fn a_backup_reads_only_what_the_filesystems_use_and_restores_every_file() {
    let dir = tempfile::tempdir().unwrap();
    // An OS-like card about a quarter full, its free space holding old data (0xAA).
    let root = dir.path().join("root");
    let mut files = Vec::new();
    for i in 0..20u32 {
        let data: Vec<u8> = (0..(2_500_000 + i * 1000))
            .map(|j| (j * 29 + i) as u8)
            .collect();
        let name = format!("home/pi/file{i}.bin");
        fs::create_dir_all(root.join("home/pi")).unwrap();
        fs::write(root.join(&name), &data).unwrap();
        files.push((name, data));
    }
    let image = dir.path().join("os.img");
    make_os_image(&image, 64, 160, &root);
    let size = fs::metadata(&image).unwrap().len();
    let a = card(dir.path(), "a.card", size as usize);
    assert_ok(&cardsmith(&["write", s(&image), a.dev.arg(), "--yes"]));

    let backup = dir.path().join("backup.img.zst");
    let out = cardsmith(&["read", a.dev.arg(), s(&backup), "--json"]);
    assert_ok(&out);
    let done = result(&out);
    let read = done["bytes_read"].as_u64().unwrap();
    assert_eq!(done["bytes"], size);
    assert!(read < size / 2 && read > size / 8, "{done}");
    assert_eq!(done["bytes_skipped"], size - read);
    let bmap = dir.path().join("backup.img.bmap");
    assert_eq!(done["bmap_file"], s(&bmap));
    let said = stderr(&cardsmith(&[
        "read",
        a.dev.arg(),
        s(&dir.path().join("again.img.gz")),
    ]));
    assert!(
        said.contains("its filesystems use") && said.contains("unused, zeros in the image"),
        "{said}"
    );

    // The decompressed image checks against its .sha256 (zeros where nothing was used).
    let plain = dir.path().join("backup.img");
    decompress("zstd", &backup, &plain);
    let checked = sha256sum_check(&dir.path().join("backup.img.zst.sha256"));
    assert_eq!(checked.trim(), "backup.img: OK");
    let card_bytes = fs::read(&a.backing).unwrap();
    let backup_bytes = fs::read(&plain).unwrap();
    assert!(
        backup_bytes
            .iter()
            .zip(&card_bytes)
            .any(|(b, c)| *b == 0 && *c == OLD),
        "the old data in the free space was not read"
    );
    fs::remove_file(&plain).unwrap();

    // The card checks against its backup where its filesystems use it (by the map beside
    // the backup); compared byte for byte, its free space holds old data the backup has
    // as zeros.
    let checked = cardsmith(&["verify", s(&backup), a.dev.arg(), "--json"]);
    assert_ok(&checked);
    let done = result(&checked);
    assert_eq!(done["bytes_compared"], read, "{done}");
    let all = cardsmith(&["verify", s(&backup), a.dev.arg(), "--all-blocks"]);
    assert_fails(&all, 3, &["the content differs"]);

    // Restored onto another card by cardsmith, and by bmaptool with the map beside it.
    let b = card(dir.path(), "b.card", size as usize);
    assert_ok(&cardsmith(&["write", s(&backup), b.dev.arg(), "--yes"]));
    let copy = dir.path().join("bmaptool.img");
    run_ok(Command::new("bmaptool").arg("copy").arg(&backup).arg(&copy));
    for restored in [&b.backing, &copy] {
        let data = fs::read(restored).unwrap();
        let (at, len) = mbr_partition(&data, 1);
        let part = dir.path().join("root.part");
        fs::write(&part, &data[at as usize..(at + len) as usize]).unwrap();
        run_ok(Command::new("e2fsck").arg("-fn").arg(&part));
        for (name, content) in &files {
            let got = Command::new("debugfs")
                .args(["-R", &format!("cat /{name}")])
                .arg(&part)
                .output()
                .unwrap();
            assert!(got.stdout == *content, "{name} in {}", restored.display());
        }
    }

    // A raw backup keeps its unused space as holes.
    let raw = dir.path().join("raw.img");
    assert_ok(&cardsmith(&["read", a.dev.arg(), s(&raw)]));
    let meta = fs::metadata(&raw).unwrap();
    assert_eq!(meta.len(), size);
    use std::os::unix::fs::MetadataExt;
    assert!(
        meta.blocks() * 512 < size / 2,
        "{} bytes allocated",
        meta.blocks() * 512
    );
}
