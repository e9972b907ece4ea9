//! Bad input gets a clear error and loses nothing (file targets; devices are in devices.rs).

mod common;

use std::fs;
use std::path::Path;

use common::*;

const IMAGE_LEN: usize = 6 * MIB + 100;

/// Flips 64 bytes in the middle of a file.
fn corrupt_middle(src: &Path, dst: &Path) {
    let mut data = fs::read(src).unwrap();
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 64] {
        *b = !*b;
    }
    write_file(dst, &data);
}

fn truncate_to_half(src: &Path, dst: &Path) {
    let data = fs::read(src).unwrap();
    write_file(dst, &data[..data.len() / 2]);
}

#[test]
fn truncated_or_corrupt_archives_name_format_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.img");
    write_file(&raw, &image_bytes(IMAGE_LEN, 3));
    for (format, image) in every_format(dir.path(), &raw).into_iter().skip(1) {
        for (damage, how) in [
            ("truncated", truncate_to_half as fn(&Path, &Path)),
            ("corrupt", corrupt_middle),
        ] {
            let bad = dir.path().join(format!("{damage}-{format}"));
            how(&image, &bad);
            let target = dir.path().join(format!("out-{damage}-{format}.img"));
            let out = cardsmith(&["write", bad.to_str().unwrap(), target.to_str().unwrap()]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{damage} {format}: {err}");
            assert!(err.contains(format), "{damage} {format}: {err}");
            if !(format == "zip" && damage == "truncated") {
                // A truncated zip has lost its directory: nothing was decoded, so no offset.
                assert!(err.contains("compressed byte"), "{damage} {format}: {err}");
            }
            assert!(
                !target.exists(),
                "{damage} {format}: a half-written file was left behind"
            );
            // The last line says what was left: a zip without its directory is refused
            // before the target is created.
            let left = if format == "zip" && damage == "truncated" {
                "Nothing was written: what the target holds is as it was.\n"
            } else {
                "The unfinished image file was removed.\n"
            };
            assert!(err.ends_with(left), "{damage} {format}: {err}");
            let out = cardsmith(&["hash", bad.to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(1), "hash of {damage} {format}");
        }
    }
}

#[test]
fn sha256_mismatch_fails_with_its_own_exit_code_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.img");
    write_file(&raw, &image_bytes(IMAGE_LEN, 4));
    let target = dir.path().join("out.img");
    let wrong = "ab".repeat(32);
    let out = cardsmith(&[
        "write",
        raw.to_str().unwrap(),
        target.to_str().unwrap(),
        "--sha256",
        &wrong,
    ]);
    assert_fails(&out, 4, &["SHA-256 mismatch", &wrong, &sha256sum(&raw)]);
    assert!(!target.exists());

    let out = cardsmith(&[
        "write",
        raw.to_str().unwrap(),
        target.to_str().unwrap(),
        "--sha256",
        "xyz",
    ]);
    assert_fails(&out, 2, &["64 hexadecimal digits"]);
}

#[test]
fn zip_with_several_files_and_no_single_image_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    write_file(&src.join("one.img"), &image_bytes(100_000, 5));
    write_file(&src.join("two.img"), &image_bytes(100_000, 6));
    write_file(&src.join("README.txt"), b"flash one of these");
    let zip = dir.path().join("both.zip");
    let zip_cmd = format!(
        "cd '{}' && zip -q '{}' one.img two.img README.txt",
        src.display(),
        zip.display()
    );
    tool("sh", &["-c", &zip_cmd]);
    let target = dir.path().join("out.img");
    let out = cardsmith(&["write", zip.to_str().unwrap(), target.to_str().unwrap()]);
    assert_fails(
        &out,
        1,
        &["no single image", "one.img", "two.img", "README.txt"],
    );
    assert!(!target.exists());

    // One image beside a README is not ambiguous.
    let single = dir.path().join("single.zip");
    let zip_cmd = format!(
        "cd '{}' && zip -q '{}' README.txt one.img",
        src.display(),
        single.display()
    );
    tool("sh", &["-c", &zip_cmd]);
    assert_ok(&cardsmith(&[
        "write",
        single.to_str().unwrap(),
        target.to_str().unwrap(),
    ]));
    assert!(same_prefix(&src.join("one.img"), &target, 100_000));
}

