//! A disk image: its partition table, the allocation of its filesystems (the map a
//! used-blocks write or backup relies on), and what `read --rescue` names on unreadable
//! ranges spread over it (ext2/3/4 inodes, extent trees, folders; FAT folders and chains).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|disk: &[u8]| {
    let size = disk.len() as u64;
    let ranges: Vec<(u64, u64)> = (0..8u64)
        .map(|i| (i * size / 8, (i * size / 8 + 4096).min(size)))
        .filter(|(a, b)| a < b)
        .collect();
    let mut sorted = ranges;
    sorted.dedup_by(|b, a| b.0 < a.1);
    let held = cardsmith_engine::held_in_bytes(disk, &sorted);
    assert_eq!(held.len(), sorted.len());
});
