//! Parsers of untrusted input never panic on hostile bytes: each gets 100,000 inputs made
//! by mutating valid seeds (tests/common/mutate.rs: bit flips, edge values in number
//! fields, insertions, deletions, repeats, splices), from a fixed seed so a failure
//! repeats. Debug builds check every arithmetic overflow, so an overflow is a failure too.
//! What each parser says about a hostile input (an error, or some reading) is not judged
//! here, only that it says it without crashing.

mod common;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use cardsmith_catalog::{Catalog, Location};
use cardsmith_customize::inspect::Cmdline;
use cardsmith_customize::{render_hostname, Settings, StaticIp};
use cardsmith_engine::{held_in_file, parse_sha256, usage_of_file, Bmap, Image, Input, OpenAs};
use common::mutate::hostile;
use common::*;

const INPUTS: usize = 100_000;

fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[test]
fn block_maps() {
    let sha = "a".repeat(64);
    let v2 = format!(
        "<?xml version=\"1.0\" ?>\n<bmap version=\"2.0\">\n  <ImageSize> 8388608 </ImageSize>\n  \
         <BlockSize> 4096 </BlockSize>\n  <BlocksCount> 2048 </BlocksCount>\n  \
         <MappedBlocksCount> 4 </MappedBlocksCount>\n  <ChecksumType> sha256 </ChecksumType>\n  \
         <BmapFileChecksum> {sha} </BmapFileChecksum>\n  <BlockMap>\n    \
         <Range chksum=\"{sha}\"> 0-2 </Range>\n    <Range chksum=\"{sha}\"> 100 </Range>\n  \
         </BlockMap>\n</bmap>\n"
    );
    let v1 =
        "<?xml version=\"1.0\" ?>\n<bmap version=\"1.3\">\n <ImageSize> 409600 </ImageSize>\n \
              <BlockSize> 4096 </BlockSize>\n <BlocksCount> 100 </BlocksCount>\n \
              <MappedBlocksCount> 2 </MappedBlocksCount>\n <BlockMap>\n \
              <Range sha1=\"0000000000000000000000000000000000000000\"> 1-2 </Range>\n \
              </BlockMap>\n</bmap>\n";
    hostile(
        "bmap",
        &[v2.into_bytes(), v1.as_bytes().to_vec()],
        INPUTS,
        8192,
        |b| {
            let _ = Bmap::parse(b, "hostile.bmap");
        },
    );
}

#[test]
fn sha256_lines() {
    let line = format!("{}  os.img.xz", "0123456789abcdef".repeat(4));
    hostile("sha256", &[line.into_bytes()], INPUTS, 256, |b| {
        let t = text(b);
        let _ = parse_sha256(&t);
        let _ = parse_sha256(t.split_whitespace().next().unwrap_or_default());
    });
}

#[test]
fn catalogs_and_sublists() {
    let sample = fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../os-list-sample/os_list.json"
    ))
    .unwrap();
    let sublist = fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/os-sublist-example.json"
    ))
    .unwrap_or_else(|_| br#"{"os_list": [{"name": "x", "url": "https://a/b.img.xz"}]}"#.to_vec());
    let location = Location::parse("https://example.com/os_list.json");
    hostile("catalog", &[sample, sublist], INPUTS, 16384, |b| {
        if let Ok(catalog) = Catalog::parse(b, &location) {
            for device in catalog.devices() {
                let _ = cardsmith_catalog::for_device(&catalog.os_list, device);
            }
            let _ = cardsmith_catalog::prune_init_formats(&mut catalog.os_list.clone());
        }
        let _ = Location::parse(&text(b));
    });
}

#[test]
fn cmdline_init_formats_addresses_and_host_names() {
    let seeds = [
        b"console=serial0,115200 console=tty1 root=PARTUUID=5eed5eed-02 rootfstype=ext4 \
          fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot \
          systemd.run=/boot/firstrun.sh ds=nocloud;s=/boot/ resize\n"
            .to_vec(),
        b"ethernet:192.168.1.20/24,192.168.1.1,1.1.1.1,9.9.9.9".to_vec(),
        b"wifi:fd00::5/64,fd00::1".to_vec(),
        b"cloudinit-rpi".to_vec(),
        b"node{n:02}-lab".to_vec(),
    ];
    hostile("cmdline", &seeds, INPUTS, 4096, |b| {
        let _ = Cmdline::parse(b);
        let t = text(b);
        let _ = StaticIp::parse(&t);
        let _ = cardsmith_customize::Format::parse(&t);
        let _ = render_hostname(&t, u64::MAX);
        let _ = render_hostname(&t, 7);
    });
}

