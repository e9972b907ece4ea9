//! Many cards at once: one decode fanned out to several cards, each verified and given its
//! own host name; a card that fails is left unbootable and the others carry on; one that
//! must not be written refuses the run; Ctrl-C leaves every card unbootable. The cards are
//! loop devices this test makes, and emulated cards (nbdkit with its error and rate
//! filters, through nbdfuse) that really fail or really are slow.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::emulated::EmulatedCard;
use common::*;
use serde_json::Value;

/// An OS-like image: a 40 MiB FAT32 boot partition and a 48 MiB ext4 root holding
/// `random_mib` of incompressible data and the programs `inspect` looks for in a
/// Bookworm-style Raspberry Pi OS (so it takes first-boot settings through firstrun.sh).
fn os_image(dir: &Path, random_mib: usize) -> PathBuf {
    let root = dir.join("root");
    for (path, text) in [
        ("etc/hostname", "raspberrypi\n"),
        (
            "etc/os-release",
            "PRETTY_NAME=\"cardsmith test\"\nVERSION_CODENAME=bookworm\nID=debian\n",
        ),
        (
            "etc/fstab",
            "PARTUUID=5eed5eed-01 /boot/firmware vfat defaults 0 2\n",
        ),
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n",
        ),
        ("usr/lib/systemd/systemd", "#!/bin/sh\nexit 1\n"),
        ("usr/sbin/sshd", "#!/bin/sh\nexit 1\n"),
        (
            "usr/lib/raspberrypi-sys-mods/imager_custom",
            "#!/bin/sh\nexit 1\n",
        ),
        ("usr/lib/userconf-pi/userconf", "#!/bin/sh\nexit 1\n"),
    ] {
        let file = root.join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, text).unwrap();
    }
    fs::create_dir_all(root.join("home/pi")).unwrap();
    write_file(
        &root.join("home/pi/data.bin"),
        &image_bytes(random_mib * MIB, 7),
    );
    let image = dir.join("os.img");
    make_os_image(&image, 40, 48, &root);
    image
}

/// The boot partition of the image: (start, length) in bytes.
fn boot_partition(image: &Path) -> (u64, u64) {
    mbr_partition(&read_range(image, 0, 512), 0)
}

/// `cardsmith …` with presets in `config`, its JSON lines read as they come: `watch` sees
/// each one (and may act on it) before the next is read. Returns the lines and the exit
/// code.
fn run_watching(
    args: &[&str],
    config: &Path,
    stdin: Option<&Path>,
    watch: &mut dyn FnMut(&Value),
) -> (Vec<Value>, i32) {
    let mut command = cardsmith_command();
    command
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env("XDG_CACHE_HOME", config.join("cache"))
        .stderr(Stdio::piped());
    match stdin {
        Some(path) => command.stdin(fs::File::open(path).unwrap()),
        None => command.stdin(Stdio::null()),
    };
    let mut run = JsonRun::start(&mut command);
    while let Some(line) = run.next() {
        watch(&line);
    }
    let (code, lines) = run.finish();
    (lines, code.unwrap_or(-1))
}

fn result(lines: &[Value]) -> &Value {
    let last = lines.last().expect("a result line");
    assert_eq!(last["event"], "result", "{last}");
    last
}

fn mtype(card: &Path, offset: u64, file: &str) -> String {
    let image = format!("{}@@{offset}", card.display());
    let out = tool("mtype", &["-i", &image, &format!("::/{file}")]);
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `cardsmith ARGS` (with `--json`), reads its lines until `now` says so, presses
/// Ctrl-C and reads the rest: its exit code and every line.
fn interrupt_when(args: &[&str], now: impl Fn(&Value) -> bool) -> (Option<i32>, Vec<Value>) {
    let mut run = JsonRun::start(
        cardsmith_command()
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::piped()),
    );
    run.until(now);
    let (status, took) = run.interrupt(std::time::Duration::from_secs(20));
    eprintln!("stopped {took:?} after Ctrl-C");
    let (_, lines) = run.finish();
    (status.code(), lines)
}

