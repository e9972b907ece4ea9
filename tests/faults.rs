//! Cards that fail, with faults that come from outside cardsmith: emulated cards (nbdkit
//! over nbdfuse, attached as direct-I/O loop devices) with bad sectors, or pulled out in
//! the middle of a write, a read-back or a backup. Each test checks the message, the exit
//! code, and what the card (or the backup file) was left as.

mod common;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::emulated::EmulatedCard;
use common::text::number_after;
use common::*;
use serde_json::Value;

const SECTOR: u64 = 512;

/// A raw image of `mib` MiB of incompressible bytes (every block of it is written).
fn image(dir: &Path, mib: usize) -> std::path::PathBuf {
    let path = dir.join("os.img");
    write_file(&path, &image_bytes(mib * MIB, 11));
    path
}

fn starts_zeroed(card: &EmulatedCard) -> bool {
    read_range(&card.backing(), 0, MIB).iter().all(|&b| b == 0)
}

#[test]
fn a_bad_sector_during_the_write_is_named_and_the_card_left_unbootable() {
    let dir = tempfile::tempdir().unwrap();
    let image = image(dir.path(), 24);
    // One bad 512-byte sector, not on a 4 KiB boundary, deep inside a 4 MiB chunk: it is
    // named by the 4 KiB block holding it (the finest step cardsmith tries again in).
    let bad = 9 * MIB as u64 + 3 * SECTOR + 65536;
    let block = bad / 4096 * 4096;
    let card = EmulatedCard::with_bad_sectors(32 << 20, 0xAA, Some(bad..bad + SECTOR), None);
    let out = cardsmith(&["write", image.to_str().unwrap(), card.arg(), "--yes"]);
    assert_fails(
        &out,
        1,
        &[&format!(
            "write failed at byte {block} of {}: Input/output error",
            card.arg()
        )],
    );
    assert!(!stderr(&out).contains("Wrote"), "{}", stderr(&out));
    assert!(starts_zeroed(&card), "the card's first MiB is zeroed");
}

#[test]
fn a_bad_sector_during_the_read_back_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let image = image(dir.path(), 24);
    let sector = 17 * MIB as u64 + 7 * SECTOR + 8192;
    let bad = sector / 4096 * 4096;
    let card = EmulatedCard::with_bad_sectors(32 << 20, 0xAA, None, Some(sector..sector + SECTOR));
    let out = cardsmith(&[
        "write",
        image.to_str().unwrap(),
        card.arg(),
        "--yes",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let lines = json_lines(&out);
    let result = lines.last().unwrap();
    let error = result["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "verification could not read byte {bad} of {}",
            card.arg()
        )),
        "{error}"
    );
    assert_eq!(result["offset"], bad);
    assert_eq!(result["left"], "zeroed");
    assert!(starts_zeroed(&card));
    // A backup of the same card stops at the same sector, and keeps no file.
    let backup = dir.path().join("backup.img");
    let out = cardsmith(&["read", card.arg(), backup.to_str().unwrap(), "--all-blocks"]);
    assert_fails(
        &out,
        1,
        &[&format!("cannot read {} at byte {bad}", card.arg())],
    );
    assert!(!backup.exists(), "no partial backup");
}

/// Runs `cardsmith ARGS --json`, pulls the card out once `now` says so, and returns the
/// exit code, the lines, and how long cardsmith took to end after the card was pulled.
fn pull_when(
    card: &EmulatedCard,
    args: &[&str],
    now: impl Fn(&Value) -> bool,
) -> (Option<i32>, Vec<Value>, Duration) {
    let mut run = JsonRun::start(
        cardsmith_command()
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null()),
    );
    let mut pulled = None;
    while let Some(line) = run.next() {
        if pulled.is_none() && now(&line) {
            card.pull();
            pulled = Some(Instant::now());
        }
    }
    let (code, lines) = run.finish();
    let pulled = pulled.expect("the moment to pull the card came");
    (code, lines, pulled.elapsed())
}

