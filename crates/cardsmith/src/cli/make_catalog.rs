//! `cardsmith os make-catalog DIR`: a folder of images turned into a catalog in Raspberry
//! Pi Imager's v4 format, for an offline bench. Each image (any format cardsmith writes) is
//! decoded once into an unnamed temporary file: its size and SHA-256 come from that, the
//! download's from the file as stored, and `init_format`, the description and the release
//! date from its boot and root filesystems, read the way `cardsmith inspect` reads them.
//! URLs are relative to the catalog (or under `--base-url`), so the folder can be copied to
//! a USB stick or served by any web server.

use std::fs;
use std::path::{Path, PathBuf};

use cardsmith_catalog::{Catalog, OsEntry};
use cardsmith_engine::{self as engine, units, CancelToken, Format, Image, Input, OpenAs};
use clap::Args;
use serde_json::json;

use super::report::Reporter;
use crate::job::Failure;

#[derive(Args)]
pub struct MakeCatalogArgs {
    /// The folder of images (.img, .iso, .wic, and .xz, .gz, .bz2, .zst or .zip of them),
    /// searched with its subfolders
    dir: PathBuf,
    /// The catalog to write (default: DIR/os_list.json)
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Where the folder will be served from (http(s)://host/path/); without it, URLs are
    /// relative to the catalog, so it works wherever the folder is copied
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// A device tag the images run on (repeatable; as in `cardsmith devices`, e.g.
    /// pi5-64bit); default: every device the catalog lists
    #[arg(long = "device", value_name = "TAG")]
    devices: Vec<String>,
    /// Replace an existing catalog file
    #[arg(long)]
    force: bool,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

impl MakeCatalogArgs {
    pub fn json(&self) -> bool {
        self.json
    }
}

/// Extensions of raw images (compressed ones are known by their content).
const RAW: [&str; 4] = ["img", "iso", "wic", "raw"];
const PACKED: [&str; 5] = ["xz", "gz", "bz2", "zst", "zip"];

/// The image files under `dir`, sorted, by their names (a compressed one by its content
/// too, in `entry`).
fn images_in(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_lowercase();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            images_in(&path, out)?;
            continue;
        }
        let ext = name.rsplit('.').next().unwrap_or_default();
        if RAW.contains(&ext) || PACKED.contains(&ext) {
            out.push(path);
        }
    }
    Ok(())
}

/// `path` relative to `base`, with `/` between the parts and each part percent-encoded
/// where a URL needs it.
fn relative_url(path: &Path, base: &Path) -> Option<String> {
    let rel = path.strip_prefix(base).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        char::from(b).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        })
        .collect();
    Some(parts.join("/"))
}

/// The image's name without its extensions: `2025-11-24-raspios-trixie-arm64.img.xz` gives
/// `2025-11-24-raspios-trixie-arm64`.
fn stem(path: &Path) -> String {
    let mut name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    while let Some((head, ext)) = name.rsplit_once('.') {
        let ext = ext.to_lowercase();
        if !(RAW.contains(&ext.as_str()) || PACKED.contains(&ext.as_str())) || head.is_empty() {
            break;
        }
        name = head.to_owned();
    }
    name
}

/// A release date: the one issue.txt gives (Raspberry Pi OS: "reference 2025-11-24"), else
/// a date at the start of the file's name, else the file's modification day.
fn release_date(path: &Path, issue: Option<&str>) -> String {
    let dated = |text: &str| -> Option<String> {
        let at = text.find("reference ")? + "reference ".len();
        let date = text.get(at..at + 10)?;
        is_date(date).then(|| date.to_owned())
    };
    if let Some(date) = issue.and_then(dated) {
        return date;
    }
    let name = stem(path);
    if let Some(date) = name.get(..10).filter(|d| is_date(d)) {
        return date.to_owned();
    }
    let modified = fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    civil_date(modified / 86400)
}

fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// The calendar date of day `days` since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil_date(days: u64) -> String {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The icon written beside the catalog for images that have none of their own.
const ICON: &str = "cardsmith-image.png";

/// An icon beside the image (`NAME.png` or `NAME.svg`, NAME its name without extensions),
/// relative to the catalog.
fn own_icon(path: &Path, base: &Path) -> Option<String> {
    let name = stem(path);
    ["png", "svg"]
        .iter()
        .map(|ext| path.with_file_name(format!("{name}.{ext}")))
        .find(|icon| icon.is_file())
        .and_then(|icon| relative_url(&icon, base))
}

/// One image's catalog entry.
fn entry(
    path: &Path,
    url: String,
    scratch: &Path,
    cancel: &CancelToken,
) -> Result<OsEntry, Failure> {
    let input = Input::Path(path.to_owned());
    let download = engine::hash(
        Image::open(&input, OpenAs::Raw)?,
        engine::Algorithm::Sha256,
        cancel,
        &mut |_| {},
    )?;
    let image = Image::open(&input, OpenAs::Detect)?;
    if image.format() == Format::Raw {
        let ext = path
            .extension()
            .unwrap_or_default()
            .to_string_lossy()
            .to_lowercase();
        if PACKED.contains(&ext.as_str()) {
            return Err(Failure::Refused(format!(
                "{} is named as compressed but is not",
                path.display()
            )));
        }
    }
    let unpacked = engine::unpack(image, scratch, cancel)?;
    let extract = engine::hash(
        Image::open(&Input::Path(unpacked.path()), OpenAs::Raw)?,
        engine::Algorithm::Sha256,
        cancel,
        &mut |_| {},
    )?;
    let examined = cardsmith_customize::examine(&unpacked.file, path, None);
    let (init_format, description, issue) = match &examined {
        Ok(found) => {
            let os = found.os_name().map(str::to_owned);
            let format = found
                .choice
                .as_ref()
                .map_or("none", |c| c.format.name())
                .to_owned();
            (format, os, issue_txt(&unpacked.file))
        }
        // No boot partition cardsmith can read: written as it is, with no settings.
        Err(_) => ("none".to_owned(), None, None),
    };
    Ok(OsEntry {
        name: stem(path),
        description: Some(description.unwrap_or_else(|| {
            format!(
                "{} image",
                path.file_name().unwrap_or_default().to_string_lossy()
            )
        })),
        url: Some(url),
        release_date: Some(release_date(path, issue.as_deref())),
        extract_size: Some(extract.bytes),
        extract_sha256: Some(extract.hex),
        image_download_size: Some(download.bytes),
        image_download_sha256: Some(download.hex),
        init_format: Some(init_format),
        ..OsEntry::default()
    })
}

