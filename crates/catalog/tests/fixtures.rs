//! The real Raspberry Pi Imager lists in tests/fixtures (copied from the project's shared
//! fixtures, with their README): they load, survive a round
//! trip with every key, and filter for devices as Imager filters them. The expected counts
//! were computed by an independent Python implementation of Imager's rules.

use std::path::{Path, PathBuf};

use cardsmith_catalog::{find_device, for_device, prune_init_formats, Catalog, OsEntry};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str) -> (Vec<u8>, Catalog) {
    let bytes = std::fs::read(fixture(name)).expect("the fixture exists");
    let catalog = Catalog::from_json(&bytes).expect("a real list loads");
    (bytes, catalog)
}

fn leaves(list: &[OsEntry]) -> usize {
    list.iter()
        .map(|e| e.subitems.as_deref().map_or(1, leaves))
        .sum()
}

fn names(list: &[OsEntry]) -> Vec<&str> {
    list.iter().map(|e| e.name.as_str()).collect()
}

const LISTS: [&str; 2] = ["os_list_v4_2024-10.json", "os_list_v4_2025-11.json"];

#[test]
fn both_real_lists_survive_a_round_trip_with_every_key() {
    for name in LISTS {
        let (bytes, catalog) = load(name);
        let original: Value = serde_json::from_slice(&bytes).unwrap();
        let saved: Value = serde_json::from_str(&catalog.to_json()).unwrap();
        assert_eq!(original, saved, "{name} changed on a round trip");
    }
    let (_, newer) = load("os_list_v4_2025-11.json");
    let with_capabilities = newer
        .os_list
        .iter()
        .any(|e| e.extra.contains_key("capabilities"));
    assert!(with_capabilities, "capabilities is kept as an unknown key");
}

#[test]
fn filtering_for_the_pi_5_and_the_pi_4_matches_imager() {
    let expected = [
        ("os_list_v4_2024-10.json", 151, [(9, 46), (10, 112)]),
        ("os_list_v4_2025-11.json", 174, [(10, 85), (10, 131)]),
    ];
    for (name, all, [pi5, pi4]) in expected {
        let (_, mut catalog) = load(name);
        assert!(
            prune_init_formats(&mut catalog.os_list).is_empty(),
            "{name}: every format is known"
        );
        assert_eq!(leaves(&catalog.os_list), all, "{name}");
        let devices = catalog.devices().to_vec();
        let five = find_device(&devices, "Raspberry Pi 5").unwrap();
        assert!(!five.is_inclusive(), "the Pi 5 matches exclusively");
        let four = find_device(&devices, "raspberry pi 4").unwrap();
        assert!(four.is_inclusive());
        let for_five = for_device(&catalog.os_list, &five);
        let for_four = for_device(&catalog.os_list, &four);
        assert_eq!((for_five.len(), leaves(&for_five)), pi5, "{name}: Pi 5");
        assert_eq!((for_four.len(), leaves(&for_four)), pi4, "{name}: Pi 4");
        let no_filter = find_device(&devices, "No filtering").unwrap();
        assert_eq!(leaves(&for_device(&catalog.os_list, &no_filter)), all);
    }
    let (_, catalog) = load("os_list_v4_2024-10.json");
    let devices = catalog.devices().to_vec();
    let legacy = "Raspberry Pi OS (Legacy, 32-bit)";
    let five = for_device(
        &catalog.os_list,
        &find_device(&devices, "Raspberry Pi 5").unwrap(),
    );
    assert!(
        !names(&five).contains(&legacy),
        "no legacy 32-bit OS for the Pi 5"
    );
    let four = for_device(
        &catalog.os_list,
        &find_device(&devices, "Raspberry Pi 4").unwrap(),
    );
    assert!(names(&four).contains(&legacy));
}

#[test]
fn a_tag_names_a_device_of_its_own() {
    let (_, catalog) = load("os_list_v4_2024-10.json");
    let devices = catalog.devices().to_vec();
    let only_64 = find_device(&devices, "pi4-64bit").unwrap();
    assert_eq!(only_64.tags(), ["pi4-64bit"]);
    assert!(
        only_64.is_inclusive(),
        "the Pi 4's matching type comes along"
    );
    let err = find_device(&devices, "Raspberry Pi 6")
        .unwrap_err()
        .to_string();
    assert!(err.contains("Raspberry Pi 5"), "{err}");
}
