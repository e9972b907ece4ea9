//! The fonts the wizard bundles so that every language renders whatever fonts the desktop
//! has. iced draws text with cosmic-text, in its bundled Fira Sans (Latin, Greek,
//! Cyrillic); for a character Fira Sans lacks, cosmic-text falls back to the other fonts
//! it knows: the system's, and these. Without them Japanese, Chinese, Korean, Hebrew,
//! Bengali and Georgian show as boxes on a desktop that has no font for them.
//!
//! They are subsets of Noto fonts (SIL Open Font License 1.1) holding just the characters
//! `locales/*.yml` and the language names use, made by `scripts/fonts`; see
//! `assets/fonts/README.md`. Rerun that script whenever a locale file changes: the test
//! below fails, naming the characters, until it has been.

/// The bundled fonts, in the order they are to be loaded. Load each into iced at start,
/// before the first text is laid out:
///
/// ```ignore
/// let mut application = iced::application(boot, App::update, App::view);
/// for font in fonts::FONTS {
///     application = application.font(font);
/// }
/// ```
///
/// (and the same for `iced_test`'s `Settings::fonts` where a test renders text). They
/// register the families of [`FAMILIES`], names of their own, so they never stand in for
/// a complete Noto font the system may have: cosmic-text tries the system's fonts for a
/// script first and takes these when nothing else has the character. Where several of
/// them have a character (the CJK ones share Han characters and full-width punctuation),
/// the one loaded first wins, hence SC first, as cosmic-text's own Han fallback prefers it.
pub const FONTS: [&[u8]; 7] = [
    include_bytes!("../../../../assets/fonts/cardsmith-cjk-sc.otf"),
    include_bytes!("../../../../assets/fonts/cardsmith-cjk-jp.otf"),
    include_bytes!("../../../../assets/fonts/cardsmith-cjk-tc.otf"),
    include_bytes!("../../../../assets/fonts/cardsmith-cjk-kr.otf"),
    include_bytes!("../../../../assets/fonts/cardsmith-hebrew.ttf"),
    include_bytes!("../../../../assets/fonts/cardsmith-bengali.ttf"),
    include_bytes!("../../../../assets/fonts/cardsmith-georgian.ttf"),
];

/// The family name each of [`FONTS`] registers, in the same order. Each CJK font is cut
/// from the Noto Sans CJK face made for its language (zh-CN, ja, zh-TW, ko) and also holds
/// printable ASCII and full-width punctuation, so `iced::Font::with_name` with one of
/// these gives a whole text that language's own glyph shapes.
#[cfg_attr(not(test), allow(dead_code))]
pub const FAMILIES: [&str; 7] = [
    "cardsmith CJK SC",
    "cardsmith CJK JP",
    "cardsmith CJK TC",
    "cardsmith CJK KR",
    "cardsmith Hebrew",
    "cardsmith Bengali",
    "cardsmith Georgian",
];

/// [`FONTS`] in the order to load them for `language`: its own CJK face first, so the
/// Han characters the CJK fonts share take that language's shapes (the language chosen
/// at start; one picked later in Options keeps the order of the start).
pub fn for_language(language: &str) -> Vec<&'static [u8]> {
    let own = match language {
        "ja" => Some(1),
        "zh-TW" => Some(2),
        "ko" => Some(3),
        _ => None,
    };
    let mut fonts: Vec<&'static [u8]> = own.map(|i| FONTS[i]).into_iter().collect();
    fonts.extend(
        FONTS
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != own)
            .map(|(_, f)| *f),
    );
    fonts
}

#[cfg(test)]
mod tests {
    use super::{FAMILIES, FONTS};
    use std::collections::BTreeSet;
    use std::path::Path;
    use ttf_parser::Face;

    /// Fira Sans as iced draws it: the very file `iced_graphics` embeds (its `fira-sans`
    /// feature is on, through iced and `iced_test` alike).
    const FIRA_SANS: &[u8] = iced_test::renderer::graphics::text::FIRA_SANS_REGULAR;

