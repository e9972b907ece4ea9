//! Writing, verifying and hashing every supported format with regular files as targets.

mod common;

use std::fs;

use common::*;

/// An image whose length is not a multiple of 4096, so the unaligned tail is exercised.
const IMAGE_LEN: usize = 9 * MIB + 1234;

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.img");
    write_file(&raw, &image_bytes(IMAGE_LEN, 7));
    (dir, raw)
}

#[test]
fn every_format_round_trips_byte_identical() {
    let (dir, raw) = setup();
    for (name, image) in every_format(dir.path(), &raw) {
        let out_path = dir.path().join(format!("out-{name}.img"));
        let out = cardsmith(&["write", image.to_str().unwrap(), out_path.to_str().unwrap()]);
        assert_ok(&out);
        assert!(
            stderr(&out).contains("verified"),
            "{name}: {}",
            stderr(&out)
        );
        assert_eq!(
            fs::metadata(&out_path).unwrap().len(),
            IMAGE_LEN as u64,
            "{name}"
        );
        assert!(
            same_prefix(&raw, &out_path, IMAGE_LEN as u64),
            "{name} differs"
        );
    }
}

#[test]
fn concatenated_streams_and_members_are_read_whole() {
    let (dir, raw) = setup();
    let first = dir.path().join("first.img");
    let second = dir.path().join("second.img");
    let data = fs::read(&raw).unwrap();
    write_file(&first, &data[..3 * MIB]);
    write_file(&second, &data[3 * MIB..]);
    for (tool_name, args, ext) in [
        ("xz", vec!["-c"], "xz"),
        ("gzip", vec!["-c"], "gz"),
        ("bzip2", vec!["-c"], "bz2"),
        ("zstd", vec!["-q", "-c"], "zst"),
    ] {
        let a = dir.path().join(format!("a.{ext}"));
        let b = dir.path().join(format!("b.{ext}"));
        compress(tool_name, &args, &first, &a);
        compress(tool_name, &args, &second, &b);
        let mut joined = fs::read(&a).unwrap();
        joined.extend(fs::read(&b).unwrap());
        let cat = dir.path().join(format!("cat.{ext}"));
        write_file(&cat, &joined);
        let target = dir.path().join(format!("cat-{ext}.img"));
        assert_ok(&cardsmith(&[
            "write",
            cat.to_str().unwrap(),
            target.to_str().unwrap(),
        ]));
        assert!(
            same_prefix(&raw, &target, IMAGE_LEN as u64),
            "{ext} differs"
        );
        assert_eq!(fs::metadata(&target).unwrap().len(), IMAGE_LEN as u64);
    }
}

#[test]
fn format_comes_from_content_not_name() {
    let (dir, raw) = setup();
    let misnamed = dir.path().join("image.img");
    compress("xz", &["-c"], &raw, &misnamed);
    let target = dir.path().join("out.img");
    assert_ok(&cardsmith(&[
        "write",
        misnamed.to_str().unwrap(),
        target.to_str().unwrap(),
    ]));
    assert!(same_prefix(&raw, &target, IMAGE_LEN as u64));
}

#[test]
fn reads_the_image_from_standard_input() {
    let (dir, raw) = setup();
    let xz = dir.path().join("img.xz");
    compress("xz", &["-c"], &raw, &xz);
    let target = dir.path().join("out.img");
    let out = cardsmith_with_stdin(&["write", "-", target.to_str().unwrap()], &xz);
    assert_ok(&out);
    assert!(same_prefix(&raw, &target, IMAGE_LEN as u64));
    assert_eq!(fs::metadata(&target).unwrap().len(), IMAGE_LEN as u64);
}

#[test]
fn hash_prints_what_sha256sum_prints_for_the_decompressed_image() {
    let (dir, raw) = setup();
    let formats = every_format(dir.path(), &raw);
    let expected = sha256sum(&raw);
    for (name, image) in &formats {
        let out = cardsmith(&["hash", image.to_str().unwrap()]);
        assert_ok(&out);
        assert_eq!(
            stdout(&out),
            format!("{expected}  {}\n", image.display()),
            "{name}"
        );
    }
    let xz = &formats[1].1;
    let out = cardsmith(&["hash", "--raw", xz.to_str().unwrap()]);
    assert_eq!(stdout(&out)[..64], sha256sum(xz));
    for (algorithm, tool_name) in [("sha1", "sha1sum"), ("md5", "md5sum")] {
        let out = cardsmith(&["hash", "--algorithm", algorithm, xz.to_str().unwrap()]);
        assert_ok(&out);
        let witness = stdout(&tool(tool_name, &[raw.to_str().unwrap()]));
        let digest = witness.split_whitespace().next().unwrap();
        assert_eq!(
            stdout(&out).split_whitespace().next(),
            Some(digest),
            "{algorithm}"
        );
    }
}

#[test]
fn sha256_of_image_or_of_download_is_accepted() {
    let (dir, raw) = setup();
    let xz = dir.path().join("img.xz");
    compress("xz", &["-c"], &raw, &xz);
    for (which, sum) in [("image", sha256sum(&raw)), ("stored", sha256sum(&xz))] {
        let target = dir.path().join(format!("out-{which}.img"));
        let out = cardsmith(&[
            "write",
            xz.to_str().unwrap(),
            target.to_str().unwrap(),
            "--sha256",
            &sum.to_uppercase(),
            "--json",
        ]);
        assert_ok(&out);
        let result = json_lines(&out).pop().unwrap();
        let expected = if which == "image" {
            "image"
        } else {
            "stored_file"
        };
        assert_eq!(result["sha256_matched"], expected);
        assert!(same_prefix(&raw, &target, IMAGE_LEN as u64));
    }
}