#[test]
fn four_cards_one_too_small_one_dying_two_written_with_their_own_names() {
    let dir = tempfile::tempdir().unwrap();
    let image = os_image(dir.path(), 24);
    let len = fs::metadata(&image).unwrap().len();
    let xz = dir.path().join("os.img.xz");
    compress("xz", &["-T2", "-1"], &image, &xz);
    let config = dir.path().join("config");
    let saved = cardsmith_env(
        &["preset", "save", "cluster", "--hostname", "node{n:02}"],
        &[("XDG_CONFIG_HOME", &config)],
    );
    assert_ok(&saved);

    // The good cards start empty, so that all of each (the blocks the image does not use
    // are not written) can be compared with the image; the others hold old contents, so
    // that zeros there are cardsmith's doing.
    let good: Vec<(PathBuf, LoopDevice)> = (0..2)
        .map(|n| {
            let file = dir.path().join(format!("good{n}.raw"));
            filled_file(&file, 96 * MIB, 0);
            let dev = LoopDevice::attach(&file);
            (file, dev)
        })
        .collect();
    let small_file = dir.path().join("small.raw");
    filled_file(&small_file, 48 * MIB, 0xAA);
    let small = LoopDevice::attach(&small_file);
    // About 5 MB/s: slow enough that it dies in the middle of its write.
    let dying = EmulatedCard::start(96 << 20, 0xAA, Some("40M"));

    // From standard input the image's size is not known beforehand: the small card is
    // found too small on the way, not refused.
    let args = [
        "write",
        "-",
        good[0].1.arg(),
        good[1].1.arg(),
        small.arg(),
        dying.arg(),
        "--preset",
        "cluster",
        "--yes",
        "--json",
    ];
    let mut failed_at = None;
    let (lines, code) = run_watching(&args, &config, Some(&xz), &mut |line| {
        let card_done = line["target"] == dying.arg() && line["event"] == "progress";
        if failed_at.is_none() && card_done && line["bytes_done"].as_u64().unwrap() >= 45 << 20 {
            dying.fail_writes(true);
            failed_at = line["bytes_done"].as_u64();
        }
    });
    let failed_at = failed_at.expect("the dying card reported its progress");
    assert!(
        failed_at < len,
        "it died mid-write, at {failed_at} of {len}"
    );
    assert_eq!(code, 5, "some cards failed: exit code 5");
    let result = result(&lines);
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(
        (result["succeeded"].as_u64(), result["failed"].as_u64()),
        (Some(2), Some(2))
    );
    let cards = result["cards"].as_array().unwrap();
    let (boot, boot_len) = boot_partition(&image);
    for (n, (file, dev)) in good.iter().enumerate() {
        let card = &cards[n];
        assert_eq!(card["target"], dev.arg());
        assert_eq!(card["result"], "written", "{card}");
        assert_eq!(card["hostname"], format!("node{:02}", n + 1));
        assert_eq!(card["report"]["verified"], true);
        // The image outside the boot partition, byte for byte.
        assert_eq!(
            read_range(file, 0, boot as usize),
            read_range(&image, 0, boot as usize)
        );
        let rest = (len - boot - boot_len) as usize;
        assert!(
            read_range(file, boot + boot_len, rest) == read_range(&image, boot + boot_len, rest),
            "card {n} differs from the image outside its boot partition"
        );
        let root = LoopDevice::attach_with_offset(file, boot + boot_len, len - boot - boot_len);
        tool("e2fsck", &["-fn", root.arg()]);
        // Its own host name, read back from the card by mtools.
        let script = mtype(&dev.path, boot, "firstrun.sh");
        assert!(
            script.contains(&format!("set_hostname 'node{:02}'", n + 1)),
            "card {n}: {script}"
        );
    }
    // The small card and the dying one: failed, each for its own reason, and zeroed.
    for (card, reason, backing) in [
        (&cards[2], "does not fit", small_file.clone()),
        (&cards[3], "Input/output error", dying.backing()),
    ] {
        assert_eq!(card["result"], "failed", "{card}");
        assert!(card["error"].as_str().unwrap().contains(reason), "{card}");
        assert_eq!(card["left"], "zeroed", "{card}");
        assert!(
            read_range(&backing, 0, MIB).iter().all(|&b| b == 0),
            "{} does not start with a zeroed MiB",
            backing.display()
        );
    }
    // Each card's events say which card they are about.
    for dev in [good[0].1.arg(), good[1].1.arg(), small.arg(), dying.arg()] {
        assert!(
            lines
                .iter()
                .any(|l| l["event"] == "progress" && l["target"] == dev),
            "no progress for {dev}"
        );
    }
    // Two cards were done: the preset's next card is number 3.
    let shown = cardsmith_env(
        &["preset", "show", "cluster"],
        &[("XDG_CONFIG_HOME", &config)],
    );
    assert!(
        stdout(&shown).contains("node{n:02} (next number 3)"),
        "{}",
        stdout(&shown)
    );
}

