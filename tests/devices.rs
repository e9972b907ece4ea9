//! Writing to and verifying real block devices: loop devices this test creates over files
//! it made, and always detaches. Needs root, which the README's test command has.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const IMAGE_LEN: usize = 9 * MIB + 1234;
const OLD: u8 = 0xAA;

struct Card {
    dir: tempfile::TempDir,
    backing: std::path::PathBuf,
    dev: LoopDevice,
    len: usize,
}

/// A "card" of `len` bytes full of old data (0xAA), as a loop device.
fn card(len: usize) -> Card {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("card.bin");
    filled_file(&backing, len, OLD);
    let dev = LoopDevice::attach(&backing);
    Card {
        dir,
        backing,
        dev,
        len,
    }
}

impl Card {
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn image(&self, seed: u64) -> std::path::PathBuf {
        let raw = self.path("disk.img");
        write_file(&raw, &image_bytes(IMAGE_LEN, seed));
        raw
    }

    /// The card's bytes, read from the backing file rather than through cardsmith.
    fn bytes(&self, offset: u64, len: usize) -> Vec<u8> {
        read_range(&self.backing, offset, len)
    }

    fn refill(&self) {
        let f = OpenOptions::new().write(true).open(&self.backing).unwrap();
        f.write_all_at(&vec![OLD; self.len], 0).unwrap();
        f.sync_all().unwrap();
    }

    #[track_caller]
    fn assert_first_mib_zeroed(&self) {
        assert!(
            self.bytes(0, MIB).iter().all(|&b| b == 0),
            "the first MiB still holds data"
        );
    }

    #[track_caller]
    fn assert_untouched(&self) {
        let data = fs::read(&self.backing).unwrap();
        assert!(data.iter().all(|&b| b == OLD), "the card was written to");
    }
}

#[test]
fn writes_each_format_to_a_device_and_leaves_the_rest_alone() {
    let card = card(32 * MIB);
    let raw = card.image(11);
    for (format, image) in every_format(card.dir.path(), &raw) {
        card.refill();
        let out = cardsmith(&[
            "write",
            image.to_str().unwrap(),
            card.dev.arg(),
            "--yes",
            "--json",
        ]);
        assert_ok(&out);
        let result = json_lines(&out).pop().unwrap();
        assert_eq!(result["verified"], true, "{format}");
        assert_eq!(result["verify_bypassed_cache"], true, "{format}");
        assert!(
            same_prefix(&raw, &card.dev.path, IMAGE_LEN as u64),
            "{format}: device differs"
        );
        assert!(
            same_prefix(&raw, &card.backing, IMAGE_LEN as u64),
            "{format}: backing differs"
        );
        // Between the image and the last MiB the old data stays; the last MiB is zeroed so no
        // stale backup GPT survives.
        let between = card.bytes(IMAGE_LEN as u64, card.len - MIB - IMAGE_LEN);
        assert!(
            between.iter().all(|&b| b == OLD),
            "{format}: wrote past the image"
        );
        let last = card.bytes((card.len - MIB) as u64, MIB);
        assert!(
            last.iter().all(|&b| b == 0),
            "{format}: last MiB not zeroed"
        );

        let out = cardsmith(&["verify", image.to_str().unwrap(), card.dev.arg()]);
        assert_ok(&out);
    }
}