/// The device models of the bundled catalog (Raspberry Pi Imager's), for the catalog's
/// own list: `os list --device` and the wizard's device step work offline with it.
fn bundled_imager() -> Option<cardsmith_catalog::Imager> {
    let bytes = cardsmith_catalog::bundled::file(cardsmith_catalog::bundled::CATALOG)?;
    Catalog::from_json(bytes).ok()?.imager
}

/// issue.txt from the image's boot partition, when it has one.
fn issue_txt(file: &fs::File) -> Option<String> {
    cardsmith_customize::boot_file(file, "issue.txt")
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Writes the catalog of the images in `args.dir`.
pub fn make_catalog(
    args: MakeCatalogArgs,
    cancel: &CancelToken,
    reporter: &mut Reporter,
) -> Result<(), Failure> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join("os_list.json"));
    if out.exists() && !args.force {
        return Err(Failure::Refused(format!(
            "{} exists: --force replaces it",
            out.display()
        )));
    }
    let base = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .canonicalize()
        .map_err(|e| Failure::Refused(format!("{}: {e}", out.display())))?;
    let dir = args
        .dir
        .canonicalize()
        .map_err(|e| Failure::Refused(format!("{}: {e}", args.dir.display())))?;
    let mut found = Vec::new();
    images_in(&dir, &mut found).map_err(|e| Failure::Refused(format!("{}: {e}", dir.display())))?;
    if found.is_empty() {
        return Err(Failure::Refused(format!(
            "{} holds no image (.img, .iso, .wic, or .xz, .gz, .bz2, .zst, .zip of one)",
            dir.display()
        )));
    }
    let scratch = std::env::temp_dir();
    let imager = bundled_imager();
    let tags: Vec<String> = if args.devices.is_empty() {
        let mut all: Vec<String> = Vec::new();
        for tag in imager
            .iter()
            .flat_map(|i| &i.devices)
            .flat_map(|d| d.tags())
        {
            if !all.contains(tag) {
                all.push(tag.clone());
            }
        }
        all
    } else {
        args.devices.clone()
    };
    let mut shared_icon = false;
    let mut list = Vec::new();
    for path in &found {
        cancel.check()?;
        let relative = relative_url(path, &base).ok_or_else(|| {
            Failure::Usage(format!(
                "{} is not inside the catalog's folder {}: with relative URLs the catalog \
                 must sit above its images (or give --base-url)",
                path.display(),
                base.display()
            ))
        })?;
        let url = match &args.base_url {
            Some(root) => format!("{}/{relative}", root.trim_end_matches('/')),
            None => relative,
        };
        let mut entry = entry(path, url, &scratch, cancel)?;
        entry.icon = Some(match own_icon(path, &base) {
            Some(icon) => icon,
            None => {
                shared_icon = true;
                match &args.base_url {
                    Some(root) => format!("{}/{ICON}", root.trim_end_matches('/')),
                    None => ICON.to_owned(),
                }
            }
        });
        entry.devices = Some(tags.clone());
        reporter.note(
            &format!(
                "{}: {}, {} ({})",
                entry.name,
                entry.init_format.as_deref().unwrap_or("none"),
                units::bytes(entry.extract_size.unwrap_or(0)),
                entry.description.as_deref().unwrap_or_default()
            ),
            json!({ "event": "image", "name": entry.name, "url": entry.url }),
        );
        list.push(entry);
    }
    // The generic icon, written once beside the catalog (an icon already there is kept).
    let icon = base.join(ICON);
    if shared_icon && !icon.exists() {
        let bytes = include_bytes!("../../../../os-list-sample/demo-icon.png");
        fs::write(&icon, bytes)
            .map_err(|e| Failure::Refused(format!("{}: {e}", icon.display())))?;
    }
    let catalog = Catalog {
        imager: imager.map(|i| cardsmith_catalog::Imager {
            devices: i.devices,
            ..Default::default()
        }),
        os_list: list,
        ..Catalog::default()
    };
    let tmp = out.with_extension("json.tmp");
    fs::write(&tmp, catalog.to_json() + "\n")
        .and_then(|()| fs::rename(&tmp, &out))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Failure::Refused(format!("{}: {e}", out.display()))
        })?;
    reporter.note(
        &format!(
            "Wrote {} ({} images). Use it with `cardsmith os list --repo {}`.",
            out.display(),
            catalog.os_list.len(),
            out.display()
        ),
        json!({ "event": "result", "catalog": out, "images": catalog.os_list.len() }),
    );
    Ok(())
}
