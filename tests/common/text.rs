//! Reading what witness tools print (debugfs, dumpe2fs, minfo, mshowfat): shared by the
//! end-to-end tests and, through `#[path]`, the engine's unit tests.

/// The number that follows `prefix` in `text` (after any blanks): `number_after("Block
/// size:   4096", "Block size:")` is 4096. Panics, naming both, when there is none.
pub fn number_after(text: &str, prefix: &str) -> u64 {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix:?} in {text}"));
    text[at + prefix.len()..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number after {prefix:?} in {text}"))
}