/// Builds a small Raspberry-Pi-like image with real tools: an MBR, a FAT32 boot partition
/// holding cmdline.txt, and an ext4 root partition.
fn os_image(dir: &Path) -> (std::path::PathBuf, u64) {
    const BOOT_START: u64 = 2048 * 512;
    const BOOT_SECTORS: u64 = 64 * 2048;
    const ROOT_SECTORS: u64 = 16 * 2048;
    let img = dir.join("os.img");
    let total = BOOT_START + (BOOT_SECTORS + ROOT_SECTORS) * 512;
    File::create(&img).unwrap().set_len(total).unwrap();
    let layout = format!(
        "label: dos\nstart=2048, size={BOOT_SECTORS}, type=c\nstart={}, size={ROOT_SECTORS}, type=83\n",
        2048 + BOOT_SECTORS
    );
    let mut sfdisk = Command::new("sfdisk")
        .args(["--quiet", img.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sfdisk (fdisk package) is needed");
    sfdisk
        .stdin
        .take()
        .unwrap()
        .write_all(layout.as_bytes())
        .unwrap();
    assert!(sfdisk.wait().unwrap().success());
    let boot = dir.join("boot.part");
    File::create(&boot)
        .unwrap()
        .set_len(BOOT_SECTORS * 512)
        .unwrap();
    tool(
        "mkfs.vfat",
        &["-F", "32", "-n", "bootfs", boot.to_str().unwrap()],
    );
    let cmdline = dir.join("cmdline.txt");
    write_file(
        &cmdline,
        b"console=serial0,115200 root=PARTUUID=abcd-02 rootwait\n",
    );
    tool(
        "mcopy",
        &[
            "-i",
            boot.to_str().unwrap(),
            cmdline.to_str().unwrap(),
            "::cmdline.txt",
        ],
    );
    let root = dir.join("root.part");
    File::create(&root)
        .unwrap()
        .set_len(ROOT_SECTORS * 512)
        .unwrap();
    tool(
        "mkfs.ext4",
        &["-q", "-F", "-L", "rootfs", root.to_str().unwrap()],
    );
    let image = OpenOptions::new().write(true).open(&img).unwrap();
    image
        .write_all_at(&fs::read(&boot).unwrap(), BOOT_START)
        .unwrap();
    image
        .write_all_at(&fs::read(&root).unwrap(), BOOT_START + BOOT_SECTORS * 512)
        .unwrap();
    (img, BOOT_START)
}

#[test]
fn a_written_os_image_passes_fsck_and_mtools() {
    let card = card(128 * MIB);
    let (img, boot_offset) = os_image(card.dir.path());
    let xz = card.path("os.img.xz");
    compress("xz", &["-T2", "-c"], &img, &xz);
    assert_ok(&cardsmith(&[
        "write",
        xz.to_str().unwrap(),
        card.dev.arg(),
        "--yes",
    ]));

    let dump = tool("sfdisk", &["--dump", card.dev.arg()]);
    assert!(stdout(&dump).contains("type=c"), "{}", stdout(&dump));
    let boot = LoopDevice::attach_with_offset(&card.dev.path, boot_offset, 64 * MIB as u64);
    tool("fsck.fat", &["-n", boot.arg()]);
    let cmdline = tool("mtype", &["-i", boot.arg(), "::cmdline.txt"]);
    assert!(stdout(&cmdline).contains("rootwait"));
    let root = LoopDevice::attach_with_offset(
        &card.dev.path,
        boot_offset + 64 * MIB as u64,
        16 * MIB as u64,
    );
    tool("e2fsck", &["-n", "-f", root.arg()]);
}

#[test]
fn image_larger_than_the_card_is_refused_before_writing() {
    let card = card(8 * MIB);
    let raw = card.image(12);
    let out = cardsmith(&["write", raw.to_str().unwrap(), card.dev.arg(), "--yes"]);
    assert_fails(
        &out,
        1,
        &[
            "does not fit",
            &format!("{IMAGE_LEN} bytes"),
            &format!("{} bytes", 8 * MIB),
        ],
    );
    card.assert_untouched();

    // bzip2 records no size: the write stops at the card's end, unbootable.
    let bz2 = card.path("disk.img.bz2");
    compress("bzip2", &["-c"], &raw, &bz2);
    let out = cardsmith(&["write", bz2.to_str().unwrap(), card.dev.arg(), "--yes"]);
    assert_fails(&out, 1, &["does not fit"]);
    card.assert_first_mib_zeroed();
}

#[test]
fn checksum_mismatch_leaves_the_card_unbootable() {
    let card = card(16 * MIB);
    let raw = card.image(13);
    let xz = card.path("disk.img.xz");
    compress("xz", &["-c"], &raw, &xz);
    let out = cardsmith(&[
        "write",
        xz.to_str().unwrap(),
        card.dev.arg(),
        "--yes",
        "--sha256",
        &"0".repeat(64),
    ]);
    assert_fails(&out, 4, &["SHA-256 mismatch"]);
    card.assert_first_mib_zeroed();
}

#[test]
fn corrupt_or_truncated_images_leave_the_first_mib_zeroed() {
    let card = card(16 * MIB);
    let raw = card.image(14);
    for (format, image) in every_format(card.dir.path(), &raw).into_iter().skip(1) {
        let data = fs::read(&image).unwrap();
        let mut corrupt = data.clone();
        let at = data.len() * 3 / 4;
        for b in &mut corrupt[at..at + 64] {
            *b = !*b;
        }
        // A zip cut short loses its directory and is refused before writing; cut the others.
        let truncated = if format == "zip" {
            None
        } else {
            Some(data[..at].to_vec())
        };
        for (damage, bytes) in [("corrupt", Some(corrupt)), ("truncated", truncated)] {
            let Some(bytes) = bytes else { continue };
            card.refill();
            let bad = card.path(&format!("{damage}-{format}"));
            write_file(&bad, &bytes);
            let out = cardsmith(&["write", bad.to_str().unwrap(), card.dev.arg(), "--yes"]);
            assert_fails(&out, 1, &[format, "compressed byte"]);
            card.assert_first_mib_zeroed();
        }
    }
}

#[test]
fn read_only_busy_and_unprivileged_targets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.img");
    write_file(&raw, &image_bytes(MIB, 15));

    let ro = card(4 * MIB);
    let ro_dev = LoopDevice::attach_read_only(&ro.backing);
    let out = cardsmith(&["write", raw.to_str().unwrap(), ro_dev.arg(), "--yes"]);
    assert_fails(&out, 1, &["read-only", "write-protected"]);
    ro.assert_untouched();

    let busy = card(4 * MIB);
    let holder = OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_excl())
        .open(&busy.dev.path)
        .unwrap();
    let out = cardsmith(&["write", raw.to_str().unwrap(), busy.dev.arg(), "--yes"]);
    assert_fails(&out, 1, &["busy", "holds it open exclusively"]);
    drop(holder);
    busy.assert_untouched();

    // An ordinary user cannot open the disk, and without UDisks2 is told how to proceed.
    let out = cardsmith_as_nobody(&["write", raw.to_str().unwrap(), busy.dev.arg(), "--yes"]);
    assert_fails(
        &out,
        1,
        &[
            "as a normal user needs UDisks2",
            "Run cardsmith as root",
            "apt install udisks2",
        ],
    );
    let out = cardsmith_as_nobody(&["verify", raw.to_str().unwrap(), busy.dev.arg()]);
    assert_fails(&out, 1, &["permission denied", "reading a disk needs root"]);
    busy.assert_untouched();
}