    const LOCALES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../locales");

    fn faces() -> Vec<Face<'static>> {
        std::iter::once(FIRA_SANS)
            .chain(FONTS)
            .enumerate()
            .map(|(i, data)| {
                Face::parse(data, 0).unwrap_or_else(|e| panic!("font {i} does not parse: {e}"))
            })
            .collect()
    }

    /// The characters of `text` that no font has, sorted (line breaks and other control
    /// characters need no glyph).
    fn missing(text: &str, faces: &[Face]) -> BTreeSet<char> {
        text.chars()
            .filter(|c| !c.is_control())
            .filter(|&c| !faces.iter().any(|face| face.glyph_index(c).is_some()))
            .collect()
    }

    fn listed(chars: &BTreeSet<char>) -> String {
        chars
            .iter()
            .map(|c| format!("{c} U+{:04X}", u32::from(*c)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The values of a flat locale file, one `key: value` a line as rust-i18n reads them:
    /// double-quoted (with YAML's escapes), single-quoted or plain.
    fn values(yaml: &str) -> Vec<String> {
        yaml.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(|line| line.split_once(':'))
            .map(|(_, value)| unquote(value.trim()))
            .collect()
    }

    fn unquote(value: &str) -> String {
        if let Some(inner) = value.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some('r') => out.push('\r'),
                        Some('0') => out.push('\0'),
                        Some('_') => out.push('\u{a0}'),
                        Some(kind @ ('x' | 'u' | 'U')) => {
                            let digits = match kind {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let hex: String = chars.by_ref().take(digits).collect();
                            out.extend(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32));
                        }
                        Some(other) => out.push(other),
                        None => {}
                    },
                    c => out.push(c),
                }
            }
            out
        } else if let Some(inner) = value.strip_prefix('\'') {
            let inner = inner.strip_suffix('\'').unwrap_or(inner);
            inner.replace("''", "'")
        } else {
            value.split(" #").next().unwrap_or(value).to_string()
        }
    }

    #[test]
    fn every_character_of_every_language_has_a_glyph() {
        let faces = faces();
        let mut files: Vec<_> = std::fs::read_dir(LOCALES)
            .unwrap_or_else(|e| panic!("{LOCALES}: {e}"))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "yml"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no locale files in {LOCALES}");

        let mut failures = Vec::new();
        for path in &files {
            let yaml = std::fs::read_to_string(path).unwrap();
            let gone = missing(&values(&yaml).concat(), &faces);
            if !gone.is_empty() {
                let name = path.file_name().map_or(path.as_path(), Path::new);
                failures.push(format!("locales/{}: {}", name.display(), listed(&gone)));
            }
        }
        assert!(
            failures.is_empty(),
            "characters in neither Fira Sans nor the bundled fonts (rerun scripts/fonts):\n{}",
            failures.join("\n")
        );
    }

    #[test]
    fn every_language_name_has_a_glyph() {
        let faces = faces();
        let failures: Vec<_> = crate::gui::LANGUAGES
            .iter()
            .filter_map(|(code, name)| {
                let gone = missing(name, &faces);
                (!gone.is_empty()).then(|| format!("{code} ({name}): {}", listed(&gone)))
            })
            .collect();
        assert!(
            failures.is_empty(),
            "language names the fonts cannot draw (add them to ENDONYMS in scripts/fonts):\n{}",
            failures.join("\n")
        );
    }

    #[test]
    fn the_bundled_fonts_register_their_families() {
        for (data, family) in FONTS.iter().zip(FAMILIES) {
            let face = Face::parse(data, 0).unwrap();
            let names: Vec<String> = face
                .names()
                .into_iter()
                .filter(|name| name.name_id == ttf_parser::name_id::FAMILY)
                .filter_map(|name| name.to_string())
                .collect();
            assert!(
                names.iter().any(|name| name == family),
                "{family}: {names:?}"
            );
        }
    }
}
