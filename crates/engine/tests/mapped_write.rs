//! Writing with a block map: only the mapped blocks are written and read back, the map's
//! checksums are checked before the start of the target is written, and a map for
//! another image is refused. The result is checked by e2fsck, fsck.fat and debugfs.

mod common;

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use cardsmith_engine::{
    usage_of_file, write, Bmap, CancelToken, Error, Image, Input, NewFiles, OpenAs, Target,
    WriteOptions,
};
use common::{make_os_image, run};

fn os_image(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let root = dir.join("root/srv");
    fs::create_dir_all(&root).unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 11 % 253) as u8).collect();
    fs::write(root.join("data.bin"), &data).unwrap();
    let image = dir.join("os.img");
    make_os_image(&image, 64, 128, &dir.join("root"));
    (image, data)
}

fn map_of(image: &Path) -> Bmap {
    let file = fs::File::open(image).unwrap();
    let size = file.metadata().unwrap().len();
    let usage = usage_of_file(&file, size, "os.img").unwrap();
    let mut read = |at: u64, buf: &mut [u8]| file.read_exact_at(buf, at);
    Bmap::from_usage(&usage, &mut read, "os.img").unwrap()
}

fn write_mapped(
    image: &Path,
    target: &Path,
    map: Bmap,
) -> Result<cardsmith_engine::WriteReport, Error> {
    let img = Image::open(&Input::Path(image.to_owned()), OpenAs::Detect).unwrap();
    let files = NewFiles {
        private: false,
        owner: None,
    };
    let t = Target::open_for_write(target, true, files).unwrap();
    let options = WriteOptions {
        verify: true,
        map: Some(map),
        ..WriteOptions::default()
    };
    write(img, &t, &options, &CancelToken::new(), &mut |_| {})
}

#[test]
fn only_the_mapped_blocks_are_written_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let (image, data) = os_image(dir.path());
    let map = map_of(&image);
    let mapped = map.mapped_bytes();
    let target = dir.path().join("card.img");
    let report = write_mapped(&image, &target, map.clone()).unwrap();
    let size = fs::metadata(&image).unwrap().len();
    assert_eq!(report.bytes, size);
    assert_eq!(report.written, mapped);
    assert_eq!(report.verified_bytes, mapped);
    assert!(mapped < size / 3, "{mapped} of {size}");
    // The file is the image's size, and holds only what was written (the rest a hole).
    let meta = fs::metadata(&target).unwrap();
    assert_eq!(meta.len(), size);
    assert!(
        meta.blocks() * 512 < size / 2,
        "{} bytes allocated",
        meta.blocks() * 512
    );
    let (src, dst) = (fs::read(&image).unwrap(), fs::read(&target).unwrap());
    for (a, b) in map.byte_ranges() {
        assert!(
            src[a as usize..b as usize] == dst[a as usize..b as usize],
            "{a}..{b}"
        );
    }
    // What was written is a whole system: both filesystems clean, the file there.
    let part = |n: usize| {
        let e = &dst[0x1BE + 16 * n..0x1BE + 16 * (n + 1)];
        let at = u32::from_le_bytes(e[8..12].try_into().unwrap()) as usize * 512;
        let len = u32::from_le_bytes(e[12..16].try_into().unwrap()) as usize * 512;
        dst[at..at + len].to_vec()
    };
    fs::write(dir.path().join("boot.part"), part(0)).unwrap();
    fs::write(dir.path().join("root.part"), part(1)).unwrap();
    run(Command::new("fsck.fat")
        .arg("-n")
        .arg(dir.path().join("boot.part")));
    run(Command::new("e2fsck")
        .arg("-fn")
        .arg(dir.path().join("root.part")));
    let out = Command::new("debugfs")
        .args(["-R", "cat /srv/data.bin"])
        .arg(dir.path().join("root.part"))
        .output()
        .unwrap();
    assert!(out.stdout == data, "the file reads back");
}

#[test]
fn a_map_that_does_not_fit_the_image_is_refused_before_the_start_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (image, _) = os_image(dir.path());
    let map = map_of(&image);
    // One byte of a mapped range changed in the image after the map was made.
    let (a, b) = map.byte_ranges()[map.ranges.len() - 1];
    let changed = dir.path().join("changed.img");
    fs::copy(&image, &changed).unwrap();
    let f = fs::OpenOptions::new().write(true).open(&changed).unwrap();
    f.write_all_at(b"X", (a + b) / 2).unwrap();
    drop(f);
    let target = dir.path().join("card.img");
    let e = write_mapped(&changed, &target, map.clone())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("do not have the checksum the map gives them"),
        "{e}"
    );
    // Nothing was left that could pass for a written image.
    let left = fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
    assert_eq!(left, 0, "the unfinished file is emptied or removed");

    // A map for an image of another size is refused before anything is written.
    let mut other = map;
    other.image_size += 4096;
    let e = write_mapped(&image, &target, other)
        .unwrap_err()
        .to_string();
    assert!(e.contains("it belongs to another image"), "{e}");
}