/// A loop device this test made, handed to the user nobody (so that a cardsmith run as
/// nobody may write it and no other disk); given back to root when dropped.
struct NobodysCard {
    dev: LoopDevice,
    file: PathBuf,
}

impl NobodysCard {
    fn new(dir: &Path, name: &str) -> NobodysCard {
        let file = dir.join(name);
        filled_file(&file, 16 * MIB, 0xAA);
        let dev = LoopDevice::attach(&file);
        tool("chown", &["65534", dev.arg()]);
        NobodysCard { dev, file }
    }
}

impl Drop for NobodysCard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chown")
            .args(["0", self.dev.arg()])
            .status();
    }
}

#[test]
fn the_root_drive_among_the_targets_refuses_the_whole_run() {
    // The root disk comes from util-linux, not from cardsmith. cardsmith runs as nobody,
    // whom the kernel does not let write it anyway: a cardsmith that lost track of the
    // root drive fails here, and cannot harm it.
    let witnessed = root_disks_witnessed();
    let Some(disk) = witnessed.first() else {
        eprintln!("findmnt says / is on no block device here (an overlay?): no root disk");
        return;
    };
    let root = format!("/dev/{disk}");
    let dir = tempfile::tempdir().unwrap();
    let image = world_readable_image(dir.path(), 8 * MIB);
    let a = NobodysCard::new(dir.path(), "a.raw");
    let b = NobodysCard::new(dir.path(), "b.raw");
    let img = image.to_str().unwrap();

    let out = cardsmith_as_nobody(&["write", img, a.dev.arg(), &root, b.dev.arg(), "--yes"]);
    assert_fails(
        &out,
        1,
        &[
            &root,
            "running system",
            "Nothing was written to any of the 3 cards",
        ],
    );
    for card in [&a, &b] {
        assert!(
            read_range(&card.file, 0, 16 * MIB)
                .iter()
                .all(|&x| x == 0xAA),
            "{} was written to",
            card.dev.arg()
        );
    }

    // Asked to, it leaves the root drive out and writes the others.
    let out = cardsmith_as_nobody(&[
        "write",
        img,
        a.dev.arg(),
        &root,
        b.dev.arg(),
        "--yes",
        "--skip-refused",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let lines = json_lines(&out);
    let result = result(&lines);
    let cards = result["cards"].as_array().unwrap();
    assert_eq!(cards[1]["target"], root.as_str());
    assert_eq!(cards[1]["result"], "refused", "{result}");
    assert_eq!(cards[1]["left"], "untouched", "{result}");
    for (n, card) in [(0, &a), (2, &b)] {
        assert_eq!(cards[n]["result"], "written", "{result}");
        assert!(same_prefix(&card.file, &image, 8 * MIB as u64));
    }
}

#[test]
fn ctrl_c_during_a_fan_out_leaves_every_card_unbootable() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("os.img");
    write_file(&image, &image_bytes(48 * MIB, 3));
    let files: Vec<PathBuf> = (0..2)
        .map(|n| {
            let file = dir.path().join(format!("card{n}.raw"));
            filled_file(&file, 64 * MIB, 0xAA);
            file
        })
        .collect();
    let loops: Vec<LoopDevice> = files.iter().map(|f| LoopDevice::attach(f)).collect();
    // A slow card sets the pace of all of them, so Ctrl-C comes in the middle.
    let slow = EmulatedCard::start(64 << 20, 0xAA, Some("40M"));
    let args = [
        "write",
        image.to_str().unwrap(),
        loops[0].arg(),
        slow.arg(),
        loops[1].arg(),
        "--yes",
        "--json",
    ];
    let (status, lines) = interrupt_when(&args, |line| {
        line["event"] == "progress"
            && line["target"] == slow.arg()
            && line["bytes_done"].as_u64() >= Some(12 << 20)
    });
    assert_eq!(status, Some(130), "cancelled: exit code 130");
    let result = result(&lines);
    assert_eq!(result["ok"], false);
    assert_eq!(result["left"], "zeroed", "{result}");
    for backing in [files[0].clone(), files[1].clone(), slow.backing()] {
        let start = read_range(&backing, 0, MIB);
        assert!(
            start.iter().all(|&b| b == 0),
            "{} does not start with a zeroed MiB",
            backing.display()
        );
        // Written to past its start: the write was under way on every card.
        assert_eq!(
            read_range(&backing, 4 * MIB as u64, 4096),
            read_range(&image, 4 * MIB as u64, 4096),
            "{}",
            backing.display()
        );
    }
}

#[test]
fn erase_and_customize_take_several_cards_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (0..2)
        .map(|n| {
            let file = dir.path().join(format!("card{n}.raw"));
            filled_file(&file, 128 * MIB, 0xAA);
            file
        })
        .collect();
    let loops: Vec<LoopDevice> = files.iter().map(|f| LoopDevice::attach(f)).collect();
    let out = cardsmith(&["erase", loops[0].arg(), loops[1].arg(), "--yes", "--json"]);
    assert_ok(&out);
    let lines = json_lines(&out);
    let result = result(&lines);
    assert_eq!(
        (result["verb"].as_str(), result["succeeded"].as_u64()),
        (Some("erase"), Some(2))
    );
    for file in &files {
        let (start, len) = mbr_partition(&read_range(file, 0, 512), 0);
        let part = LoopDevice::attach_with_offset(file, start, len);
        tool("fsck.fat", &["-n", part.arg()]);
    }

    // Two written image files get their own host names, numbered from 5.
    let image = os_image(dir.path(), 1);
    let copies: Vec<PathBuf> = (0..2)
        .map(|n| {
            let copy = dir.path().join(format!("node{n}.img"));
            fs::copy(&image, &copy).unwrap();
            copy
        })
        .collect();
    let out = cardsmith(&[
        "customize",
        copies[0].to_str().unwrap(),
        copies[1].to_str().unwrap(),
        "--hostname",
        "node{n:02}",
        "--first-number",
        "5",
        "--json",
    ]);
    assert_ok(&out);
    let (boot, _) = boot_partition(&image);
    for (n, copy) in copies.iter().enumerate() {
        let script = mtype(copy, boot, "firstrun.sh");
        assert!(
            script.contains(&format!("set_hostname 'node{:02}'", n + 5)),
            "{script}"
        );
    }
}