#[test]
fn a_card_pulled_out_during_write_read_back_or_backup_is_said_to_have_stopped_answering() {
    let dir = tempfile::tempdir().unwrap();
    let image = image(dir.path(), 24);
    let img = image.to_str().unwrap();
    for phase in ["write", "verify"] {
        // Slow enough (about 5 MB/s) that the moment comes in the middle of the phase.
        let card = EmulatedCard::start(32 << 20, 0xAA, Some("40M"));
        let args = ["write", img, card.arg(), "--yes", "--json"];
        let (code, lines, took) = pull_when(&card, &args, |l| {
            l["event"] == "progress"
                && l["phase"] == phase
                && l["bytes_done"].as_u64() >= Some(8 << 20)
        });
        assert_eq!(code, Some(1), "pulled during {phase}");
        assert!(
            took < Duration::from_secs(10),
            "{phase}: ended {took:?} after"
        );
        let result = lines.last().unwrap();
        assert_eq!(result["ok"], false);
        let error = result["error"].as_str().unwrap();
        assert!(
            error.contains("the card stopped answering"),
            "{phase}: {error}"
        );
        assert!(
            !lines.iter().any(|l| l["ok"] == true),
            "nothing claims success"
        );
    }
    // A backup of a card pulled out midway keeps no file.
    let card = EmulatedCard::start(32 << 20, 0x5A, Some("40M"));
    let backup = dir.path().join("backup.img");
    let args = [
        "read",
        card.arg(),
        backup.to_str().unwrap(),
        "--all-blocks",
        "--json",
    ];
    let (code, lines, took) = pull_when(&card, &args, |l| {
        l["event"] == "progress" && l["bytes_done"].as_u64() >= Some(8 << 20)
    });
    assert_eq!(code, Some(1));
    assert!(
        took < Duration::from_secs(10),
        "backup: ended {took:?} after"
    );
    let error = lines.last().unwrap()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("the card stopped answering"), "{error}");
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("backup"))
        .collect();
    assert!(left.is_empty(), "no partial backup: {left:?}");
}

#[test]
fn a_stalled_card_is_said_to_stall_and_ctrl_c_still_stops_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let image = image(dir.path(), 12);
    // Every write request takes 3 s: no request finishes within the 2 s allowed.
    let card = EmulatedCard::stalling(16 << 20, 0xAA, "3");
    let mut run = JsonRun::start(
        cardsmith_command()
            .args([
                "write",
                image.to_str().unwrap(),
                card.arg(),
                "--yes",
                "--json",
                "--write-stall-timeout",
                "2",
            ])
            .stdin(Stdio::null())
            .stderr(Stdio::null()),
    );
    run.until(|line| line["warning"].is_string());
    let said = run.lines.last().unwrap()["warning"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        said.contains(&format!("{} has not accepted data for 2 s", card.arg()))
            && said.contains("try another reader or card"),
        "{said}"
    );
    let (status, took) = run.interrupt(Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "Ctrl-C stops a stalled write");
    // It ends once the card has answered the requests it is stuck in and taken the zeros
    // over its first MiB: a few of this card's 3 s requests.
    assert!(
        took < Duration::from_secs(25),
        "ended {took:?} after Ctrl-C"
    );
    let (_, rest) = run.finish();
    assert_eq!(rest.last().unwrap()["left"], "zeroed");
    assert!(starts_zeroed(&card));
}

/// `cardsmith ARGS` with its findings kept in `config`.
fn cardsmith_in(config: &Path, args: &[&str]) -> std::process::Output {
    cardsmith_env(args, &[("XDG_CONFIG_HOME", config)])
}

