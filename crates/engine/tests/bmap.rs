//! Block maps against bmaptool (Debian's bmap-tools): cardsmith reads the maps
//! `bmaptool create` writes (with and without checksums, and a hand-made 1.3 one with
//! SHA-1), and on a sparse image, where bmaptool maps the file's data, both maps cover
//! the same blocks.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use cardsmith_engine::{usage_of_file, Bmap, RangeChecksum};
use common::{make_os_image, run};

/// An OS-like image (scripts/os-image) with some files in its root.
fn os_image(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("root/etc");
    fs::create_dir_all(&root).unwrap();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(root.join("data.bin"), data).unwrap();
    let image = dir.join("os.img");
    make_os_image(&image, 64, 128, &dir.join("root"));
    image
}

fn blocks(map: &Bmap) -> BTreeSet<u64> {
    map.ranges.iter().flat_map(|r| r.first..=r.last).collect()
}

#[test]
fn on_a_sparse_image_both_maps_cover_the_same_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let image = os_image(dir.path());
    let file = fs::File::open(&image).unwrap();
    let size = file.metadata().unwrap().len();
    let usage = usage_of_file(&file, size, "os.img").unwrap();
    let mut read = |at: u64, buf: &mut [u8]| file.read_exact_at(buf, at);
    let ours = Bmap::from_usage(&usage, &mut read, "os.img").unwrap();
    // The image as a sparse file holding only what our map maps: bmaptool maps its data.
    let sparse = dir.path().join("sparse.img");
    let out = fs::File::create(&sparse).unwrap();
    out.set_len(size).unwrap();
    for (a, b) in ours.byte_ranges() {
        let mut buf = vec![0u8; (b - a) as usize];
        file.read_exact_at(&mut buf, a).unwrap();
        out.write_all_at(&buf, a).unwrap();
    }
    out.sync_all().unwrap();
    let theirs_path = dir.path().join("theirs.bmap");
    run(Command::new("bmaptool")
        .args(["create", "-o"])
        .arg(&theirs_path)
        .arg(&sparse));
    let theirs = Bmap::parse(&fs::read(&theirs_path).unwrap(), "theirs.bmap").unwrap();
    assert_eq!(theirs.checksum, Some(RangeChecksum::Sha256));
    assert_eq!((theirs.image_size, theirs.block_size), (size, 4096));
    assert_eq!(blocks(&theirs), blocks(&ours));
    // Where both map a range, they agree on its checksum (it is the same bytes).
    for r in &theirs.ranges {
        if let Some(same) = ours
            .ranges
            .iter()
            .find(|o| o.first == r.first && o.last == r.last)
        {
            assert_eq!(same.digest, r.digest, "blocks {}-{}", r.first, r.last);
        }
    }
    // Without checksums, the map still reads, with none.
    run(Command::new("bmaptool")
        .args(["create", "--no-checksum", "-o"])
        .arg(dir.path().join("bare.bmap"))
        .arg(&sparse));
    let bare = Bmap::parse(&fs::read(dir.path().join("bare.bmap")).unwrap(), "bare").unwrap();
    assert_eq!(bare.checksum, None);
    assert_eq!(blocks(&bare), blocks(&ours));
}

#[test]
fn a_format_1_3_map_with_sha1_reads_and_its_file_checksum_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let block = |c: u8| vec![c; 4096];
    let sha1 = |data: &[u8]| -> String {
        let path = dir.path().join("sum-input");
        fs::write(&path, data).unwrap();
        run(Command::new("sha1sum").arg(&path))[..40].to_owned()
    };
    let (a, b) = (
        sha1(&block(b'A')),
        sha1(&[block(b'B'), block(b'C')].concat()),
    );
    let zeros = "0".repeat(40);
    let text = format!(
        "<?xml version=\"1.0\" ?>\n<bmap version=\"1.3\">\n    <ImageSize> 16384 </ImageSize>\n    \
         <BlockSize> 4096 </BlockSize>\n    <BlocksCount> 4 </BlocksCount>\n    \
         <MappedBlocksCount> 3 </MappedBlocksCount>\n    <BmapFileSHA1> {zeros} </BmapFileSHA1>\n    \
         <BlockMap>\n        <Range sha1=\"{a}\"> 0 </Range>\n        \
         <Range sha1=\"{b}\"> 2-3 </Range>\n    </BlockMap>\n</bmap>\n"
    );
    let sum = sha1(text.as_bytes());
    let sealed = text.replacen(&zeros, &sum, 1);
    let map = Bmap::parse(sealed.as_bytes(), "v13.bmap").unwrap();
    assert_eq!(map.checksum, Some(RangeChecksum::Sha1));
    assert_eq!(map.byte_ranges(), [(0, 4096), (8192, 16384)]);
    assert_eq!(
        map.ranges[1].digest.as_deref(),
        Some(&RangeChecksum::Sha1.digest(&[block(b'B'), block(b'C')].concat())[..])
    );
    // One digit of a range's checksum changed: the file's own checksum no longer holds.
    let other = if &a[..1] == "0" { "1" } else { "0" };
    let changed = sealed.replacen(
        &format!("sha1=\"{}", &a[..1]),
        &format!("sha1=\"{other}"),
        1,
    );
    let e = Bmap::parse(changed.as_bytes(), "v13.bmap")
        .unwrap_err()
        .to_string();
    assert!(e.contains("BmapFileSHA1"), "{e}");
}