fn libc_o_excl() -> i32 {
    0o200 // O_EXCL on Linux
}

#[test]
fn image_stored_on_the_card_is_refused() {
    let card = card(8 * MIB);
    let out = cardsmith(&[
        "write",
        card.backing.to_str().unwrap(),
        card.dev.arg(),
        "--yes",
    ]);
    assert_fails(&out, 1, &["stored on"]);
    let out = cardsmith(&["write", card.dev.arg(), card.dev.arg(), "--yes"]);
    assert_fails(&out, 1, &["stored on"]);
    card.assert_untouched();
}

#[test]
fn verify_reads_the_card_not_the_page_cache() {
    let card = card(16 * MIB);
    let raw = card.image(16);
    assert_ok(&cardsmith(&[
        "write",
        raw.to_str().unwrap(),
        card.dev.arg(),
        "--yes",
        "--no-verify",
    ]));

    // Linux drops a block device's cache when its last handle closes: keep one open, and
    // fill the cache with the good data.
    let mut handle = File::open(&card.dev.path).unwrap();
    let mut cached = vec![0; IMAGE_LEN];
    handle.read_exact(&mut cached).unwrap();

    let offset = 6 * MIB as u64 + 4321;
    let good = cached[offset as usize];
    poke(&card.backing, offset, !good);

    // The cache still answers with the good byte...
    let mut through_cache = [0u8; 1];
    handle.read_exact_at(&mut through_cache, offset).unwrap();
    assert_eq!(
        through_cache[0], good,
        "the cache did not hold the old data; test is void"
    );
    // ...but the card holds the bad one, and verify must see it.
    let out = cardsmith(&["verify", raw.to_str().unwrap(), card.dev.arg()]);
    assert_fails(&out, 3, &[&format!("byte {offset}")]);
    drop(handle);
}

#[test]
fn ctrl_c_stops_quickly_and_leaves_the_card_unbootable() {
    let card = card(64 * MIB);
    let mut child = cardsmith_command()
        .args(["write", "-", card.dev.arg(), "--yes", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A source that delivers 16 MiB and then stalls, like a download that hangs.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&image_bytes(16 * MIB, 17)).unwrap();
    // Writing has begun once the first progress event arrives; then the source stalls.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let event: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(event["phase"], "write", "{first}");
    std::thread::sleep(Duration::from_millis(500));
    let (status, took) = interrupt(&mut child, Duration::from_secs(5));
    drop(stdin);
    assert_eq!(status.code(), Some(130));
    assert!(took < Duration::from_secs(2), "stopping took {took:?}");
    card.assert_first_mib_zeroed();
    // The last word says what became of the card.
    let result: serde_json::Value = stdout
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .find(|v: &serde_json::Value| v["event"] == "result")
        .expect("a result line");
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["left"], "zeroed", "{result}");
    assert!(
        result["left_text"]
            .as_str()
            .unwrap()
            .starts_with("The card was left with its first MiB zeroed"),
        "{result}"
    );
}

#[test]
fn confirmation_on_a_terminal_names_the_card_and_takes_no_for_an_answer() {
    let card = card(16 * MIB);
    let raw = card.image(18);
    let command = format!("{} write {} {}", bin(), raw.display(), card.dev.arg());
    let answer = |text: &str| {
        let mut script = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("script (bsdutils) is needed");
        script
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        script.wait_with_output().unwrap()
    };
    let out = answer("no\n");
    let screen = stdout(&out);
    assert!(
        screen.contains(card.dev.arg()) && screen.contains("(16.8 MB, loop device over"),
        "{screen}"
    );
    assert!(screen.contains("nothing was written"), "{screen}");
    card.assert_untouched();

    let out = answer("yes\n");
    assert!(stdout(&out).contains("verified"), "{}", stdout(&out));
    assert!(same_prefix(&raw, &card.backing, IMAGE_LEN as u64));
}
