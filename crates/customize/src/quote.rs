//! Quoting for the languages settings land in: POSIX sh and YAML.

/// A POSIX sh word that is exactly `bytes`: single-quoted, with each `'` written as
/// `'\''`. Every other byte (newline, `$`, backslash, bytes that are not UTF-8) stands for
/// itself inside single quotes. NUL cannot be passed to a command at all; callers refuse it.
pub fn sh(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.push(b'\'');
    for &b in bytes {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// A YAML double-quoted scalar that is exactly `text`.
pub fn yaml(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if printable(c) => out.push(c),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// YAML 1.1's printable set (what PyYAML accepts unescaped), without the line breaks and
/// marks a loader may treat specially (U+0085, U+2028, U+2029, the byte order mark).
fn printable(c: char) -> bool {
    matches!(c as u32, 0x20..=0x7e | 0xa0..=0xd7ff | 0xe000..=0xfffd | 0x10000..=0x10ffff)
        && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_quotes_keep_every_byte() {
        assert_eq!(sh(b"it's"), b"'it'\\''s'");
        assert_eq!(sh(b"$HOME \\ \n\xff"), b"'$HOME \\ \n\xff'");
        assert_eq!(sh(b""), b"''");
    }

    #[test]
    fn yaml_quotes_escape_what_yaml_would_read_otherwise() {
        assert_eq!(yaml(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(yaml("line\nnext\u{1}"), r#""line\nnext\x01""#);
        assert_eq!(yaml("yes"), r#""yes""#);
        assert_eq!(
            yaml("\u{85}\u{9f}\u{fffe}\u{2028}é"),
            r#""\x85\x9f\ufffe\u2028é""#
        );
    }
}
