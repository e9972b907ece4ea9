//! What `write` writes: a file, standard input, a URL, or an OS from the catalog (streamed,
//! or from the download cache), with the hashes and size it is known by.

use std::io::Read;
use std::path::Path;

use cardsmith_catalog::{
    find_device, find_os, for_device, open_image, Cache, Http, Known, Location, OsEntry, Pending,
    Source,
};
use cardsmith_engine::{
    parse_sha256, to_hex, CancelToken, Error, Image, ImageSize, Input, OpenAs, WriteOptions,
};
use serde_json::json;

use super::catalog::{cache_notes, cache_or_warn, say};
use super::report::Reporter;
use super::{Failure, WriteArgs};

/// An image ready to write, and what goes with it.
pub struct Planned {
    pub image: Image,
    pub options: WriteOptions,
    /// A download being kept; committed to `cache` once the write checked its hash.
    pub pending: Option<Pending>,
    pub cache: Option<Cache>,
    /// The catalog entry, when writing `--os`.
    pub os: Option<OsEntry>,
    /// Where a zip downloaded without a cache waits to be written; removed when dropped.
    pub scratch: Option<tempfile::TempDir>,
}

/// What opening a download needs.
struct Fetch<'a> {
    http: Http,
    cache: Option<&'a Cache>,
    json: bool,
    cancel: &'a CancelToken,
    /// Download whole before writing rather than stream: settings are to be judged
    /// against the image's own filesystems before anything is written, and no format
    /// was given to judge them by.
    whole: bool,
}

/// An opened download: the image, the cache entry in the making, a scratch directory.
type Opened = (Image, Option<Pending>, Option<tempfile::TempDir>);

fn is_url(text: &str) -> bool {
    let head = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    head.starts_with("http://") || head.starts_with("https://")
}

fn hash(hex: Option<&String>, what: &str, name: &str) -> Result<Option<[u8; 32]>, Failure> {
    hex.map(|h| {
        parse_sha256(h).ok_or_else(|| {
            Failure::Refused(format!(
                "the catalog's {what} for {name:?} is not a SHA-256: {h:?}"
            ))
        })
    })
    .transpose()
}

/// `inspect_first`: first-boot settings are to be written and `--init-format` was not
/// given, so an image known by no format (a URL; a catalog entry without `init_format`) is
/// downloaded whole before writing, to be inspected.
pub fn plan(
    args: &WriteArgs,
    image_arg: Option<&str>,
    inspect_first: bool,
    cancel: &CancelToken,
    reporter: &mut Reporter,
) -> Result<Planned, Failure> {
    let options = WriteOptions {
        expected_sha256: args.sha256,
        verify: !args.no_verify,
        ..WriteOptions::default()
    };
    let url = image_arg.filter(|a| is_url(a));
    if args.os.is_none() && url.is_none() {
        let arg = image_arg.ok_or_else(|| Failure::Usage("name an image".into()))?;
        let image = Image::open(&Input::from_arg(arg), OpenAs::Detect)?;
        let mut options = options;
        if options.expected_sha256.is_none() {
            if let Input::Path(path) = image.input() {
                options.expected_sha256 = checksum_beside(path, reporter);
            }
        }
        return Ok(Planned {
            image,
            options,
            pending: None,
            cache: None,
            os: None,
            scratch: None,
        });
    }
    let cache = cache_or_warn(reporter);
    let mut fetch = Fetch {
        http: args.catalog.http()?,
        cache: cache.as_ref(),
        json: args.json,
        cancel,
        whole: inspect_first,
    };
    let (image, pending, scratch, os, options) = match (&args.os, url) {
        (Some(name), _) => {
            let (entry, options) = catalog_entry(args, name, &fetch, options, reporter)?;
            fetch.whole = inspect_first && entry.init_format.is_none();
            let known = Known {
                download_sha256: entry.image_download_sha256.clone(),
                image_sha256: entry.extract_sha256.clone(),
                either_sha256: None,
            };
            let url = entry.url.as_deref().unwrap_or_default();
            let (mut image, pending, scratch) =
                open(&Location::parse(url), &known, &fetch, reporter)?;
            if let Some(size) = entry.extract_size {
                image.assume_size(ImageSize::exact(size));
            }
            (image, pending, scratch, Some(entry), options)
        }
        (None, Some(url)) => {
            let known = Known {
                either_sha256: args.sha256.map(|h| to_hex(&h)),
                ..Known::default()
            };
            let (image, pending, scratch) = open(&Location::parse(url), &known, &fetch, reporter)?;
            (image, pending, scratch, None, options)
        }
        (None, None) => unreachable!("handled above"),
    };
    Ok(Planned {
        image,
        options,
        pending,
        cache,
        os,
        scratch,
    })
}