#[test]
fn a_counterfeit_card_is_found_out_and_writes_are_held_to_what_it_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    // Claims 64 MiB, keeps 16 MiB: writes past 16 MiB land at its start again.
    let fake = EmulatedCard::counterfeit(64 << 20, 16 << 20, 0xAA);
    // Without --write nothing is written, so nothing is known of its capacity.
    let out = cardsmith_in(&config, &["check", fake.arg(), "--json"]);
    assert_ok(&out);
    let said = &json_lines(&out)[json_lines(&out).len() - 1];
    assert_eq!(
        (said["claimed"].as_u64(), said["real"].is_null()),
        (Some(64 << 20), true)
    );
    assert!(said["read_rate"].as_u64() > Some(0), "{said}");
    assert!(
        read_range(&fake.backing(), 0, 16 * MIB)
            .iter()
            .all(|&b| b == 0xAA),
        "a check without --write changed the card"
    );

    let out = cardsmith_in(
        &config,
        &["check", fake.arg(), "--write", "--yes", "--json"],
    );
    assert_ok(&out);
    let lines = json_lines(&out);
    let said = lines.last().unwrap();
    assert_eq!(said["real"], 16 << 20, "{said}");
    assert_eq!(said["wraps_at"], 16 << 20, "{said}");
    assert_eq!(said["counterfeit"], true);
    assert!(said["write_rate"].as_u64() > Some(0), "{said}");
    let out = cardsmith_in(&config, &["check", fake.arg(), "--write", "--yes"]);
    assert!(stderr(&out).contains("COUNTERFEIT"), "{}", stderr(&out));

    // A 24 MiB image would "fit" the 64 MiB it claims; the check says it does not.
    let image = image(dir.path(), 24);
    let out = cardsmith_in(
        &config,
        &["write", image.to_str().unwrap(), fake.arg(), "--yes"],
    );
    assert_fails(
        &out,
        1,
        &[
            "keeps only 16.0 MiB (16777216 bytes) of the 64.0 MiB (67108864 bytes) it claims",
            "does not fit",
        ],
    );

    // A genuine card keeps all it claims, and is held to nothing.
    let real = EmulatedCard::start(32 << 20, 0xAA, None);
    let out = cardsmith_in(
        &config,
        &["check", real.arg(), "--write", "--yes", "--json"],
    );
    assert_ok(&out);
    let said = json_lines(&out).pop().unwrap();
    assert_eq!(
        (said["real"].as_u64(), said["counterfeit"].as_bool()),
        (Some(32 << 20), Some(false))
    );
    assert!(said["wraps_at"].is_null());
}