#[test]
fn json_progress_and_result() {
    let (dir, raw) = setup();
    let zst = dir.path().join("img.zst");
    compress("zstd", &["-q", "-c"], &raw, &zst);
    let target = dir.path().join("out.img");
    let out = cardsmith(&[
        "write",
        zst.to_str().unwrap(),
        target.to_str().unwrap(),
        "--json",
    ]);
    assert_ok(&out);
    let lines = json_lines(&out);
    let (result, progress) = lines.split_last().unwrap();
    assert_eq!(result["event"], "result");
    assert_eq!(result["ok"], true);
    assert_eq!(result["bytes"], IMAGE_LEN as u64);
    assert_eq!(result["verified"], true);
    let phases: Vec<&str> = progress
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    for phase in ["write", "finish", "verify"] {
        assert!(phases.contains(&phase), "no {phase} in {phases:?}");
    }
    for p in progress {
        assert_eq!(p["event"], "progress");
        assert!(p["bytes_done"].as_u64().unwrap() <= IMAGE_LEN as u64);
        assert!(p["rate"].is_u64());
        assert!(p.get("bytes_total").is_some());
    }
    let last_verify = progress
        .iter()
        .rev()
        .find(|p| p["phase"] == "verify")
        .unwrap();
    assert_eq!(last_verify["bytes_done"], IMAGE_LEN as u64);
}

#[test]
fn no_verify_skips_the_read_back() {
    let (dir, raw) = setup();
    let target = dir.path().join("out.img");
    let out = cardsmith(&[
        "write",
        raw.to_str().unwrap(),
        target.to_str().unwrap(),
        "--no-verify",
        "--json",
    ]);
    assert_ok(&out);
    let lines = json_lines(&out);
    assert!(lines.iter().all(|l| l["phase"] != "verify"));
    assert_eq!(lines.last().unwrap()["verified"], false);
    assert!(same_prefix(&raw, &target, IMAGE_LEN as u64));
}

#[test]
fn verify_passes_on_a_match_and_names_the_first_differing_byte() {
    let (dir, raw) = setup();
    let gz = dir.path().join("img.gz");
    compress("gzip", &["-c"], &raw, &gz);
    let copy = dir.path().join("copy.img");
    fs::copy(&raw, &copy).unwrap();
    let out = cardsmith(&["verify", gz.to_str().unwrap(), copy.to_str().unwrap()]);
    assert_ok(&out);
    assert!(stderr(&out).contains("matches"));

    let offset = 5 * MIB as u64 + 77;
    let old = read_range(&copy, offset, 1)[0];
    poke(&copy, offset, !old);
    poke(&copy, offset + 1000, !old);
    let out = cardsmith(&["verify", gz.to_str().unwrap(), copy.to_str().unwrap()]);
    assert_fails(&out, 3, &[&format!("byte {offset}")]);
    let out = cardsmith(&[
        "verify",
        "--json",
        gz.to_str().unwrap(),
        copy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    let result = json_lines(&out).pop().unwrap();
    assert_eq!(result["ok"], false);
    assert_eq!(result["offset"], offset);
    assert_eq!(result["exit_code"], 3);
}

#[test]
fn verify_reports_a_target_of_the_wrong_length() {
    let (dir, raw) = setup();
    let data = fs::read(&raw).unwrap();
    let short = dir.path().join("short.img");
    write_file(&short, &data[..IMAGE_LEN - 10]);
    let out = cardsmith(&["verify", raw.to_str().unwrap(), short.to_str().unwrap()]);
    assert_fails(
        &out,
        3,
        &[&format!("byte {}", IMAGE_LEN - 10), "ends before"],
    );

    let long = dir.path().join("long.img");
    let mut longer = data.clone();
    longer.extend_from_slice(b"extra");
    write_file(&long, &longer);
    let out = cardsmith(&["verify", raw.to_str().unwrap(), long.to_str().unwrap()]);
    assert_fails(&out, 3, &[&format!("byte {IMAGE_LEN}"), "longer"]);
}

#[test]
fn existing_file_is_kept_unless_forced() {
    let (dir, raw) = setup();
    let target = dir.path().join("precious.img");
    write_file(&target, b"my only backup");
    let out = cardsmith(&["write", raw.to_str().unwrap(), target.to_str().unwrap()]);
    assert_fails(&out, 1, &["--force"]);
    assert_eq!(fs::read(&target).unwrap(), b"my only backup");

    // Overwriting needs consent too, and there is no terminal to give it.
    let out = cardsmith(&[
        "write",
        raw.to_str().unwrap(),
        target.to_str().unwrap(),
        "--force",
    ]);
    assert_fails(&out, 1, &["--yes"]);
    assert_eq!(fs::read(&target).unwrap(), b"my only backup");

    let out = cardsmith(&[
        "write",
        raw.to_str().unwrap(),
        target.to_str().unwrap(),
        "--force",
        "--yes",
    ]);
    assert_ok(&out);
    assert!(same_prefix(&raw, &target, IMAGE_LEN as u64));
    assert_eq!(fs::metadata(&target).unwrap().len(), IMAGE_LEN as u64);
}

#[test]
fn help_documents_the_exit_codes() {
    let out = cardsmith(&["write", "--help"]);
    assert_ok(&out);
    let help = stdout(&out);
    for needle in [
        "--sha256",
        "--no-verify",
        "--yes",
        "--json",
        "3 ",
        "verification failed",
    ] {
        assert!(
            help.contains(needle),
            "{needle:?} missing from help:\n{help}"
        );
    }
    assert_ok(&cardsmith(&["--help"]));
}
