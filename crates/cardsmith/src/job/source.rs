//! What a write writes: a file, standard input, a URL, or an OS from the catalog (streamed,
//! or from the download cache), with the hashes and size it is known by.

use std::io::Read;
use std::path::Path;

use cardsmith_catalog::{open_image, Cache, Http, Known, Location, OsEntry, Pending, Say};
use cardsmith_engine::{
    parse_sha256, to_hex, CancelToken, Error, Image, ImageSize, Input, OpenAs, WriteOptions,
};

use super::{Event, Failure, Run, Sink};

/// An image ready to write, and what goes with it.
pub struct Planned {
    pub image: Image,
    pub options: WriteOptions,
    /// A download being kept; committed to `cache` once the write checked its hash.
    pub pending: Option<Pending>,
    pub cache: Option<Cache>,
    /// Where a zip downloaded without a cache waits to be written; removed when dropped.
    pub scratch: Option<tempfile::TempDir>,
}

/// What opening a download needs.
pub struct Fetch<'a> {
    pub http: Http,
    pub cache: Option<&'a Cache>,
    pub cancel: &'a CancelToken,
    /// Download whole before writing rather than stream: settings are to be judged
    /// against the image's own filesystems before anything is written, and no format
    /// was given to judge them by.
    pub whole: bool,
}

/// An opened download: the image, the cache entry in the making, a scratch directory.
type Opened = (Image, Option<Pending>, Option<tempfile::TempDir>);

/// Whether a command-line image names an http(s) URL.
pub fn is_url(text: &str) -> bool {
    let head = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    head.starts_with("http://") || head.starts_with("https://")
}

/// The download cache in `dir` (else `$CARDSMITH_CACHE` or the user's cache folder), when
/// there is a place for it; cardsmith works without one, and says so.
pub fn open_cache(dir: Option<&Path>, sink: &mut dyn Sink) -> Option<Cache> {
    let opened = match dir {
        Some(dir) => Ok(Cache::at(dir, cardsmith_catalog::DEFAULT_LIMIT)),
        None => Cache::open(),
    };
    match opened {
        Ok(cache) => Some(cache),
        Err(e) => {
            sink.event(Event::note(format!("no download cache: {e}")));
            None
        }
    }
}

/// Tells what the cache had to put right (an index entry that named no SHA-256…).
pub fn cache_notes(cache: &Cache, sink: &mut dyn Sink) {
    for text in cache.take_notes() {
        sink.event(Event::note(format!("Download cache: {text}")));
    }
}

/// A SHA-256, when one is known.
type Sha256 = Option<[u8; 32]>;

/// The SHA-256s a catalog entry publishes, for the write to enforce: the download's and
/// the image's.
pub fn catalog_hashes(entry: &OsEntry) -> Result<(Sha256, Sha256), Failure> {
    let hash = |hex: Option<&String>, what: &str| {
        hex.map(|h| {
            parse_sha256(h).ok_or_else(|| {
                Failure::Refused(format!(
                    "the catalog's {what} for {:?} is not a SHA-256: {h:?}",
                    entry.name
                ))
            })
        })
        .transpose()
    };
    Ok((
        hash(
            entry.image_download_sha256.as_ref(),
            "image_download_sha256",
        )?,
        hash(entry.extract_sha256.as_ref(), "extract_sha256")?,
    ))
}

/// A local file or standard input.
pub fn plan_local(
    input: Input,
    options: WriteOptions,
    run: &mut Run<'_>,
) -> Result<Planned, Failure> {
    let image = Image::open(&input, OpenAs::Detect)?;
    let mut options = options;
    if options.expected_sha256.is_none() {
        if let Input::Path(path) = image.input() {
            options.expected_sha256 = checksum_beside(path, run);
        }
    }
    Ok(Planned {
        image,
        options,
        pending: None,
        cache: None,
        scratch: None,
    })
}

/// A URL or a catalog entry: the cached copy, or a stream (or a whole download first,
/// when `fetch.whole`).
pub fn plan_download(
    location: &Location,
    entry: Option<&OsEntry>,
    mut options: WriteOptions,
    fetch: &Fetch<'_>,
    run: &mut Run<'_>,
) -> Result<
    (
        Image,
        Option<Pending>,
        Option<tempfile::TempDir>,
        WriteOptions,
    ),
    Failure,