/// The SHA-256 in `IMAGE.sha256` beside a local image (as `cardsmith read` writes it, and
/// as many publishers do), when its line names this image or what it decompresses to: the
/// write then checks it like `--sha256` (either the file as stored or the image inside).
fn checksum_beside(image: &Path, reporter: &mut Reporter) -> Option<[u8; 32]> {
    let sums = cardsmith_engine::checksum_path(image);
    let text = std::fs::read_to_string(&sums).ok()?;
    let name = image.file_name()?.to_string_lossy().into_owned();
    let inner = name.rsplit_once('.').map(|(stem, _)| stem.to_owned());
    let found = text.lines().find_map(|line| {
        let (escaped, line) = match line.strip_prefix('\\') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let (hex, named) = line.split_once(' ')?;
        let named = named.trim_start_matches([' ', '*']);
        let named = if escaped {
            unescape_sum_name(named)
        } else {
            named.to_owned()
        };
        let named = Path::new(&named)
            .file_name()?
            .to_string_lossy()
            .into_owned();
        (named == name || Some(&named) == inner.as_ref())
            .then(|| parse_sha256(hex))
            .flatten()
    });
    match found {
        Some(hash) => {
            reporter.note(
                &format!(
                    "Checking the image against {} (SHA-256 {}…)",
                    sums.display(),
                    &to_hex(&hash)[..12]
                ),
                json!({ "event": "checksum_file", "path": sums, "sha256": to_hex(&hash) }),
            );
            Some(hash)
        }
        None => {
            reporter.note(
                &format!(
                    "Warning: {} names no SHA-256 for {name}; not used",
                    sums.display()
                ),
                json!({ "event": "warning", "warning": format!("{} names no SHA-256 for {name}", sums.display()) }),
            );
            None
        }
    }
}