#[test]
fn presets() {
    let mut s = Settings {
        hostname: Some("node{n:02}".into()),
        counter: 3,
        timezone: Some("Europe/Berlin".into()),
        keymap: Some("de".into()),
        ..Settings::default()
    };
    s.static_ip
        .push(StaticIp::parse("ethernet:10.0.0.2/24,10.0.0.1").unwrap());
    let seed = serde_json::to_vec_pretty(&s).unwrap();
    let old = br#"{"counter":1,"wifi":{"ssid":"686f6d65","psk":"abababababababababababababababababababababababababababababababab","hidden":false,"country":"GB"}}"#.to_vec();
    hostile("preset", &[seed, old], INPUTS, 8192, |b| {
        if let Ok(s) = serde_json::from_slice::<Settings>(b) {
            let _ = s.validate();
            let _ = s.hostname_now();
        }
    });
}

/// A file the parser reads, rewritten for each input.
struct Scratch {
    file: fs::File,
    path: std::path::PathBuf,
}

impl Scratch {
    fn new(dir: &Path, name: &str) -> Scratch {
        let path = dir.join(name);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        Scratch { file, path }
    }

    fn holding(&self, bytes: &[u8]) -> &Path {
        self.file.set_len(0).unwrap();
        self.file.write_all_at(bytes, 0).unwrap();
        &self.path
    }
}

#[test]
fn compressed_image_size_probes() {
    // The xz index, the zstd frame header, the gzip trailer and the zip directory: what
    // Image::open reads to tell an image's size before decoding it.
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("os.img");
    write_file(&raw, &image_bytes(96 << 10, 3));
    let mut seeds = Vec::new();
    for (program, args, out) in [
        ("xz", &["-T1", "--block-size=16KiB", "-c"][..], "os.img.xz"),
        ("zstd", &["-q", "-c"][..], "os.img.zst"),
        ("gzip", &["-c"][..], "os.img.gz"),
    ] {
        compress(program, args, &raw, &dir.path().join(out));
        seeds.push(fs::read(dir.path().join(out)).unwrap());
    }
    run_ok(
        std::process::Command::new("zip")
            .current_dir(dir.path())
            .args(["-q", "os.zip", "os.img"]),
    );
    seeds.push(fs::read(dir.path().join("os.zip")).unwrap());
    let scratch = Scratch::new(dir.path(), "hostile.img");
    hostile("size-probes", &seeds, INPUTS, 1 << 20, |b| {
        let path = scratch.holding(b);
        if let Ok(image) = Image::open(&Input::Path(path.to_owned()), OpenAs::Detect) {
            let _ = image.size();
        }
    });
}

/// Two 24 MiB disks (MBR, then GPT), each with a FAT16 partition at 1 MiB (8 MiB) and an
/// ext4 one with 1 KiB blocks at 9 MiB (13 MiB), made by sfdisk, mkfs.vfat and mkfs.ext4;
/// with `files`, both hold a small tree of folders and files.
fn two_partition_disks(dir: &Path, files: bool) -> Vec<Vec<u8>> {
    let root = dir.join("tree");
    if files {
        fs::create_dir_all(root.join("var/lib/many")).unwrap();
        fs::create_dir_all(root.join("home/pi")).unwrap();
        fs::write(root.join("home/pi/notes.txt"), vec![b'n'; 30_000]).unwrap();
        for i in 0..120 {
            fs::write(
                root.join(format!("var/lib/many/a-long-file-name-{i}.conf")),
                "x",
            )
            .unwrap();
        }
    }
    let mut disks = Vec::new();
    for label in ["dos", "gpt"] {
        let disk = dir.join(format!("{label}.img"));
        fs::File::create(&disk).unwrap().set_len(24 << 20).unwrap();
        let table =
            format!(
            "label: {label}\nstart=2048, size=16384, type={}\nstart=18432, size=26624, type={}\n",
            if label == "dos" { "6" } else { "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" },
            if label == "dos" { "83" } else { "0FC63DAF-8483-4772-8E7D-6DC4D6A4B8E6" },
        );
        let script = dir.join("table.sfdisk");
        fs::write(&script, table).unwrap();
        run_ok(
            std::process::Command::new("sfdisk")
                .arg("--quiet")
                .arg(&disk)
                .stdin(fs::File::open(&script).unwrap()),
        );
        let fat = dir.join("fat.part");
        let _ = fs::remove_file(&fat);
        run_ok(
            std::process::Command::new("mkfs.vfat")
                .args(["-C", "-F", "16", "-s", "1"])
                .arg(&fat)
                .arg("8192"),
        );
        let ext = dir.join("ext.part");
        fs::File::create(&ext).unwrap().set_len(13 << 20).unwrap();
        let mut mkfs = std::process::Command::new("mkfs.ext4");
        mkfs.args(["-q", "-F", "-b", "1024"]);
        if files {
            mkfs.arg("-d").arg(&root);
            for top in ["var", "home"] {
                run_ok(
                    std::process::Command::new("mcopy")
                        .args(["-s", "-i"])
                        .arg(&fat)
                        .arg(root.join(top))
                        .arg("::/"),
                );
            }
        }
        run_ok(mkfs.arg(&ext));
        let mut image = fs::read(&disk).unwrap();
        let fat = fs::read(&fat).unwrap();
        let ext = fs::read(&ext).unwrap();
        image[1 << 20..(1 << 20) + fat.len()].copy_from_slice(&fat);
        image[9 << 20..(9 << 20) + ext.len()].copy_from_slice(&ext);
        disks.push(image);
    }
    disks
}