> {
    let known = match entry {
        Some(entry) => {
            let (stored, image) = catalog_hashes(entry)?;
            options.stored_sha256 = stored;
            options.image_sha256 = image;
            Known {
                download_sha256: entry.image_download_sha256.clone(),
                image_sha256: entry.extract_sha256.clone(),
                either_sha256: None,
            }
        }
        None => Known {
            either_sha256: options.expected_sha256.map(|h| to_hex(&h)),
            ..Known::default()
        },
    };
    let (mut image, pending, scratch) = open(location, &known, fetch, run)?;
    if let Some(size) = entry.and_then(|e| e.extract_size) {
        image.assume_size(ImageSize::exact(size));
    }
    Ok((image, pending, scratch, options))
}

/// The SHA-256 in `IMAGE.sha256` beside a local image (as `cardsmith read` writes it, and
/// as many publishers do), when its line names this image or what it decompresses to: the
/// write then checks it like `--sha256` (either the file as stored or the image inside).
fn checksum_beside(image: &Path, run: &mut Run<'_>) -> Option<[u8; 32]> {
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
            run.event(Event::ChecksumFile {
                path: sums,
                sha256: to_hex(&hash),
            });
            Some(hash)
        }
        None => {
            run.event(Event::warning(format!(
                "{} names no SHA-256 for {name}; not used",
                sums.display()
            )));
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

/// Opens an image named on the command line: a file (or `-`), or a URL, streamed or from
/// the download cache. The download is committed to the cache only by a write that checked
/// it; reading it for inspection keeps nothing.
pub fn open_arg(
    arg: &str,
    http: Http,
    cancel: &CancelToken,
    run: &mut Run<'_>,
) -> Result<(Image, Option<tempfile::TempDir>), Failure> {
    if !is_url(arg) {
        return Ok((Image::open(&Input::from_arg(arg), OpenAs::Detect)?, None));
    }
    let cache = open_cache(None, run.sink);
    let fetch = Fetch {
        http,
        cache: cache.as_ref(),
        cancel,
        whole: false,
    };
    let (image, _pending, scratch) = open(&Location::parse(arg), &Known::default(), &fetch, run)?;
    Ok((image, scratch))
}

/// Opens a catalog or URL image: the cached copy, or a stream. A zip cannot be streamed (its
/// directory is at its end), so it is downloaded whole first.
fn open(
    location: &Location,
    known: &Known,
    fetch: &Fetch<'_>,
    run: &mut Run<'_>,
) -> Result<Opened, Failure> {
    let news: Say = run.sink.news();
    let opened = open_image(location, known, &fetch.http, fetch.cache, news);
    if let Some(cache) = fetch.cache {
        cache_notes(cache, run.sink);
    }
    match opened? {
        cardsmith_catalog::Source::File { path, cached } => {
            if cached {
                run.event(Event::Cached {
                    url: location.to_string(),
                    path: path.clone(),
                });
            }
            Ok((Image::open(&Input::Path(path), OpenAs::Detect)?, None, None))
        }
        cardsmith_catalog::Source::Stream { pending, .. }
            if fetch.whole && matches!(location, Location::Url(_)) =>
        {
            drop(pending);
            whole(
                location,
                "its filesystems are read before anything is written, to see how it takes the \
                 settings (no format was given)",
                fetch,
                run,
            )
        }
        cardsmith_catalog::Source::Stream {
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
                    run,
                )
            }
            other => Ok((other?, pending, None)),
        },
    }
}

/// Downloads an image whole, into the cache's partial area (or a scratch directory), and
/// opens it; `why` says why it is not streamed. A cancel stops the download.
fn whole(
    location: &Location,
    why: &str,
    fetch: &Fetch<'_>,
    run: &mut Run<'_>,
) -> Result<Opened, Failure> {
    let Location::Url(url) = location else {
        unreachable!("only downloads are downloaded whole");
    };
    run.event(Event::note(format!("Downloading {url} whole first: {why}")));
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
        .download(url.clone(), Some(run.sink.news()))
        .with_tee(pending.tee());
    let mut buf = vec![0; 1 << 20];
    run.sink.watching_cancel(true);
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
    run.sink.watching_cancel(false);
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