/// A name from an escaped sha256sum line: `\\` is a backslash, `\n` a newline.
fn unescape_sum_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some('\\')) => {
                out.push('\\');
                chars.next();
            }
            ('\\', Some('n')) => {
                out.push('\n');
                chars.next();
            }
            ('\\', Some('r')) => {
                out.push('\r');
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// The catalog entry `name` (for `--device`, when made for it), and the write options that
/// enforce its published hashes.
fn catalog_entry(
    args: &WriteArgs,
    name: &str,
    fetch: &Fetch<'_>,
    mut options: WriteOptions,
    reporter: &mut Reporter,
) -> Result<(OsEntry, WriteOptions), Failure> {
    let loaded = args.catalog.load(&fetch.http, fetch.cache, reporter)?;
    let list = match &args.device {
        Some(d) => {
            let device = find_device(loaded.catalog.devices(), d)?;
            let kept = for_device(&loaded.catalog.os_list, &device);
            if find_os(&kept, name).is_err() {
                if let Ok((path, entry)) = find_os(&loaded.catalog.os_list, name) {
                    return Err(cardsmith_catalog::Error::NotForDevice {
                        os: path,
                        device: device.name,
                        tags: entry.devices.clone().unwrap_or_default(),
                    }
                    .into());
                }
            }
            kept
        }
        None => loaded.catalog.os_list.clone(),
    };
    let (path, entry) = find_os(&list, name)?;
    if entry.url.is_none() {
        return Err(cardsmith_catalog::Error::NoUrl { name: path }.into());
    }
    let download = entry.image_download_sha256.as_ref();
    options.stored_sha256 = hash(download, "image_download_sha256", &path)?;
    options.image_sha256 = hash(entry.extract_sha256.as_ref(), "extract_sha256", &path)?;
    Ok((entry.clone(), options))
}

/// Opens an image named on the command line: a file (or `-`), or a URL, streamed or from
/// the download cache. The download is committed to the cache only by a write that checked
/// it; reading it for inspection keeps nothing.
pub fn open_arg(
    arg: &str,
    catalog: &super::catalog::CatalogArgs,
    json: bool,
    cancel: &CancelToken,
    reporter: &mut Reporter,
) -> Result<(Image, Option<tempfile::TempDir>), Failure> {
    if !is_url(arg) {
        return Ok((Image::open(&Input::from_arg(arg), OpenAs::Detect)?, None));
    }
    let cache = cache_or_warn(reporter);
    let fetch = Fetch {
        http: catalog.http()?,
        cache: cache.as_ref(),
        json,
        cancel,
        whole: false,
    };
    let (image, _pending, scratch) =
        open(&Location::parse(arg), &Known::default(), &fetch, reporter)?;
    Ok((image, scratch))
}

/// Opens a catalog or URL image: the cached copy, or a stream. A zip cannot be streamed (its
/// directory is at its end), so it is downloaded whole first.
fn open(
    location: &Location,
    known: &Known,
    fetch: &Fetch<'_>,
    reporter: &mut Reporter,
) -> Result<Opened, Failure> {
    let opened = open_image(location, known, &fetch.http, fetch.cache, say(fetch.json));
    if let Some(cache) = fetch.cache {
        cache_notes(cache, reporter);
    }
    match opened? {
        Source::File { path, cached } => {
            if cached {
                let text = format!(
                    "Using the cached download of {location} ({})",
                    path.display()
                );
                reporter.note(
                    &text,
                    json!({ "event": "cached", "url": location.to_string(), "path": path }),
                );
            }
            Ok((Image::open(&Input::Path(path), OpenAs::Detect)?, None, None))
        }
        Source::Stream { pending, .. } if fetch.whole && matches!(location, Location::Url(_)) => {
            drop(pending);
            whole(
                location,
                "its filesystems are read before anything is written, to see how it takes the \
                 settings (no format was given)",
                fetch,
                reporter,
            )
        }
        Source::Stream {
            input,
            reader,
            pending,
        } => match Image::open_stream(input, reader, OpenAs::Detect) {
            Err(Error::ZipStreamed { .. }) => {
                drop(pending);
                whole(
                    location,
                    "it is a zip archive, which cannot be streamed",
                    fetch,
                    reporter,
                )
            }
            other => Ok((other?, pending, None)),
        },
    }
}

/// Downloads an image whole, into the cache's partial area (or a scratch directory), and
/// opens it; `why` says why it is not streamed. Ctrl-C stops the download.
fn whole(
    location: &Location,
    why: &str,
    fetch: &Fetch<'_>,
    reporter: &mut Reporter,
) -> Result<Opened, Failure> {
    let Location::Url(url) = location else {
        unreachable!("only downloads are downloaded whole");
    };
    let text = format!("Downloading {url} whole first: {why}");
    reporter.note(&text, json!({ "event": "note", "text": text }));
    // The partial file lives in the cache (it becomes the entry), or in a scratch directory.
    let (scratch, cache) = match fetch.cache {
        Some(cache) => (None, Cache::at(cache.dir(), u64::MAX)),
        None => {
            let dir = tempfile::tempdir()
                .map_err(|e| Failure::Refused(format!("no scratch directory: {e}")))?;
            let cache = Cache::at(dir.path(), u64::MAX);
            (Some(dir), cache)
        }
    };
    let pending = cache.start(url.as_str())?;
    let mut download = fetch
        .http
        .download(url.clone(), Some(say(fetch.json)))
        .with_tee(pending.tee());
    let mut buf = vec![0; 1 << 20];
    super::ctrl_c_cancels(true);
    let drained = loop {
        if let Err(e) = fetch.cancel.check() {
            break Err(e);
        }
        match download.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(Error::read(url.to_string(), download.received(), e)),
        }
    };
    super::ctrl_c_cancels(false);
    drained?;
    if let Some(problem) = pending.failure() {
        return Err(Failure::Refused(problem));
    }
    let image = Image::open(&Input::Path(pending.path()), OpenAs::Detect)?;
    Ok((image, Some(pending), scratch))
}

#[cfg(test)]
mod tests {
    use super::unescape_sum_name;

    #[test]
    fn escaped_checksum_names() {
        assert_eq!(unescape_sum_name("a\\\\b\\nc.img"), "a\\b\nc.img");
        assert_eq!(unescape_sum_name("plain.img"), "plain.img");
    }
}
