//! The sample catalog and its demo images, built into the binary: the catalog of last
//! resort when nothing can be fetched, and a demo that needs no network.

/// The bundled catalog's name; its image URLs are relative to it.
pub const CATALOG: &str = "os_list.json";

const FILES: [(&str, &[u8]); 3] = [
    (
        CATALOG,
        include_bytes!("../../../os-list-sample/os_list.json"),
    ),
    (
        "demo-systemd.img.xz",
        include_bytes!("../../../os-list-sample/demo-systemd.img.xz"),
    ),
    (
        "demo-cloudinit.img.xz",
        include_bytes!("../../../os-list-sample/demo-cloudinit.img.xz"),
    ),
];

/// A bundled file by name.
pub fn file(name: &str) -> Option<&'static [u8]> {
    FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
}