#[test]
fn ctrl_c_during_the_read_back_cancels_too_on_one_card_and_on_several() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("os.img");
    write_file(&image, &image_bytes(24 * MIB, 5));
    let file = dir.path().join("card.raw");
    filled_file(&file, 32 * MIB, 0xAA);
    let fast = LoopDevice::attach(&file);
    // A slow card: its read-back takes seconds, so Ctrl-C comes in the middle of it.
    let slow = EmulatedCard::start(32 << 20, 0xAA, Some("40M"));
    for targets in [vec![slow.arg()], vec![fast.arg(), slow.arg()]] {
        let mut args = vec!["write", image.to_str().unwrap()];
        args.extend(&targets);
        args.extend(["--yes", "--json"]);
        let (status, lines) = interrupt_when(&args, |line| {
            line["event"] == "progress" && line["phase"] == "verify"
        });
        assert_eq!(status, Some(130), "{targets:?}: cancelled, not a crash");
        let result = result(&lines);
        assert_eq!(result["left"], "zeroed", "{targets:?}: {result}");
        assert!(
            read_range(&slow.backing(), 0, MIB).iter().all(|&b| b == 0),
            "{targets:?}: the slow card does not start with a zeroed MiB"
        );
    }
}

#[test]
fn a_target_named_twice_or_an_image_among_the_targets_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("os.img");
    write_file(&image, &image_bytes(MIB, 9));
    let a = dir.path().join("a.img");
    let out = cardsmith(&[
        "write",
        image.to_str().unwrap(),
        a.to_str().unwrap(),
        a.to_str().unwrap(),
        "--yes",
    ]);
    assert_fails(&out, 2, &["named twice"]);
    assert!(!a.exists(), "nothing was written");
    let out = cardsmith(&[
        "write",
        "--os",
        "anything",
        "os.img.xz",
        a.to_str().unwrap(),
        "--yes",
    ]);
    assert_fails(&out, 2, &["looks like an image"]);

    // Every target refused and left out: exit code 1, not "some failed".
    let b = dir.path().join("b.img");
    for path in [&a, &b] {
        write_file(path, b"an older image");
    }
    let out = cardsmith(&[
        "write",
        image.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--yes",
        "--skip-refused",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("0 of 2 cards written"),
        "{}",
        stderr(&out)
    );
    for path in [&a, &b] {
        assert_eq!(fs::read(path).unwrap(), b"an older image");
    }
}
