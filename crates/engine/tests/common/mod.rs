//! Helpers the engine's witness tests share: run a tool that must succeed, make an
//! OS-like image with scripts/os-image.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::process::Command;

/// Runs a tool that must succeed; returns what it printed on standard output.
#[track_caller]
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (the test command installs the tools)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Raspberry-Pi-OS-like image at `image` (scripts/os-image): a FAT32 boot partition of
/// `boot_mib` and an ext4 root of `root_mib` filled from the folder `root`.
pub fn make_os_image(image: &Path, boot_mib: u32, root_mib: u32, root: &Path) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/os-image");
    run(Command::new(script)
        .arg(image)
        .args([boot_mib.to_string(), root_mib.to_string()])
        .arg(root));
}
