//! Looking inside the chosen OS before its settings are asked for: a local image file at
//! once, a catalog image once it is on this computer (the download cache, or a file the
//! catalog names); one still to be downloaded is looked into when it is written.

use std::path::PathBuf;

use cardsmith_catalog::{open_image, Cache, Http, Known, Location, OsEntry, Source};
use cardsmith_customize::inspect::Given;
use cardsmith_customize::{examine, Format};
use cardsmith_engine::{CancelToken, Image, Input, OpenAs};
use iced::Task;

use super::app::Message;
use super::context::{Inspected, OsChoice};

/// What the wizard knows about the chosen OS's name, so a late answer for an OS no longer
/// chosen is dropped.
pub fn key(os: &OsChoice) -> String {
    match os {
        OsChoice::Catalog { path, .. } => format!("catalog:{path}"),
        OsChoice::Custom(path) => format!("file:{}", path.display()),
        OsChoice::Erase => "erase".into(),
    }
}

/// Inspects `os` on a worker thread; the answer comes back as [`Message::Inspected`].
/// `cancel` stops it (a decode into a temporary file) when another OS is chosen.
pub fn start(os: &OsChoice, cache_dir: Option<PathBuf>, cancel: CancelToken) -> Task<Message> {
    let key = key(os);
    let what = match os {
        OsChoice::Catalog { entry, .. } => What::Catalog(entry.clone()),
        OsChoice::Custom(path) => What::File(path.clone()),
        OsChoice::Erase => return Task::none(),
    };
    let (tx, rx) = iced::futures::channel::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(look(what, cache_dir.as_deref(), &cancel));
    });
    Task::perform(rx, move |found| {
        let found = found.unwrap_or_else(|_| Inspected::Failed("the inspection stopped".into()));
        Message::Inspected(key.clone(), Box::new(found))
    })
}

/// Inspects `os` here and now: what [`start`] does on its worker thread, for the tests.
#[cfg(test)]
pub fn look_now(os: &OsChoice) -> Inspected {
    match os {
        OsChoice::Catalog { entry, .. } => {
            look(What::Catalog(entry.clone()), None, &CancelToken::new())
        }
        OsChoice::Custom(path) => look(What::File(path.clone()), None, &CancelToken::new()),
        OsChoice::Erase => Inspected::Later { format: None },
    }
}

enum What {
    Catalog(Box<OsEntry>),
    File(PathBuf),
}

fn look(what: What, cache_dir: Option<&std::path::Path>, cancel: &CancelToken) -> Inspected {
    let (image, given) = match what {
        What::File(path) => match Image::open(&Input::Path(path), OpenAs::Detect) {
            Ok(image) => (image, None),
            Err(e) => return Inspected::Failed(e.to_string()),
        },
        What::Catalog(entry) => {
            let given = entry.init_format.clone();
            match local_image(&entry, cache_dir) {
                Ok(Some(image)) => (image, given),
                Ok(None) => return Inspected::Later { format: given },
                Err(e) => return Inspected::Failed(e),
            }
        }
    };
    let given = match given.as_deref().map(Format::parse).transpose() {
        Ok(g) => g.map(|format| Given {
            format,
            by: "the catalog",
        }),
        Err(e) => return Inspected::None(e.to_string()),
    };
    let label = image.input().to_string();
    let file = match crate::job::readable(image, cancel) {
        Ok(file) => file,
        Err(e) => return Inspected::Failed(e.to_string()),
    };
    let found = match examine(&file, std::path::Path::new(&label), given) {
        Ok(found) => found,
        Err(e) => return Inspected::Failed(e.to_string()),
    };
    let os = found.os_name().map(str::to_owned);
    match found.choice {
        Ok(choice) => Inspected::Found {
            os,
            format: choice.format.name().to_owned(),
            why: choice.why,
            note: choice.disagreement,
            effects: found.effects,
        },
        Err(e) => Inspected::None(e.to_string()),
    }
}

/// The catalog image if it is on this computer already: a file the catalog names, one
/// bundled with cardsmith, or a download in the cache. `None`: it is still to be
/// downloaded (never done here: the write streams it).
fn local_image(
    entry: &OsEntry,
    cache_dir: Option<&std::path::Path>,
) -> Result<Option<Image>, String> {
    let Some(url) = entry.url.as_deref() else {
        return Ok(None);
    };
    let location = Location::parse(url);
    let cache = match cache_dir {
        Some(dir) => Some(Cache::at(dir, cardsmith_catalog::DEFAULT_LIMIT)),
        None => Cache::open().ok(),
    };
    if let Location::Url(_) = location {
        let Some(cache) = &cache else { return Ok(None) };
        let found = cache.find(
            entry.image_download_sha256.as_deref(),
            entry.extract_sha256.as_deref(),
        );
        return match found {
            Ok(Some((path, _))) => Image::open(&Input::Path(path), OpenAs::Detect)
                .map(Some)
                .map_err(|e| e.to_string()),
            _ => Ok(None),
        };
    }
    let http = Http::new(std::time::Duration::from_secs(20)).map_err(|e| e.to_string())?;
    let opened = open_image(
        &location,
        &Known::default(),
        &http,
        None,
        std::sync::Arc::new(|_: &str| {}),
    )
    .map_err(|e| e.to_string())?;
    match opened {
        Source::File { path, .. } => Image::open(&Input::Path(path), OpenAs::Detect),
        Source::Stream { input, reader, .. } => Image::open_stream(input, reader, OpenAs::Detect),
    }
    .map(Some)
    .map_err(|e| e.to_string())
}
