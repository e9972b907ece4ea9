//! What `write` writes: a file, standard input, a URL, or an OS from the catalog (streamed,
//! or from the download cache), with the hashes and size it is known by.

use cardsmith_catalog::{
    drain, find_os, for_device, open_image, Cache, Http, Known, Location, OsEntry, Pending, Source,
};
use cardsmith_engine::{parse_sha256, Error, Image, ImageSize, Input, OpenAs, WriteOptions};
use serde_json::json;

use super::catalog::{cache_or_warn, say, CatalogArgs};
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
}

fn is_url(text: &str) -> bool {
    text.starts_with("http://") || text.starts_with("https://")
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

pub fn plan(
    args: &WriteArgs,
    image_arg: Option<&str>,
    reporter: &mut Reporter,
) -> Result<Planned, Failure> {
    let mut options = WriteOptions {
        expected_sha256: args.sha256,
        verify: !args.no_verify,
        ..WriteOptions::default()
    };
    let catalog: &CatalogArgs = &args.catalog;
    match (args.os.as_deref(), image_arg) {
        (Some(name), _) => {
            let http = catalog.http()?;
            let cache = cache_or_warn(reporter);
            let loaded = catalog.load(&http, cache.as_ref(), reporter)?;
            let list = match &args.device {
                Some(d) => {
                    let device = cardsmith_catalog::find_device(loaded.catalog.devices(), d)?;
                    let kept = for_device(&loaded.catalog.os_list, &device);
                    if find_os(&kept, name).is_err() {
                        if let Ok((path, entry)) = find_os(&loaded.catalog.os_list, name) {
                            return Err(Failure::Catalog(cardsmith_catalog::Error::NotForDevice {
                                os: path,
                                device: device.name,
                                tags: entry.devices.clone().unwrap_or_default(),
                            }));
                        }
                    }
                    kept
                }
                None => loaded.catalog.os_list.clone(),
            };
            let (path, entry) = find_os(&list, name)?;
            let entry = entry.clone();
            let url = entry
                .url
                .clone()
                .ok_or_else(|| cardsmith_catalog::Error::NoUrl { name: path.clone() })?;
            options.stored_sha256 = hash(
                entry.image_download_sha256.as_ref(),
                "image_download_sha256",
                &path,
            )?;
            options.image_sha256 = hash(entry.extract_sha256.as_ref(), "extract_sha256", &path)?;
            let known = Known {
                download_sha256: entry.image_download_sha256.clone(),
                image_sha256: entry.extract_sha256.clone(),
                either_sha256: None,
            };
            let location = Location::parse(&url);
            let (mut image, pending) = open(
                &location,
                &known,
                &http,
                cache.as_ref(),
                args.json,
                reporter,
            )?;
            if let Some(size) = entry.extract_size {
                image.assume_size(ImageSize::exact(size));
            }
            Ok(Planned {
                image,
                options,
                pending,
                cache,
                os: Some(entry),
            })
        }
        (None, Some(url)) if is_url(url) => {
            let http = catalog.http()?;
            let cache = cache_or_warn(reporter);
            let known = Known {
                either_sha256: args.sha256.map(|h| cardsmith_engine::to_hex(&h)),
                ..Known::default()
            };
            let (image, pending) = open(
                &Location::parse(url),
                &known,
                &http,
                cache.as_ref(),
                args.json,
                reporter,
            )?;
            Ok(Planned {
                image,
                options,
                pending,
                cache,
                os: None,
            })
        }
        (None, Some(arg)) => Ok(Planned {
            image: Image::open(&Input::from_arg(arg), OpenAs::Detect)?,
            options,
            pending: None,
            cache: None,
            os: None,
        }),
        (None, None) => Err(Failure::Refused(
            "name an image, a URL, or --os NAME".into(),
        )),
    }
}

/// Opens a catalog or URL image: the cached copy, or a stream. A zip cannot be streamed (its
/// directory is at its end), so it is downloaded whole first.
fn open(
    location: &Location,
    known: &Known,
    http: &Http,
    cache: Option<&Cache>,
    json_mode: bool,
    reporter: &mut Reporter,
) -> Result<(Image, Option<Pending>), Failure> {
    match open_image(location, known, http, cache, say(json_mode))? {
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
            Ok((Image::open(&Input::Path(path), OpenAs::Detect)?, None))
        }
        Source::Stream {
            input,
            reader,
            pending,
        } => match Image::open_stream(input, reader, OpenAs::Detect) {
            Err(Error::ZipStreamed { .. }) => {
                drop(pending);
                whole(location, http, cache, json_mode, reporter)
            }
            other => Ok((other?, pending)),
        },
    }
}

/// Downloads a zip whole, into the cache's partial area (or a temporary one), and opens it.
fn whole(
    location: &Location,
    http: &Http,
    cache: Option<&Cache>,
    json_mode: bool,
    reporter: &mut Reporter,
) -> Result<(Image, Option<Pending>), Failure> {
    let Location::Url(url) = location else {
        unreachable!("only downloads are streamed zips");
    };
    let text =
        format!("{url} is a zip archive, which cannot be streamed: downloading it whole first");
    reporter.note(&text, json!({ "event": "note", "text": text }));
    let scratch;
    let cache = match cache {
        Some(c) => c,
        None => {
            scratch = Cache::at(&std::env::temp_dir().join("cardsmith"), u64::MAX);
            &scratch
        }
    };
    let pending = cache.start(url.as_str())?;
    let mut download = http
        .download(url.clone(), Some(say(json_mode)))
        .with_tee(pending.tee());
    drain(&mut download).map_err(|e| Error::read(url.to_string(), download.received(), e))?;
    if let Some(problem) = pending.failure() {
        return Err(Failure::Refused(problem));
    }
    let image = Image::open(&Input::Path(pending.path()), OpenAs::Detect)?;
    Ok((image, Some(pending)))
}