#[test]
fn a_rescue_backup_of_a_card_with_a_bad_sector_keeps_going_and_says_what_was_hit() {
    let dir = tempfile::tempdir().unwrap();
    let (image, root_start, root_len) = os_image_with_a_file(dir.path());
    // debugfs (not cardsmith) says where the file's ninth block lies.
    let block: u64 = number_after(
        &debugfs(&image, root_start, root_len, "bmap /home/data.bin 8"),
        "",
    );
    let block_size = number_after(&dumpe2fs(&image, root_start, root_len), "Block size:");
    // The 4 KiB block holding the file's ninth filesystem block.
    let bad = (root_start + block * block_size) / 4096 * 4096;
    let len = fs::metadata(&image).unwrap().len();
    let card = EmulatedCard::with_bad_sectors(len, 0, None, Some(bad + 512..bad + 1024));
    let backup = dir.path().join("backup.img");
    let result = rescued(&image, &card, &backup);
    let unreadable = result["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1, "{result}");
    assert_eq!(
        (
            unreadable[0]["start"].as_u64(),
            unreadable[0]["end"].as_u64()
        ),
        (Some(bad), Some(bad + 4096)),
        "the 4 KiB block holding the bad sector"
    );
    // Which file that is, named from the card's filesystem (debugfs put it there).
    assert_eq!(unreadable[0]["place"], "partition 2 (ext2/3/4)");
    assert_eq!(unreadable[0]["held"], serde_json::json!(["/home/data.bin"]));
    assert_eq!(
        unreadable[0]["belongs_to"],
        "partition 2 (ext2/3/4): /home/data.bin"
    );
    // The backup is there, with its checksum, zeros where the card could not be read and
    // the card's bytes everywhere else.
    let got = fs::read(&backup).unwrap();
    let card_bytes = fs::read(card.backing()).unwrap();
    assert!(got[bad as usize..bad as usize + 4096]
        .iter()
        .all(|&b| b == 0));
    assert_eq!(got[..bad as usize], card_bytes[..bad as usize]);
    let (root_end, end) = ((root_start + root_len) as usize, bad as usize + 4096);
    assert_eq!(got[end..root_end], card_bytes[end..root_end]);
    let check = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg("backup.img.sha256")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // The mapfile, as GNU ddrescue writes it: the bad block '-', the rest '+'.
    let map = fs::read_to_string(dir.path().join("backup.img.badblocks")).unwrap();
    assert!(
        map.contains(&format!("0x{bad:08X}  0x00001000  -")),
        "{map}"
    );
    // Said to people too.
    let out = cardsmith(&[
        "read",
        card.arg(),
        // Compressed: what was hit is read from the card, the bad block masked.
        dir.path().join("again.img.zst").to_str().unwrap(),
        "--rescue",
    ]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("The backup is INCOMPLETE"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&format!(
            "bytes {bad}..{}: partition 2 (ext2/3/4): /home/data.bin",
            bad + 4096
        )),
        "{}",
        stderr(&out)
    );
}

/// An OS image (FAT boot, ext4 root) whose root holds /home/data.bin (2 MiB): the image,
/// and its root partition's offset and length.
fn os_image_with_a_file(dir: &Path) -> (std::path::PathBuf, u64, u64) {
    let root = dir.join("root");
    fs::create_dir_all(root.join("home")).unwrap();
    write_file(&root.join("home/data.bin"), &image_bytes(2 * MIB, 21));
    let image = dir.join("os.img");
    make_os_image(&image, 40, 8, &root);
    let (start, len) = mbr_partition(&read_range(&image, 0, 512), 1);
    (image, start, len)
}

/// `image` written onto `card`, then backed up from it into `backup` with `--rescue`: the
/// JSON result.
fn rescued(image: &Path, card: &EmulatedCard, backup: &Path) -> Value {
    assert_ok(&cardsmith(&[
        "write",
        image.to_str().unwrap(),
        card.arg(),
        "--yes",
        "--no-verify",
    ]));
    let out = cardsmith(&[
        "read",
        card.arg(),
        backup.to_str().unwrap(),
        "--rescue",
        "--json",
    ]);
    assert_ok(&out);
    json_lines(&out).pop().unwrap()
}

/// What debugfs says to `request` about the partition of `image` at `start`.
fn debugfs(image: &Path, start: u64, len: u64, request: &str) -> String {
    let part = LoopDevice::attach_with_offset(image, start, len);
    String::from_utf8(tool("debugfs", &["-R", request, part.arg()]).stdout).unwrap()
}

/// What dumpe2fs says of the partition of `image` at `start`.
fn dumpe2fs(image: &Path, start: u64, len: u64) -> String {
    let part = LoopDevice::attach_with_offset(image, start, len);
    String::from_utf8(tool("dumpe2fs", &[part.arg()]).stdout).unwrap()
}

/// A bad block among the metadata the backup itself needs (group 0's block bitmap, which
/// says which blocks to read) does not stop a rescue: that filesystem is read whole, the
/// file it would have hidden is in the backup, and the bad block is named for what it is.
#[test]
fn a_rescue_reads_past_a_bad_block_bitmap_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let (image, root_start, root_len) = os_image_with_a_file(dir.path());
    let dumped = dumpe2fs(&image, root_start, root_len);
    let block_size = number_after(&dumped, "Block size:");
    let bitmap = number_after(
        &dumped[dumped.find("Group 0:").unwrap()..],
        "Block bitmap at",
    );
    let bad = (root_start + bitmap * block_size) / 4096 * 4096;
    let len = fs::metadata(&image).unwrap().len();
    let card = EmulatedCard::with_bad_sectors(len, 0, None, Some(bad..bad + 512));
    let backup = dir.path().join("backup.img");
    let result = rescued(&image, &card, &backup);
    let unreadable = result["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1, "{result}");
    assert_eq!(unreadable[0]["start"].as_u64(), Some(bad));
    let held: Vec<&str> = unreadable[0]["held"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(held.contains(&"the block bitmap of group 0"), "{result}");
    // The file is in the backup: outside the bad block, the root partition equals the
    // card's, byte for byte.
    let got = fs::read(&backup).unwrap();
    let card_bytes = fs::read(card.backing()).unwrap();
    let (start, end) = (root_start as usize, (root_start + root_len) as usize);
    let bad = bad as usize;
    assert_eq!(got[start..bad], card_bytes[start..bad]);
    assert_eq!(got[bad + 4096..end], card_bytes[bad + 4096..end]);
    // And without --rescue the backup stops there, naming the block.
    let out = cardsmith(&[
        "read",
        card.arg(),
        dir.path().join("plain.img").to_str().unwrap(),
    ]);
    assert_fails(&out, 1, &[&format!("byte {bad}")]);
}
