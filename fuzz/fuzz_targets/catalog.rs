//! Raspberry Pi Imager catalogs (os_list JSON and sublists) and their locations.
#![no_main]

use cardsmith_catalog::{Catalog, Location};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|json: &[u8]| {
    let location = Location::parse("https://example.com/os_list.json");
    if let Ok(catalog) = Catalog::parse(json, &location) {
        for device in catalog.devices() {
            let _ = cardsmith_catalog::for_device(&catalog.os_list, device);
        }
        let _ = cardsmith_catalog::prune_init_formats(&mut catalog.os_list.clone());
    }
    let _ = Location::parse(&String::from_utf8_lossy(json));
});
