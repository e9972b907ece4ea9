//! bmaptool block maps (.bmap XML, formats 1.x and 2.0), as fetched beside an image.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &[u8]| {
    let _ = cardsmith_engine::Bmap::parse(text, "fuzz.bmap");
});
