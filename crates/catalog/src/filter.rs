//! Which entries a user is shown: those whose `init_format` cardsmith understands, and,
//! once a device is chosen, those made for it. Follows Raspberry Pi Imager's rules.

use crate::model::{Device, OsEntry, INIT_FORMATS};

/// Drops entries whose `init_format` is not one cardsmith knows, and categories left with
/// nothing in them. Entries without an `init_format` take their category's, as in Imager.
/// Returns the names of the entries dropped for their format.
pub fn prune_init_formats(list: &mut Vec<OsEntry>) -> Vec<String> {
    let mut dropped = Vec::new();
    prune(list, None, &mut dropped);
    dropped
}

fn prune(list: &mut Vec<OsEntry>, inherited: Option<&str>, dropped: &mut Vec<String>) {
    list.retain_mut(|entry| {
        if entry.init_format.is_none() {
            entry.init_format = inherited.map(str::to_owned);
        }
        let format = entry.init_format.clone();
        if let Some(f) = format.as_deref().filter(|f| !INIT_FORMATS.contains(f)) {
            dropped.push(format!("{} (init_format {f:?})", entry.name));
            return false;
        }
        match &mut entry.subitems {
            Some(children) => {
                prune(children, format.as_deref(), dropped);
                !children.is_empty()
            }
            None => true,
        }
    });
}

/// The entries `device` can run. An entry that names devices stays when one of them is
/// among the device's tags; one that names none stays only for an "inclusive" device; a
/// device without tags filters nothing. Categories stay when something inside them stays.
/// Entries of the device's architecture come first, in catalog order.
pub fn for_device(list: &[OsEntry], device: &Device) -> Vec<OsEntry> {
    if device.tags().is_empty() {
        return list.to_vec();
    }
    let mut kept: Vec<OsEntry> = list
        .iter()
        .filter_map(|entry| match &entry.subitems {
            Some(children) => {
                let children = for_device(children, device);
                (!children.is_empty()).then(|| OsEntry {
                    subitems: Some(children),
                    ..entry.clone()
                })
            }
            None => runs_on(entry, device).then(|| entry.clone()),
        })
        .collect();
    if let Some(arch) = &device.architecture {
        // A stable sort on "not this architecture": matching entries move to the front.
        kept.sort_by_key(|e| e.architecture.as_ref() != Some(arch));
    }
    kept
}

fn runs_on(entry: &OsEntry, device: &Device) -> bool {
    match &entry.devices {
        Some(names) => names.iter().any(|n| device.tags().contains(n)),
        None => device.is_inclusive(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(name: &str, devices: Option<&[&str]>) -> OsEntry {
        OsEntry {
            name: name.into(),
            devices: devices.map(|d| d.iter().map(|s| s.to_string()).collect()),
            ..OsEntry::default()
        }
    }

    fn device(tags: &[&str], matching: Option<&str>) -> Device {
        Device {
            name: "test".into(),
            tags: Some(tags.iter().map(|s| s.to_string()).collect()),
            matching_type: matching.map(str::to_owned),
            ..Device::default()
        }
    }

    fn names(list: &[OsEntry]) -> Vec<&str> {
        list.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn exclusive_is_the_default_and_drops_entries_naming_no_device() {
        let list = [
            os("any", None),
            os("pi5", Some(&["pi5-64bit"])),
            os("pi4", Some(&["pi4-64bit"])),
        ];
        assert_eq!(
            names(&for_device(&list, &device(&["pi5-64bit"], None))),
            ["pi5"]
        );
        let inclusive = device(&["pi4-64bit"], Some("inclusive"));
        assert_eq!(names(&for_device(&list, &inclusive)), ["any", "pi4"]);
        assert_eq!(
            names(&for_device(&list, &device(&[], None))),
            ["any", "pi5", "pi4"]
        );
    }

    #[test]
    fn categories_stay_only_with_something_inside() {
        let mut full = os("Other", None);
        full.subitems = Some(vec![
            os("pi4 only", Some(&["pi4-64bit"])),
            os("pi5 only", Some(&["pi5-64bit"])),
        ]);
        let mut empty = os("Empty", None);
        empty.subitems = Some(vec![os("pi4 again", Some(&["pi4-64bit"]))]);
        let kept = for_device(&[full, empty], &device(&["pi5-64bit"], None));
        assert_eq!(names(&kept), ["Other"]);
        assert_eq!(names(kept[0].subitems.as_ref().unwrap()), ["pi5 only"]);
    }

    #[test]
    fn the_devices_architecture_comes_first() {
        let mut a = os("32", Some(&["t"]));
        a.architecture = Some("armhf".into());
        let mut b = os("64", Some(&["t"]));
        b.architecture = Some("arm64".into());
        let mut dev = device(&["t"], None);
        dev.architecture = Some("arm64".into());
        assert_eq!(names(&for_device(&[a, b], &dev)), ["64", "32"]);
    }

    #[test]
    fn unknown_init_formats_and_emptied_categories_go() {
        let mut cat = os("Cat", None);
        cat.init_format = Some("future-format".into());
        cat.subitems = Some(vec![os("inherits it", None)]);
        let mut ok = os("Fine", None);
        ok.init_format = Some("cloudinit-rpi".into());
        let mut preseed = os("Preseeded", None);
        preseed.init_format = Some("rpi-preseed".into());
        let mut list = vec![cat, ok, os("No format", None), preseed];
        let dropped = prune_init_formats(&mut list);
        assert_eq!(names(&list), ["Fine", "No format"]);
        assert_eq!(
            dropped,
            [
                "Cat (init_format \"future-format\")",
                "Preseeded (init_format \"rpi-preseed\")"
            ]
        );
    }
}