/// Inputs for `hostile` that each replace one of `regions` of one of `seeds`: a tag (the
/// disk, the region) and the region's bytes.
fn region_picks(seeds: &[Vec<u8>], regions: &[(usize, usize)]) -> Vec<Vec<u8>> {
    (0..seeds.len() * regions.len())
        .map(|i| {
            let (at, len) = regions[i % regions.len()];
            let mut tag = vec![(i / regions.len()) as u8, (i % regions.len()) as u8];
            tag.extend_from_slice(&seeds[i / regions.len()][at..at + len]);
            tag
        })
        .collect()
}

/// Writes input `b` (from `region_picks`) into its disk's scratch file, hands the file to
/// `look`, and puts the seed's bytes back.
fn with_region(
    b: &[u8],
    seeds: &[Vec<u8>],
    scratches: &[Scratch],
    regions: &[(usize, usize)],
    look: impl FnOnce(&fs::File),
) {
    let [disk, region, rest @ ..] = b else { return };
    let (disk, region) = (
        *disk as usize % seeds.len(),
        *region as usize % regions.len(),
    );
    let scratch = &scratches[disk];
    let (at, len) = regions[region];
    let mut bytes = seeds[disk][at..at + len].to_vec();
    let n = rest.len().min(len);
    bytes[..n].copy_from_slice(&rest[..n]);
    scratch.file.write_all_at(&bytes, at as u64).unwrap();
    look(&scratch.file);
    scratch
        .file
        .write_all_at(&seeds[disk][at..at + len], at as u64)
        .unwrap();
}

fn scratches_for(dir: &Path, seeds: &[Vec<u8>]) -> Vec<Scratch> {
    seeds
        .iter()
        .enumerate()
        .map(|(n, seed)| {
            let scratch = Scratch::new(dir, &format!("disk{n}.img"));
            scratch.holding(seed);
            scratch
        })
        .collect()
}

#[test]
fn partition_tables_and_filesystem_allocation() {
    // MBR with a FAT16 and an ext4 partition, and the same on GPT: their tables, the FAT's
    // boot sector and allocation table, ext4's superblock, group descriptors and bitmaps
    // are mutated where they lie (each input differs from the seed only there).
    let dir = tempfile::tempdir().unwrap();
    let seeds = two_partition_disks(dir.path(), false);
    // Where the metadata lies: the tables (and GPT's backup), the FAT's first sectors, the
    // ext4 superblock, descriptors and first bitmaps.
    let regions: [(usize, usize); 5] = [
        (0, 34 * 512),
        ((24 << 20) - 33 * 512, 33 * 512),
        (1 << 20, 64 << 10),
        ((9 << 20) + 1024, 8 << 10),
        ((9 << 20) + 9216, 8 << 10),
    ];
    // One file per disk, written once; each input changes one region and puts it back.
    let scratches = scratches_for(dir.path(), &seeds);
    let picks = region_picks(&seeds, &regions);
    hostile("disk-layouts", &picks, INPUTS, 80 << 10, |b: &[u8]| {
        with_region(b, &seeds, &scratches, &regions, |file| {
            let _ = usage_of_file(file, 24 << 20, "hostile.img");
        });
    });
}

#[test]
fn the_files_a_rescue_names() {
    // The same disks holding folders and files: what `read --rescue` reads to name the
    // files on unreadable blocks (FAT folders and chains; ext4 descriptors, bitmaps, inode
    // tables, extent trees and folder blocks) is mutated where it lies, and the owners of
    // ranges spread over both partitions are asked for.
    let dir = tempfile::tempdir().unwrap();
    let seeds = two_partition_disks(dir.path(), true);
    let regions: [(usize, usize); 4] = [
        (1 << 20, 64 << 10),
        ((1 << 20) + (64 << 10), 64 << 10),
        ((9 << 20) + 1024, 64 << 10),
        ((9 << 20) + (65 << 10), 64 << 10),
    ];
    let scratches = scratches_for(dir.path(), &seeds);
    let picks = region_picks(&seeds, &regions);
    let ranges: Vec<(u64, u64)> = (1..24u64)
        .map(|mib| (mib << 20, (mib << 20) + 4096))
        .chain([((1 << 20) + (70 << 10), (1 << 20) + (74 << 10))])
        .chain([((9 << 20) + (80 << 10), (9 << 20) + (84 << 10))])
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    hostile("rescued-files", &picks, INPUTS, 80 << 10, |b: &[u8]| {
        with_region(b, &seeds, &scratches, &regions, |file| {
            let held = held_in_file(file, 24 << 20, &ranges);
            assert_eq!(held.len(), ranges.len());
        });
    });
}