#[test]
fn zip_on_standard_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.img");
    write_file(&raw, &image_bytes(10_000, 1));
    let zip = dir.path().join("a.zip");
    tool(
        "zip",
        &["-q", "-j", zip.to_str().unwrap(), raw.to_str().unwrap()],
    );
    let target = dir.path().join("out.img");
    let out = cardsmith_with_stdin(&["write", "-", target.to_str().unwrap()], &zip);
    assert_fails(&out, 1, &["zip", "standard input"]);
    assert!(!target.exists());
}

#[test]
fn target_that_is_the_image_itself_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.img");
    let data = image_bytes(IMAGE_LEN, 8);
    write_file(&raw, &data);
    let out = cardsmith(&[
        "write",
        raw.to_str().unwrap(),
        raw.to_str().unwrap(),
        "--force",
        "--yes",
    ]);
    assert_fails(
        &out,
        1,
        &[
            "stored on",
            "Nothing was written: what the target holds is as it was.",
        ],
    );
    assert_eq!(fs::read(&raw).unwrap(), data);

    // The same file through a second name, and through standard input.
    let link = dir.path().join("link.img");
    fs::hard_link(&raw, &link).unwrap();
    let out = cardsmith(&[
        "write",
        raw.to_str().unwrap(),
        link.to_str().unwrap(),
        "--force",
        "--yes",
    ]);
    assert_fails(&out, 1, &["stored on"]);
    let out = cardsmith_with_stdin(
        &["write", "-", raw.to_str().unwrap(), "--force", "--yes"],
        &raw,
    );
    assert_fails(&out, 1, &["stored on"]);
    assert_eq!(fs::read(&raw).unwrap(), data);
}

#[test]
fn empty_and_missing_images_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.img");
    write_file(&empty, b"");
    let target = dir.path().join("out.img");
    let out = cardsmith(&["write", empty.to_str().unwrap(), target.to_str().unwrap()]);
    assert_fails(&out, 1, &["empty"]);
    assert!(!target.exists());

    let out = cardsmith(&["write", "/nonexistent/x.img", target.to_str().unwrap()]);
    assert_fails(&out, 1, &["cannot open /nonexistent/x.img"]);
    let out = cardsmith(&[
        "write",
        dir.path().to_str().unwrap(),
        target.to_str().unwrap(),
    ]);
    assert_fails(&out, 1, &["directory"]);
    assert!(!target.exists());
}

#[test]
fn a_place_the_user_may_not_write_is_refused_without_advice_to_be_root() {
    use std::os::unix::fs::PermissionsExt;
    let open = tempfile::tempdir().unwrap();
    fs::set_permissions(open.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let raw = open.path().join("disk.img");
    write_file(&raw, &image_bytes(10_000, 2));
    fs::set_permissions(&raw, fs::Permissions::from_mode(0o644)).unwrap();
    let private = tempfile::tempdir().unwrap();
    fs::set_permissions(private.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let target = private.path().join("out.img");
    let out = cardsmith_as_nobody(&["write", raw.to_str().unwrap(), target.to_str().unwrap()]);
    assert_fails(&out, 1, &["permission denied", "choose a place you own"]);
    assert!(!stderr(&out).contains("root"));
    assert!(!target.exists());
}

#[test]
fn unwritable_places_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.img");
    write_file(&raw, &image_bytes(10_000, 2));
    let out = cardsmith(&["write", raw.to_str().unwrap(), "/nonexistent-dir/out.img"]);
    assert_fails(&out, 1, &["/nonexistent-dir/out.img"]);
    let out = cardsmith(&["write", raw.to_str().unwrap(), "/dev/null", "--yes"]);
    assert_fails(&out, 1, &["neither a block device nor a regular file"]);
    let out = cardsmith(&["write", raw.to_str().unwrap(), dir.path().to_str().unwrap()]);
    assert_fails(&out, 1, &["neither a block device nor a regular file"]);
}
