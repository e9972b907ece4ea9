//! The OS catalog and downloads against a real HTTP server on 127.0.0.1 that this test
//! starts, and that drops connections, stalls, fails, lies and ignores Range on purpose.
//! Targets are files, or loop devices the test creates and detaches. Each test has a cache
//! directory of its own (XDG_CACHE_HOME).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::http::{Fault, Server};
use common::*;
use serde_json::{json, Value};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../os-list-sample");

/// A test's directory, with a cache of its own.
struct Bench {
    dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        Bench {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cache(&self) -> PathBuf {
        self.path("xdg-cache")
    }

    fn run(&self, args: &[&str]) -> Output {
        cardsmith_env(args, &[("XDG_CACHE_HOME", &self.cache())])
    }

    /// The cached downloads, from `cardsmith cache list --json`.
    fn cached(&self) -> Vec<Value> {
        let out = self.run(&["cache", "list", "--json"]);
        assert_ok(&out);
        let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
        doc["entries"].as_array().unwrap().clone()
    }
}

fn sample(name: &str) -> Vec<u8> {
    fs::read(Path::new(SAMPLE).join(name)).unwrap()
}

fn sha256_hex(data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data");
    write_file(&file, data);
    sha256sum(&file)
}

/// A catalog listing one image at `url` with its sizes and hashes.
fn catalog_for(name: &str, url: &str, download: &[u8], image: &[u8]) -> Vec<u8> {
    let doc = json!({
        "imager": {"devices": [
            {"name": "Raspberry Pi 5", "tags": ["pi5-64bit"], "matching_type": "exclusive"},
            {"name": "Raspberry Pi 4", "tags": ["pi4-64bit"], "matching_type": "inclusive"}
        ]},
        "os_list": [{
            "name": name,
            "url": url,
            "image_download_size": download.len(),
            "image_download_sha256": sha256_hex(download),
            "extract_size": image.len(),
            "extract_sha256": sha256_hex(image),
            "init_format": "systemd",
            "devices": ["pi4-64bit"]
        }]
    });
    serde_json::to_vec_pretty(&doc).unwrap()
}

/// The demo image, compressed and not.
fn demo() -> (Vec<u8>, Vec<u8>) {
    let xz = sample("demo-systemd.img.xz");
    let dir = tempfile::tempdir().unwrap();
    let packed = dir.path().join("demo.img.xz");
    write_file(&packed, &xz);
    let out = tool("xz", &["-dc", packed.to_str().unwrap()]);
    (xz, out.stdout)
}

/// A card: a loop device over a file of 0xAA.
fn card(bench: &Bench, len: usize) -> (PathBuf, LoopDevice) {
    let backing = bench.path("card.bin");
    filled_file(&backing, len, 0xAA);
    let dev = LoopDevice::attach(&backing);
    (backing, dev)
}

#[track_caller]
fn assert_first_mib_zeroed(backing: &Path) {
    assert!(
        read_range(backing, 0, MIB).iter().all(|&b| b == 0),
        "the first MiB still holds data: the card could boot"
    );
}

#[test]
fn the_catalog_inlines_nested_sublists_and_leaves_out_cycles_and_deep_chains() {
    let server = Server::start();
    let bench = Bench::new();
    let top_list = serde_json::to_vec(&json!({"os_list": [
        {"name": "Top image", "url": "images/top.img.xz", "init_format": "systemd"},
        {"name": "Nested", "subitems_url": "sub/a.json"},
        {"name": "Loop", "subitems_url": format!("{}", server.url("/lists/cycle.json"))},
        {"name": "Deep", "subitems_url": "/deep/0.json"},
        {"name": "Future", "url": "x.img", "init_format": "something-new"},
        {"name": "Sneaky", "url": "file:///etc/hostname"},
        {"name": "Sneaky list", "subitems_url": "/etc/passwd"},
        {"name": "Broken", "subitems_url": "missing.json"},
        {"name": "Huge", "subitems_url": "huge.json"}
    ],
    "os_list_de": [
        {"name": "Auf Deutsch", "subitems_url": "sub/a.json"}
    ]}))
    .unwrap();
    server.serve("/lists/os.json", top_list.clone());
    // A sublist over the 16 MiB limit (spaces are valid JSON padding).
    let mut huge = b"{\"os_list\": []}".to_vec();
    huge.resize(16 * MIB + 1, b' ');
    server.serve("/lists/huge.json", huge);
    // The same list under another name, for the run in German below.
    server.serve("/lists/os-de.json", top_list);
    server.serve(
        "/lists/sub/a.json",
        serde_json::to_vec(&json!({"os_list": [
            {"name": "In a", "url": "a.img.xz"},
            {"name": "Deeper", "subitems_url": "b.json"}
        ]}))
        .unwrap(),
    );
    server.serve(
        "/lists/sub/b.json",
        serde_json::to_vec(&json!({"os_list": [{"name": "In b", "url": "../b.img.xz"}]})).unwrap(),
    );
    server.serve(
        "/lists/cycle.json",
        serde_json::to_vec(&json!({"os_list": [
            {"name": "Round again", "subitems_url": "cycle.json"},
            {"name": "In the loop", "url": "loop.img"}
        ]}))
        .unwrap(),
    );
    for level in 0..20 {
        server.serve(
            &format!("/deep/{level}.json"),
            serde_json::to_vec(&json!({"os_list": [
                {"name": format!("Level {level}"), "subitems_url": format!("{}.json", level + 1)},
                {"name": format!("Image {level}"), "url": "img.img"}
            ]}))
            .unwrap(),
        );
    }
    let out = bench.run(&[
        "os",
        "list",
        "--repo",
        &server.url("/lists/os.json"),
        "--json",
    ]);
    assert_ok(&out);
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let list = &doc["os_list"];
    assert_eq!(list[0]["url"], server.url("/lists/images/top.img.xz"));
    assert_eq!(list[1]["name"], "Nested");
    assert_eq!(
        list[1]["subitems"][0]["url"],
        server.url("/lists/sub/a.img.xz")
    );
    assert_eq!(list[1]["subitems"][1]["subitems"][0]["name"], "In b");
    assert_eq!(
        list[1]["subitems"][1]["subitems"][0]["url"],
        server.url("/lists/b.img.xz")
    );
    assert_eq!(list[2]["name"], "Loop", "the loop's own image stays");
    assert_eq!(
        list[2]["subitems"].as_array().unwrap().len(),
        1,
        "{}",
        list[2]
    );
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"Future"),
        "an unknown init_format is left out: {names:?}"
    );
    let err = stderr(&out);
    assert!(err.contains("includes itself"), "{err}");
    assert!(err.contains("deeper than 16 levels"), "{err}");
    assert!(
        err.contains("Future (init_format \"something-new\")"),
        "{err}"
    );
    assert!(err.contains("(fetched just now)"), "{err}");
    assert!(
        err.contains("\"Sneaky\" is left out: a catalog from the web may not name the local file /etc/hostname"),
        "{err}"
    );
    assert!(!names.contains(&"Sneaky list"), "{names:?}");
    assert!(!names.contains(&"Broken"), "{names:?}");
    assert!(err.contains("\"Broken\""), "{err}");
    assert!(
        err.contains("huge.json is larger than 16777216 bytes"),
        "{err}"
    );
    assert!(!names.contains(&"Huge"), "{names:?}");
    // Sixteen sublist files nest below the top list (deep/0 to deep/15); deep/16 is not
    // fetched, so "Level 15" is an empty category and is left out.
    assert_eq!(server.requests("/deep/15.json").len(), 1);
    assert!(
        server.requests("/deep/16.json").is_empty(),
        "not fetched beyond the limit"
    );
    let mut deep = &list[3];
    let mut levels = Vec::new();
    while let Some(next) = deep["subitems"].as_array().and_then(|s| s.first()) {
        levels.push(next["name"].as_str().unwrap().to_owned());
        deep = next;
    }
    assert_eq!(levels.len(), 16, "{levels:?}");
    assert_eq!(levels.last().unwrap(), "Image 15", "{levels:?}");

    // The user's language picks os_list_de, whose sublists are fetched too.
    let out = cardsmith_env(
        &[
            "os",
            "list",
            "--repo",
            &server.url("/lists/os-de.json"),
            "--json",
        ],
        &[
            ("XDG_CACHE_HOME", &bench.cache()),
            ("LANG", Path::new("de_DE.UTF-8")),
        ],
    );
    assert_ok(&out);
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["os_list"][0]["name"], "Auf Deutsch");
    assert_eq!(
        doc["os_list"][0]["subitems"][0]["url"],
        server.url("/lists/sub/a.img.xz")
    );

    // A sublist was missing, so that catalog did not replace the last good copy: offline,
    // the bundled sample is shown.
    server.status("/lists/os.json", 503);
    let out = bench.run(&["os", "list", "--repo", &server.url("/lists/os.json")]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("the offline sample built into cardsmith"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn write_os_streams_checks_hashes_keeps_the_download_and_reuses_it() {
    let server = Server::start();
    let bench = Bench::new();
    let (xz, raw) = demo();
    server.serve("/demo.img.xz", xz.clone());
    server.serve("/os.json", catalog_for("Demo", "demo.img.xz", &xz, &raw));
    let repo = server.url("/os.json");
    let (backing, dev) = card(&bench, 64 * MIB);
    let image = bench.path("demo.img");
    write_file(&image, &raw);

    // Every block, so the card equals the image throughout (the used-blocks default is
    // tested in tests/bmap.rs).
    let write = |device: &str| {
        bench.run(&[
            "write",
            "--os",
            "Demo",
            "--repo",
            &repo,
            device,
            "--yes",
            "--all-blocks",
        ])
    };
    let out = write(dev.arg());
    assert_ok(&out);
    assert!(
        stderr(&out).contains("SHA-256 matched the catalog"),
        "{}",
        stderr(&out)
    );
    assert!(same_prefix(&image, &backing, raw.len() as u64));
    assert_eq!(server.requests("/demo.img.xz").len(), 1);
    let cached = bench.cached();
    assert_eq!(cached.len(), 1);
    assert_eq!(cached[0]["sha256"], sha256_hex(&xz));
    assert_eq!(cached[0]["image_sha256"], sha256_hex(&raw));

    // Again: from the cache, without a download.
    filled_file(&backing, 64 * MIB, 0xAA);
    let out = write(dev.arg());
    assert_ok(&out);
    assert!(
        stderr(&out).contains("Using the cached download"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        server.requests("/demo.img.xz").len(),
        1,
        "no second download"
    );
    assert!(same_prefix(&image, &backing, raw.len() as u64));

    // A damaged cache entry is deleted and the image downloaded again.
    let entry = bench.cache().join("cardsmith/images").join(sha256_hex(&xz));
    let mut bytes = fs::read(&entry).unwrap();
    bytes[100] ^= 1;
    fs::write(&entry, bytes).unwrap();
    let out = write(dev.arg());
    assert_ok(&out);
    assert!(stderr(&out).contains("was damaged"), "{}", stderr(&out));
    assert_eq!(server.requests("/demo.img.xz").len(), 2);
    assert_eq!(
        fs::read(&entry).unwrap(),
        xz,
        "the fresh download is cached again"
    );

    let out = bench.run(&["cache", "clear"]);
    assert_ok(&out);
    assert!(bench.cached().is_empty());
}

#[test]
fn device_filter_refuses_an_os_not_made_for_the_device() {
    let server = Server::start();
    let bench = Bench::new();
    let (xz, raw) = demo();
    server.serve("/os.json", catalog_for("Demo", "demo.img.xz", &xz, &raw));
    let repo = server.url("/os.json");
    let out = bench.run(&[
        "write",
        "--os",
        "Demo",
        "--repo",
        &repo,
        "--device",
        "Raspberry Pi 5",
        bench.path("out.img").to_str().unwrap(),
        "--yes",
    ]);
    assert_fails(&out, 1, &["is not made for Raspberry Pi 5", "pi4-64bit"]);
    assert!(!bench.path("out.img").exists());
    let out = bench.run(&["os", "list", "--repo", &repo, "--device", "Raspberry Pi 4"]);
    assert!(stdout(&out).contains("Demo"), "{}", stdout(&out));
    let out = bench.run(&["os", "list", "--repo", &repo, "--device", "pi5-64bit"]);
    assert!(
        stdout(&out).contains("No images for this device"),
        "{}",
        stdout(&out)
    );
}

/// A raw image served as a URL, written with its SHA-256: big enough that faults strike
/// in the middle of the write.
struct Served {
    server: Server,
    bench: Bench,
    raw: Vec<u8>,
    image: PathBuf,
    url: String,
}

fn served(len: usize) -> Served {
    let server = Server::start();
    let bench = Bench::new();
    let raw = image_bytes(len, 99);
    let image = bench.path("image.img");
    write_file(&image, &raw);
    server.serve("/image.img", raw.clone());
    let url = server.url("/image.img");
    Served {
        server,
        bench,
        raw,
        image,
        url,
    }
}

impl Served {
    fn write(&self, target: &str, extra: &[&str]) -> Output {
        let sha = sha256_hex(&self.raw);
        let mut args = vec!["write", &self.url, target, "--yes", "--sha256", &sha];
        args.extend_from_slice(extra);
        self.bench.run(&args)
    }
}

#[test]
fn a_dropped_connection_resumes_from_the_last_byte() {
    let s = served(9 * MIB);
    s.server
        .faults("/image.img", &[Fault::DropAt(5 * MIB as u64 + 123)]);
    let (backing, dev) = card(&s.bench, 16 * MIB);
    let out = s.write(dev.arg(), &[]);
    assert_ok(&out);
    assert!(stderr(&out).contains("resuming"), "{}", stderr(&out));
    let requests = s.server.requests("/image.img");
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(
        requests[1].range.as_deref(),
        Some(&*format!("bytes={}-", 5 * MIB + 123))
    );
    assert!(same_prefix(&s.image, &backing, s.raw.len() as u64));
    assert_eq!(s.bench.cached().len(), 1, "checked by --sha256, so kept");
}

#[test]
fn a_server_that_ignores_range_sends_no_byte_twice() {
    let s = served(9 * MIB);
    s.server.ignore_range("/image.img");
    s.server.faults(
        "/image.img",
        &[
            Fault::DropAt(3 * MIB as u64 + 7),
            Fault::DropAt(6 * MIB as u64 + 1),
        ],
    );
    let target = s.bench.path("out.img");
    let out = s.write(target.to_str().unwrap(), &[]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("ignored the resume request"),
        "{}",
        stderr(&out)
    );
    assert_eq!(s.server.requests("/image.img").len(), 3);
    assert_eq!(fs::read(&target).unwrap(), s.raw);
}

#[test]
fn a_stall_counts_as_a_drop() {
    let s = served(6 * MIB);
    s.server.faults(
        "/image.img",
        &[Fault::StallAt(2 * MIB as u64, Duration::from_secs(30))],
    );
    let target = s.bench.path("out.img");
    let started = Instant::now();
    let out = s.write(target.to_str().unwrap(), &["--stall-timeout", "1"]);
    assert_ok(&out);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(stderr(&out).contains("no data for 1 s"), "{}", stderr(&out));
    let requests = s.server.requests("/image.img");
    assert_eq!(requests.len(), 2);
    assert!(requests[1].range.is_some());
    assert_eq!(fs::read(&target).unwrap(), s.raw);
}

#[test]
fn when_every_retry_fails_the_card_does_not_boot() {
    let s = served(9 * MIB);
    let at = 6 * MIB as u64;
    s.server.faults("/image.img", &[Fault::DropAt(at); 5]);
    let (backing, dev) = card(&s.bench, 16 * MIB);
    let out = s.write(dev.arg(), &[]);
    assert_fails(
        &out,
        1,
        &["gave up after 5 attempts", &format!("at byte {at}")],
    );
    assert_eq!(s.server.requests("/image.img").len(), 5);
    assert_first_mib_zeroed(&backing);
    assert!(
        s.bench.cached().is_empty(),
        "an incomplete download is not kept"
    );
}

#[test]
fn server_errors_are_retried_and_missing_files_are_not() {
    let s = served(2 * MIB);
    s.server.status("/image.img", 500);
    let target = s.bench.path("out.img");
    let out = s.write(target.to_str().unwrap(), &[]);
    assert_fails(&out, 1, &["500", "gave up after 5 attempts"]);
    assert_eq!(s.server.requests("/image.img").len(), 5);
    assert!(!target.exists(), "nothing was written");

    let missing = s.server.url("/nothing-here.img.xz");
    let (backing, dev) = card(&s.bench, 4 * MIB);
    let out = s.bench.run(&["write", &missing, dev.arg(), "--yes"]);
    assert_fails(&out, 1, &["404"]);
    assert_eq!(
        s.server.requests("/nothing-here.img.xz").len(),
        1,
        "a 404 is not retried"
    );
    assert!(
        fs::read(&backing).unwrap().iter().all(|&b| b == 0xAA),
        "the card is untouched"
    );
}

#[test]
fn wrong_bytes_from_the_server_leave_an_unbootable_card() {
    let server = Server::start();
    let bench = Bench::new();
    let (xz, raw) = demo();
    server.serve("/demo.img.xz", xz.clone());
    server.corrupt("/demo.img.xz", xz.len() as u64 / 2);
    server.serve("/os.json", catalog_for("Demo", "demo.img.xz", &xz, &raw));
    let (backing, dev) = card(&bench, 64 * MIB);
    let out = bench.run(&[
        "write",
        "--os",
        "Demo",
        "--repo",
        &server.url("/os.json"),
        dev.arg(),
        "--yes",
    ]);
    assert!(
        matches!(out.status.code(), Some(1) | Some(4)),
        "corrupt data fails the decoder (1) or the checksum (4): {}",
        stderr(&out)
    );
    assert_first_mib_zeroed(&backing);
    assert!(
        bench.cached().is_empty(),
        "a download that failed its check is not kept"
    );

    // Raw bytes pass the decoder, so only the catalog's hash can catch them.
    let served_raw = Server::start();
    served_raw.serve("/raw.img", raw.clone());
    served_raw.corrupt("/raw.img", 20 * MIB as u64);
    served_raw.serve("/os.json", catalog_for("Raw", "raw.img", &raw, &raw));
    filled_file(&backing, 64 * MIB, 0xAA);
    let out = bench.run(&[
        "write",
        "--os",
        "Raw",
        "--repo",
        &served_raw.url("/os.json"),
        dev.arg(),
        "--yes",
    ]);
    assert_fails(&out, 4, &["SHA-256 of the download", "not", "as published"]);
    assert_first_mib_zeroed(&backing);
}

#[test]
fn offline_the_last_good_catalog_then_the_bundled_sample_is_shown() {
    let server = Server::start();
    let bench = Bench::new();
    let (xz, raw) = demo();
    server.serve("/os.json", catalog_for("Demo", "demo.img.xz", &xz, &raw));
    let repo = server.url("/os.json");
    assert_ok(&bench.run(&["os", "list", "--repo", &repo]));

    server.status("/os.json", 503);
    let out = bench.run(&["os", "list", "--repo", &repo, "--stall-timeout", "2"]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains(&format!("the cached copy of {repo} fetched")),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("just now"), "{}", stderr(&out));
    assert!(stdout(&out).contains("Demo"));

    let never = server.url("/never-fetched.json");
    let out = bench.run(&["os", "list", "--repo", &never]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("the offline sample built into cardsmith"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("cardsmith demo (systemd)"),
        "{}",
        stdout(&out)
    );

    // The bundled demo images are inside the binary: writing one needs no network.
    let target = bench.path("demo.img");
    let out = bench.run(&[
        "write",
        "--os",
        "cardsmith demo (cloud-init)",
        "--repo",
        &never,
        target.to_str().unwrap(),
        "--yes",
    ]);
    assert_ok(&out);
    let expected = tool("xz", &["-dc", &format!("{SAMPLE}/demo-cloudinit.img.xz")]).stdout;
    assert_eq!(fs::read(&target).unwrap(), expected);
}

#[test]
fn a_zip_download_is_fetched_whole_then_written() {
    let server = Server::start();
    let bench = Bench::new();
    let raw = image_bytes(3 * MIB, 5);
    let image = bench.path("os.img");
    write_file(&image, &raw);
    let zip = bench.path("os.zip");
    tool(
        "zip",
        &["-q", "-j", zip.to_str().unwrap(), image.to_str().unwrap()],
    );
    server.serve("/os.zip", fs::read(&zip).unwrap());
    let target = bench.path("out.img");
    let sha = sha256_hex(&raw);
    let out = bench.run(&[
        "write",
        &server.url("/os.zip"),
        target.to_str().unwrap(),
        "--yes",
        "--sha256",
        &sha,
    ]);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("whole first: it is a zip archive, which cannot be streamed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(&target).unwrap(), raw);
    assert_eq!(bench.cached().len(), 1);

    // From a catalog, the zip file's own hash (image_download_sha256) is checked too.
    let zipped = fs::read(&zip).unwrap();
    server.serve("/os.json", catalog_for("Zipped", "os.zip", &zipped, &raw));
    fs::remove_file(&target).unwrap();
    let out = bench.run(&[
        "write",
        "--os",
        "Zipped",
        "--repo",
        &server.url("/os.json"),
        target.to_str().unwrap(),
        "--yes",
    ]);
    assert_ok(&out);
    assert!(stderr(&out).contains("SHA-256 matched"), "{}", stderr(&out));
    assert_eq!(fs::read(&target).unwrap(), raw);
}

#[test]
fn a_download_that_keeps_moving_survives_more_drops_than_attempts() {
    let s = served(9 * MIB);
    let drops: Vec<Fault> = (1..=7)
        .map(|i| Fault::DropAt(i * MIB as u64 + 11))
        .collect();
    s.server.faults("/image.img", &drops);
    let target = s.bench.path("out.img");
    let out = s.write(target.to_str().unwrap(), &[]);
    assert_ok(&out);
    assert_eq!(s.server.requests("/image.img").len(), 8);
    assert_eq!(fs::read(&target).unwrap(), s.raw);
}

#[test]
fn a_file_that_changes_on_the_server_mid_download_is_not_spliced() {
    let s = served(9 * MIB);
    s.server
        .faults("/image.img", &[Fault::DropAt(4 * MIB as u64)]);
    s.server
        .replace_after_next("/image.img", image_bytes(10 * MIB, 7));
    let (backing, dev) = card(&s.bench, 16 * MIB);
    let out = s.write(dev.arg(), &[]);
    assert_fails(&out, 1, &["the file changed on the server"]);
    assert_first_mib_zeroed(&backing);
}

#[test]
fn a_url_without_a_known_hash_is_written_but_not_cached() {
    let s = served(2 * MIB);
    let target = s.bench.path("out.img");
    let out = s
        .bench
        .run(&["write", &s.url, target.to_str().unwrap(), "--yes"]);
    assert_ok(&out);
    assert_eq!(fs::read(&target).unwrap(), s.raw);
    assert!(
        s.bench.cached().is_empty(),
        "no cache entry without a known hash"
    );
}

#[test]
fn the_sample_catalog_follows_imagers_published_schema() {
    // Python's jsonschema is the witness; the real 2024 list shows it accepts what Imager
    // serves, and a broken copy of the sample shows it rejects.
    let schema = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../catalog/tests/fixtures/os-list-schema.json"
    );
    let check = |file: &str| {
        std::process::Command::new("python3")
            .args([
                "-c",
                "import json, sys, jsonschema\n\
                 schema = json.load(open(sys.argv[1]))\n\
                 jsonschema.validate(json.load(open(sys.argv[2])), schema)",
                schema,
                file,
            ])
            .output()
            .expect("python3 with jsonschema is needed (the test command installs it)")
    };
    let real = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../catalog/tests/fixtures/os_list_v4_2024-10.json"
    );
    let out = check(real);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sample = format!("{SAMPLE}/os_list.json");
    let out = check(&sample);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bench = Bench::new();
    let broken = bench.path("broken.json");
    let mut doc: Value = serde_json::from_slice(&fs::read(&sample).unwrap()).unwrap();
    doc["os_list"][0]["extract_size"] = json!("large");
    write_file(&broken, &serde_json::to_vec(&doc).unwrap());
    assert!(
        !check(broken.to_str().unwrap()).status.success(),
        "the witness can say no"
    );
}

#[test]
fn a_hostile_cache_index_is_reported_and_nothing_outside_the_cache_is_deleted() {
    let bench = Bench::new();
    let victim = bench.path("victim");
    write_file(&victim, b"precious");
    let images = bench.cache().join("cardsmith/images");
    fs::create_dir_all(&images).unwrap();
    let index = json!({ "entries": [
        { "sha256": "../../../victim", "url": "x", "size": 1, "last_used": 0 },
        { "sha256": victim.display().to_string(), "url": "y", "size": 1, "last_used": 0 },
    ]});
    write_file(&images.join("index.json"), index.to_string().as_bytes());
    let out = bench.run(&["cache", "list"]);
    assert_ok(&out);
    let err = stderr(&out);
    assert!(
        err.contains(
            "Download cache: the cache index named \"../../../victim\", which is not a SHA-256"
        ),
        "{err}"
    );
    assert!(stdout(&out).contains("in 0 downloads"), "{}", stdout(&out));
    assert_ok(&bench.run(&["cache", "clear"]));
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
}

#[test]
fn a_sha256_of_the_decompressed_image_finds_the_cached_download() {
    let server = Server::start();
    let bench = Bench::new();
    let raw = image_bytes(3 * MIB, 41);
    let image = bench.path("image.img");
    write_file(&image, &raw);
    let xz = bench.path("image.img.xz");
    compress("xz", &["-c"], &image, &xz);
    server.serve("/image.img.xz", fs::read(&xz).unwrap());
    let url = server.url("/image.img.xz");
    // The hash publishers print most: the decompressed image's.
    let sha = sha256_hex(&raw);
    for (round, target) in ["first.img", "second.img"].iter().enumerate() {
        let target = bench.path(target);
        let out = bench.run(&[
            "write",
            &url,
            target.to_str().unwrap(),
            "--yes",
            "--sha256",
            &sha,
        ]);
        assert_ok(&out);
        assert_eq!(fs::read(&target).unwrap(), raw);
        if round == 1 {
            assert!(
                stderr(&out).contains("Using the cached download"),
                "{}",
                stderr(&out)
            );
        }
    }
    assert_eq!(
        server.requests("/image.img.xz").len(),
        1,
        "the second write was served from the cache"
    );
}

#[test]
fn a_web_catalog_cannot_name_local_files_as_icons() {
    let server = Server::start();
    let bench = Bench::new();
    server.serve(
        "/lists/os.json",
        serde_json::to_vec(&json!({
            "imager": {"devices": [
                {"name": "Good", "icon": "icons/pi.png", "tags": []},
                {"name": "Sneaky device", "icon": "file:///etc/shadow", "tags": []}
            ]},
            "os_list": [
                {"name": "Relative", "url": "a.img", "icon": "icons/a.png"},
                {"name": "Absolute path", "url": "b.img", "icon": "/etc/passwd"},
                {"name": "File URL", "url": "c.img", "icon": "file:///etc/hostname"},
                {"name": "Sub", "subitems_url": "sub/list.json"}
            ]
        }))
        .unwrap(),
    );
    server.serve(
        "/lists/sub/list.json",
        serde_json::to_vec(&json!({"os_list": [
            {"name": "In sub", "url": "d.img", "icon": "d.png"}
        ]}))
        .unwrap(),
    );
    let repo = server.url("/lists/os.json");
    let out = bench.run(&["os", "list", "--repo", &repo, "--json"]);
    assert_ok(&out);
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let list = &doc["os_list"];
    assert_eq!(list[0]["icon"], server.url("/lists/icons/a.png"));
    // A path on a web catalog is a path on its server, not on this computer.
    assert_eq!(list[1]["icon"], server.url("/etc/passwd"));
    assert_eq!(list[2]["icon"], Value::Null, "{}", list[2]);
    assert_eq!(
        list[3]["subitems"][0]["icon"],
        server.url("/lists/sub/d.png"),
        "relative to the sublist that names it"
    );
    let err = stderr(&out);
    assert!(
        err.contains(
            "the icon of \"File URL\" is left out: a catalog from the web may not name the local file /etc/hostname"
        ),
        "{err}"
    );
    let out = bench.run(&["devices", "--repo", &repo, "--json"]);
    assert_ok(&out);
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["devices"][0]["icon"], server.url("/lists/icons/pi.png"));
    assert_eq!(doc["devices"][1]["icon"], Value::Null);
}

#[test]
fn a_catalog_block_map_is_fetched_and_written_by() {
    let server = Server::start();
    let bench = Bench::new();
    let (xz, raw) = demo();
    // The map, made by bmaptool from the image with its free space turned into holes.
    let image = bench.path("demo.img");
    write_file(&image, &raw);
    tool("fallocate", &["--dig-holes", image.to_str().unwrap()]);
    let map_path = bench.path("demo.img.bmap");
    bmaptool_create(&image, &map_path);
    let map = fs::read(&map_path).unwrap();
    server.serve("/demo.img.xz", xz.clone());
    server.serve("/demo.img.bmap", map.clone());
    let mut doc: serde_json::Value =
        serde_json::from_slice(&catalog_for("Demo", "demo.img.xz", &xz, &raw)).unwrap();
    doc["os_list"][0]["bmap_url"] = json!("demo.img.bmap");
    server.serve("/os.json", serde_json::to_vec(&doc).unwrap());
    let repo = server.url("/os.json");
    let (backing, dev) = card(&bench, 64 * MIB);
    let out = bench.run(&[
        "write",
        "--os",
        "Demo",
        "--repo",
        &repo,
        dev.arg(),
        "--yes",
        "--json",
    ]);
    assert_ok(&out);
    let result = json_lines(&out).pop().unwrap();
    assert_eq!(result["block_map"], server.url("/demo.img.bmap"));
    let written = result["bytes_written"].as_u64().unwrap();
    assert!(written < raw.len() as u64 / 4, "{result}");
    assert_eq!(server.requests("/demo.img.bmap").len(), 1);
    // Where bmaptool's map says data is, the card holds the image; elsewhere still 0xAA.
    let card = fs::read(&backing).unwrap();
    let text = String::from_utf8_lossy(&map);
    let mut untouched = 0;
    let mut mapped = vec![false; raw.len().div_ceil(4096)];
    for (a, b) in bmap_ranges(&text) {
        mapped[a as usize / 4096..(b as usize).div_ceil(4096)].fill(true);
    }
    for (block, is_mapped) in mapped.iter().enumerate() {
        let at = block * 4096;
        let end = (at + 4096).min(raw.len());
        if *is_mapped {
            assert!(card[at..end] == raw[at..end], "mapped block {block}");
        } else if card[at..end].iter().all(|&b| b == 0xAA) {
            untouched += 1;
        }
    }
    assert!(
        untouched * 4096 >= raw.len() - written as usize - 2 * MIB,
        "{untouched}"
    );

    // A map for another image: refused, the card's first MiB zeroed or untouched.
    let mut other = doc.clone();
    other["os_list"][0]["bmap_url"] = json!("other.bmap");
    let small = bench.path("other.img");
    write_file(&small, &vec![1u8; 8192]);
    let other_map = bench.path("other.bmap");
    bmaptool_create(&small, &other_map);
    server.serve("/other.bmap", fs::read(&other_map).unwrap());
    server.serve("/os.json", serde_json::to_vec(&other).unwrap());
    let out = bench.run(&["write", "--os", "Demo", "--repo", &repo, dev.arg(), "--yes"]);
    assert_fails(&out, 1, &["it belongs to another image"]);
}
