//! A write: an image (file, standard input, URL or catalog entry) onto a card or into an
//! image file, checked against its published SHA-256s, read back, customised, cached,
//! ejected.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cardsmith_catalog::{Http, Location, OsEntry, Pending};
use cardsmith_customize::{Request, Settings};
use cardsmith_drives::{Drive, Identity};
use cardsmith_engine::{
    self as engine, units, Bmap, CancelToken, ChecksumMatch, Error as EngineError, Image, Input,
    Step, Target, WriteOptions,
};
use serde::Serialize;

use super::custom::{advance_preset, check_before_writing, customised};
use super::drive::{open_drive, open_drives, Incoming, Permission, Wanted};
use super::source::{cache_notes, is_url, open_cache, plan_download, plan_local, Fetch, Planned};
use super::{eject, invoking_user, Ask, Customised, Error, Event, Failure, Left, Needed, Report};
use super::{Card, CardResult, CardsReport};
use super::{Run, Sink};

/// How long a card may take over one request before it is said to have stalled.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(120);

/// What is written.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// An image file (raw or compressed; the format is found from its first bytes).
    File(PathBuf),
    /// Standard input.
    Stdin,
    /// An http(s) URL: streamed, resumed, cached.
    Url(String),
    /// A catalog entry: its URL, with its published sizes and SHA-256s enforced.
    Os(Box<OsEntry>),
}

impl Source {
    /// What a command line names: `-`, a URL, or a file.
    pub fn from_arg(arg: &str) -> Source {
        if arg == "-" {
            Source::Stdin
        } else if is_url(arg) {
            Source::Url(arg.to_owned())
        } else {
            Source::File(PathBuf::from(arg))
        }
    }
}

/// Where it is written.
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    /// Whatever the path is: a drive when it is a block device (checked, asked, unmounted),
    /// else an image file to create or replace.
    Path(PathBuf),
    /// An image file; a path that is (or leads to) a block device is refused: a drive is
    /// only ever written as one, chosen as one.
    File(PathBuf),
    /// This drive, as the user confirmed it, and no other (a card swapped for another at
    /// the same path is refused).
    Drive { path: PathBuf, confirmed: Identity },
}

impl Destination {
    /// The path written to.
    pub fn path(&self) -> &Path {
        match self {
            Destination::Path(p) | Destination::File(p) | Destination::Drive { path: p, .. } => p,
        }
    }
}

/// Which blocks of the image are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Blocks {
    /// Those its filesystems use: from a `.bmap` beside the image (as bmaptool looks for
    /// it), else worked out from a raw image's own filesystems; everything when neither
    /// can be had (a compressed or downloaded image without a map).
    #[default]
    Used,
    /// Those this `.bmap` names: a file, or an http(s) URL.
    Bmap(String),
    /// Every block, as dd would.
    All,
}

/// Write an image to a card or a file.
#[derive(Debug, Clone)]
pub struct WriteJob {
    pub source: Source,
    /// One card or file, or several: the image is decoded once and written to all of them
    /// at once, each with its own verify and its own host name.
    pub targets: Vec<Destination>,
    /// The SHA-256 the image (decompressed, or the file as stored) must have.
    pub sha256: Option<[u8; 32]>,
    /// Read the target back and compare.
    pub verify: bool,
    /// Power the drive off when done.
    pub eject: bool,
    /// What the user allowed for a drive.
    pub permission: Permission,
    /// Replace an existing, non-empty image file.
    pub force: bool,
    /// First-boot settings (secrets already hashed), put on the boot partition after the
    /// write.
    pub settings: Option<Settings>,
    /// The format to write them in; `None`: the catalog's, or what the image runs.
    pub init_format: Option<String>,
    /// The preset whose host-name counter this card used: it moves on after success.
    pub advance_preset: Option<String>,
    /// The download cache's folder; `None`: `$CARDSMITH_CACHE` or the user's cache folder.
    pub cache_dir: Option<PathBuf>,
    /// How long a download may go without a byte before it is resumed.
    pub stall_timeout: Duration,
    /// Which blocks are written and verified.
    pub blocks: Blocks,
    /// Discard the skipped ranges on a card that takes it.
    pub discard: bool,
    /// The number the first card's host-name counter (`{n}`) gets; the next card gets the
    /// next one. `None`: the settings' own (a preset's counter).
    pub first_number: Option<u64>,
    /// With several targets: leave out one that is refused (and say so) rather than refuse
    /// the run.
    pub skip_refused: bool,
    /// How long a card may take over one request before it is said to have stalled.
    pub write_stall_timeout: Duration,
}

impl WriteJob {
    /// A write of `source` to every one of `targets` at once (often just one), with the
    /// defaults: verify, no eject, nothing asked beforehand, no settings.
    pub fn to_all(source: Source, targets: Vec<Destination>) -> WriteJob {
        WriteJob {
            source,
            targets,
            sha256: None,
            verify: true,
            eject: false,
            permission: Permission::default(),
            force: false,
            settings: None,
            init_format: None,
            advance_preset: None,
            cache_dir: None,
            stall_timeout: cardsmith_catalog::STALL_TIMEOUT,
            blocks: Blocks::Used,
            discard: false,
            first_number: None,
            skip_refused: false,
            write_stall_timeout: WRITE_STALL_TIMEOUT,
        }
    }
}

/// What a write did. Serialised, it is the `--json` result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriteReport {
    pub image: String,
    pub os: Option<String>,
    /// The catalog's first-boot format for the OS.
    pub init_format: Option<String>,
    pub target: PathBuf,
    pub bytes: u64,
    pub verified: bool,
    pub verify_bypassed_cache: bool,
    /// Which of `--sha256`'s readings matched: "image" or "stored_file".
    pub sha256_matched: Option<&'static str>,
    pub catalog_sha256_checked: bool,
    pub image_sha256: Option<String>,
    pub partition_table_reread: bool,
    pub unmounted: Vec<PathBuf>,
    /// The first-boot format the settings were written in.
    pub customized: Option<&'static str>,
    pub download_cached: bool,
    pub ejected: Option<bool>,
    /// Bytes written to the target: all of `bytes`, or with a block map the mapped ones.
    pub bytes_written: u64,
    /// Bytes of the image not written (unused by its filesystems).
    pub bytes_skipped: u64,
    /// Bytes read back and compared.
    pub bytes_verified: u64,
    /// Skipped bytes discarded on the card (`--discard`).
    pub bytes_discarded: u64,
    /// Where the block map came from ("os.img.bmap", "the image's filesystems"), when one
    /// was used.
    pub block_map: Option<String>,
    /// What customising did, for the window's done screen.
    #[serde(skip)]
    pub settings: Option<Customised>,
}

impl WriteReport {
    /// "Wrote 2.0 GiB to /dev/sdb and verified it; SHA-256 matched the catalog.", with
    /// a block map: "Wrote the 412 MiB the filesystems use of 2.0 GiB (1.6 GiB skipped) …".
    pub fn summary(&self) -> String {
        let checksum = match self.sha256_matched {
            Some("image") => "matched the image",
            Some(_) => "matched the file as stored",
            None if self.catalog_sha256_checked => "matched the catalog",
            None => "not checked",
        };
        let what = match &self.block_map {
            Some(_) if self.bytes_skipped > 0 => format!(
                "the {} its filesystems use of {} ({} skipped)",
                units::bytes(self.bytes_written),
                units::bytes(self.bytes),
                units::bytes(self.bytes_skipped)
            ),
            _ => units::bytes(self.bytes),
        };
        format!(
            "Wrote {what} to {}{}; SHA-256 {checksum}.",
            self.target.display(),
            if self.verified {
                " and verified it"
            } else {
                " (not verified)"
            },
        )
    }
}

/// The target, opened: a drive (as it was found) or a file.
struct Opened {
    target: Target,
    drive: Option<Drive>,
    unmounted: Vec<PathBuf>,
}

/// One card of a write, and how it went.
struct CardRun {
    path: PathBuf,
    drive: Option<Drive>,
    /// What was unmounted from it before it was written.
    unmounted: Vec<PathBuf>,
    settings: Option<Settings>,
    outcome: Option<Result<WriteReport, Error>>,
    seconds: f64,
}

impl WriteJob {
    /// Writes; `cancel` stops it at the next chunk, leaving every card unbootable or no
    /// file. With several targets, each card's own failure is in the report's table; the
    /// run fails as a whole only when the image does (or is refused, or cancelled).
    pub fn run(self, cancel: &CancelToken, sink: &mut dyn Sink) -> Result<Report, Error> {
        let many = self.targets.len() > 1;
        let mut run = Run::new(sink, Left::Untouched);
        let outcome = self.go(cancel, &mut run);
        if many {
            let cards = outcome.map(|cards| {
                Report::Cards(CardsReport::new(
                    "write",
                    cards.into_iter().map(CardRun::into_card).collect(),
                ))
            });
            return run.end(cards);
        }
        let one = outcome.and_then(|mut cards| {
            let card = cards.pop().expect("one target, one card");
            match card.outcome.expect("every card has an outcome") {
                Ok(report) => Ok(report),
                Err(e) => {
                    run.left = e.left;
                    Err(e.failure)
                }
            }
        });
        run.end(one.map(|r| Report::Write(Box::new(r))))
    }

    /// The settings card `index` gets: the host-name counter moved on by one per card.
    fn settings_for(&self, index: usize) -> Option<Settings> {
        let s = self.settings.as_ref()?;
        Some(super::custom::for_card(s, self.first_number, index))
    }

    fn go(self, cancel: &CancelToken, run: &mut Run<'_>) -> Result<Vec<CardRun>, Failure> {
        if self.targets.is_empty() {
            return Err(Failure::Usage("name at least one target".into()));
        }
        self.check_named_once()?;
        let settings: Vec<Option<Settings>> = (0..self.targets.len())
            .map(|i| self.settings_for(i))
            .collect();
        for s in settings.iter().flatten() {
            s.validate()?;
        }
        let planned = self.plan(cancel, run)?;
        let os = match &self.source {
            Source::Os(entry) => Some(entry.as_ref()),
            _ => None,
        };
        let (init_format, format_by) = match (&self.init_format, os) {
            (Some(f), _) => (Some(f.clone()), "--init-format"),
            (None, Some(entry)) => (entry.init_format.clone(), "the catalog"),
            (None, None) => (None, ""),
        };
        let release_date = os.and_then(|e| e.release_date.as_deref());
        let format = init_format.as_deref();
        let request = |settings| Request {
            settings,
            format,
            format_by,
            release_date,
        };
        if let Some(s) = &settings[0] {
            // Refused now, not after a write: an image that takes no settings, or not these.
            check_before_writing(&planned.image, request(s), cancel, run)?;
        }
        let Planned {
            image,
            mut options,
            pending,
            cache,
            scratch: _scratch, // a zip downloaded into a scratch directory outlives the write
        } = planned;
        let choice = match self.catalog_map(run)? {
            Some(choice) => choice,
            None => choose_map(&image, &self.blocks, run)?,
        };
        // No map to be had before writing: one is worked out as the image streams past.
        options.map_as_it_streams = choice == MapChoice::AsItStreams;
        let block_map = match choice {
            MapChoice::Map(map, from) => Some((map, from)),
            _ => None,
        };
        options.map = block_map.as_ref().map(|(map, _)| map.clone());
        options.discard = self.discard;
        options.stall = Some(self.write_stall_timeout);
        let input = image.input().to_string();
        let opened = self.open_targets(&image, &settings, run)?;
        // The targets go to the engine and come back one by one as each is done; what
        // else is known of each card stays with it here.
        let mut cards = Vec::new();
        let mut targets = Vec::new();
        let mut going = Vec::new();
        let each = self.targets.iter().zip(opened).zip(settings).enumerate();
        for (index, ((dest, opened), settings)) in each {
            let mut card = CardRun {
                path: dest.path().to_owned(),
                drive: None,
                unmounted: Vec::new(),
                settings,
                outcome: None,
                seconds: 0.0,
            };
            match opened {
                Ok(opened) => {
                    card.drive = opened.drive;
                    card.unmounted = opened.unmounted;
                    targets.push(opened.target);
                    going.push(index);
                }
                Err(failure) => {
                    card.outcome = Some(Err(Error {
                        failure,
                        left: Left::Untouched,
                    }))
                }
            }
            cards.push(card);
        }
        let many = self.targets.len() > 1;
        let published = options.stored_sha256.is_some() || options.image_sha256.is_some();
        let started = Instant::now();
        let mut stopped = Vec::new();
        let mut eject_later = Vec::new();
        run.sink.watching_cancel(true);
        let mut finished = |slot: usize, step: Step<Target>, run: &mut Run<'_>| {
            let index = going[slot];
            let card = &mut cards[index];
            let drive = card.drive.as_ref();
            let (result, target) = match step {
                Step::Progress(p) if many => return run.card_progress(index, &card.path, p),
                Step::Progress(p) => return run.progress(p),
                Step::Stopped(target) => return stopped.push(Left::after_write(target.leftover())),
                Step::Stalled(waited) => {
                    let event = Event::warning(format!(
                        "{} has not accepted data for {} s: the card may be failing or worn out, \
                         or its reader or cable is bad; try another reader or card. Ctrl-C \
                         stops the write (cardsmith ends as soon as the card answers)",
                        card.path.display(),
                        waited.as_secs()
                    ));
                    return match many {
                        true => run.card_event(index, &card.path, event),
                        false => run.event(event),
                    };
                }
                Step::Finished(result, target) => (result, target),
            };
            card.seconds = started.elapsed().as_secs_f64();
            let report = result.map_err(|e| Error {
                left: Left::after_write(target.leftover()),
                failure: match e {
                    EngineError::VerifyMismatch { .. } if drive.is_some() => Failure::NotKept(e),
                    e => Failure::Engine(e),
                },
            });
            let done = report.and_then(|report| {
                let said = match &card.settings {
                    Some(s) => Some(self.customise(
                        &target,
                        drive.is_some(),
                        Request {
                            settings: s,
                            format,
                            format_by,
                            release_date,
                        },
                        report.verified,
                        (many, index),
                        run,
                    )?),
                    None => None,
                };
                Ok((report, said))
            });
            // Closed before the drive is powered off (UDisks2 opens it exclusively first).
            drop(target);
            let ejected = match (&done, drive) {
                (Ok(_), Some(drive)) if self.eject && !many => Some(eject(drive, run)),
                // UDisks2 refuses to power off a drive while another slot of the same
                // reader is still open (being written): such a card is powered off once
                // the others are done.
                (Ok(_), Some(drive)) if self.eject => match cardsmith_drives::power_off(drive) {
                    Ok(()) => {
                        let event = Event::Ejected {
                            drive: drive.path.clone(),
                        };
                        run.card_event(index, &card.path, event);
                        Some(true)
                    }
                    Err(_) => {
                        eject_later.push(index);
                        None
                    }
                },
                _ => None,
            };
            // The path as given (a /dev/disk/by-id/… link stays one in the report).
            let outcome = done.map(|(report, said)| {
                self.report(
                    &input,
                    report,
                    (&card.path, &card.unmounted),
                    said,
                    ejected,
                    (published, &block_map, options.map_as_it_streams),
                )
            });
            card.outcome = Some(outcome);
            if many {
                let event = match &card.outcome {
                    Some(Err(e)) => Event::CardDone {
                        result: CardResult::Failed,
                        error: Some(e.failure.to_string()),
                    },
                    _ => Event::CardDone {
                        result: CardResult::Written,
                        error: None,
                    },
                };
                run.card_event(index, &card.path, event);
            }
        };
        let all = engine::write_many(image, targets, &options, cancel, &mut |slot, step| {
            finished(slot, step, run)
        });
        if let Err(e) = all {
            // Each card left without an outcome of its own: the worst of what they hold.
            run.left = stopped
                .iter()
                .copied()
                .max_by_key(|left| *left == Left::PartlyWritten)
                .unwrap_or(Left::Untouched);
            return Err(Failure::Engine(e));
        }
        for index in eject_later {
            if let Some(drive) = &cards[index].drive {
                let ejected = eject(drive, run);
                if let Some(Ok(report)) = &mut cards[index].outcome {
                    report.ejected = Some(ejected);
                }
            }
        }
        let succeeded: Vec<&CardRun> = cards
            .iter()
            .filter(|c| matches!(c.outcome, Some(Ok(_))))
            .collect();
        if let (Some(preset), Some(last)) = (
            &self.advance_preset,
            succeeded
                .iter()
                .filter_map(|c| c.settings.as_ref())
                .filter(|s| s.has_counter())
                .map(|s| s.counter)
                .max(),
        ) {
            advance_preset(preset, last, run);
        }
        let image_sha256 = succeeded.iter().find_map(|c| match &c.outcome {
            Some(Ok(r)) => Some(r.image_sha256.clone()),
            _ => None,
        });
        let cached = match (&pending, &cache, image_sha256) {
            (Some(pending), Some(cache), Some(sha256))
                if published || options.expected_sha256.is_some() =>
            {
                keep_download(pending, cache, sha256, run)
            }
            _ => false,
        };
        if let Some(cache) = &cache {
            cache_notes(cache, run.sink);
        }
        for card in &mut cards {
            if let Some(Ok(report)) = &mut card.outcome {
                report.download_cached = cached;
            }
        }
        Ok(cards)
    }

    /// Refuses a card or file named twice (also by two paths, such as /dev/sdb and a
    /// /dev/disk/by-id/ link to it): two writers would fight over it.
    fn check_named_once(&self) -> Result<(), Failure> {
        let mut seen = std::collections::HashSet::new();
        for dest in &self.targets {
            let path = dest.path();
            let key = match std::fs::metadata(path) {
                Ok(m) if m.file_type().is_block_device() => format!("device {}", m.rdev()),
                Ok(m) => format!("file {}:{}", m.dev(), m.ino()),
                Err(_) => format!("path {}", path.display()),
            };
            if !seen.insert(key) {
                return Err(Failure::Usage(format!(
                    "{} is named twice among the targets (perhaps by another path)",
                    path.display()
                )));
            }
        }
        Ok(())
    }

    /// Puts card `index`'s settings on its boot partition, once it is written.
    fn customise(
        &self,
        target: &Target,
        is_device: bool,
        request: Request<'_>,
        verified: bool,
        (many, index): (bool, usize),
        run: &mut Run<'_>,
    ) -> Result<Customised, Error> {
        let done = if verified {
            "written and verified"
        } else {
            "written"
        };
        let applied =
            cardsmith_customize::customize(target.file(), target.path(), is_device, request)
                .map_err(|e| Error {
                    failure: Failure::Refused(format!(
                        "the image was {done}, but customising it failed: {e}"
                    )),
                    left: Left::WithoutSettings,
                })?;
        let said = customised(&applied);
        let event = Event::Customized(Box::new(said.clone()));
        if many {
            run.card_event(index, target.path(), event);
        } else {
            run.event(event);
        }
        Ok(said)
    }

    /// What writing one card did, for its report.
    fn report(
        &self,
        input: &str,
        report: engine::WriteReport,
        (target, unmounted): (&Path, &[PathBuf]),
        settings: Option<Customised>,
        ejected: Option<bool>,
        (published, block_map, as_it_streams): (bool, &Option<(Bmap, String)>, bool),
    ) -> WriteReport {
        let os = match &self.source {
            Source::Os(entry) => Some(entry.as_ref()),
            _ => None,
        };
        WriteReport {
            image: input.to_owned(),
            os: os.map(|e| e.name.clone()),
            init_format: os.and_then(|e| e.init_format.clone()),
            target: target.to_owned(),
            bytes: report.bytes,
            verified: report.verified,
            verify_bypassed_cache: report.verified && report.bypassed_cache,
            sha256_matched: report.checksum.map(|c| match c {
                ChecksumMatch::Image => "image",
                ChecksumMatch::StoredFile => "stored_file",
            }),
            catalog_sha256_checked: published,
            image_sha256: report.image_sha256,
            partition_table_reread: report.partitions_reread,
            unmounted: unmounted.to_vec(),
            customized: settings.as_ref().map(|s| s.init_format),
            download_cached: false,
            ejected,
            bytes_written: report.written,
            bytes_skipped: report.bytes.saturating_sub(report.written),
            bytes_verified: report.verified_bytes,
            bytes_discarded: report.discarded,
            block_map: block_map
                .as_ref()
                .map(|(_, from)| from.clone())
                .or_else(|| {
                    (as_it_streams && report.written < report.bytes)
                        .then(|| "the image's filesystems, as it streamed".to_owned())
                }),
            settings,
        }
    }

    /// The catalog's block map for the OS (`bmap_url`), when it names one and used blocks
    /// are asked for. One that cannot be fetched leaves the map to be worked out as the
    /// image streams; one that does not hold together refuses the write.
    fn catalog_map(&self, run: &mut Run<'_>) -> Result<Option<MapChoice>, Failure> {
        let (Blocks::Used, Source::Os(entry)) = (&self.blocks, &self.source) else {
            return Ok(None);
        };
        let Some(url) = entry.bmap_url.as_deref() else {
            return Ok(None);
        };
        let fetcher = cardsmith_catalog::Fetcher {
            http: Http::new(self.stall_timeout.max(Duration::from_secs(1)))?,
        };
        let data = match fetcher.fetch(&Location::parse(url), 64 << 20) {
            Ok(data) => data,
            Err(e) => {
                run.event(Event::note(format!(
                    "The catalog's block map {url} could not be had ({e}); the map is worked \
                     out as the image streams instead"
                )));
                return Ok(Some(MapChoice::AsItStreams));
            }
        };
        let map = Bmap::parse(&data, url)?;
        run.event(Event::BlockMap {
            from: url.to_owned(),
            mapped_bytes: map.mapped_bytes(),
            image_bytes: map.image_size,
        });
        Ok(Some(MapChoice::Map(map, url.to_owned())))
    }

    /// Opens the image: a local file, or a download (streamed, cached, or fetched whole
    /// first when settings must be judged and no format says how).
    fn plan(&self, cancel: &CancelToken, run: &mut Run<'_>) -> Result<Planned, Failure> {
        let options = WriteOptions {
            expected_sha256: self.sha256,
            verify: self.verify,
            ..WriteOptions::default()
        };
        let inspect_first = self.settings.is_some() && self.init_format.is_none();
        let (location, entry) = match &self.source {
            Source::File(path) => return plan_local(Input::Path(path.clone()), options, run),
            Source::Stdin => return plan_local(Input::Stdin, options, run),
            Source::Url(url) => (Location::parse(url), None),
            Source::Os(entry) => {
                let url = entry
                    .url
                    .as_deref()
                    .ok_or_else(|| cardsmith_catalog::Error::NoUrl {
                        name: entry.name.clone(),
                    })?;
                (Location::parse(url), Some(entry.as_ref()))
            }
        };
        let cache = open_cache(self.cache_dir.as_deref(), run.sink);
        let fetch = Fetch {
            http: Http::new(self.stall_timeout.max(Duration::from_secs(1)))?,
            cache: cache.as_ref(),
            cancel,
            whole: inspect_first && entry.is_none_or(|e| e.init_format.is_none()),
        };
        let (image, pending, scratch, options) =
            plan_download(&location, entry, options, &fetch, run)?;
        Ok(Planned {
            image,
            options,
            pending,
            cache,
            scratch,
        })
    }

    /// Every target opened, or (with `skip_refused`) why it was left out. Files are opened
    /// first (an existing one only replaced once asked); then the drives are checked, asked
    /// for in one question that lists each with its host name, unmounted and opened
    /// exclusively. One refused target refuses the run before any drive is touched.
    fn open_targets(
        &self,
        image: &Image,
        settings: &[Option<Settings>],
        run: &mut Run<'_>,
    ) -> Result<Vec<Result<Opened, Failure>>, Failure> {
        let mut devices = Vec::new();
        for dest in &self.targets {
            let path = dest.path();
            let is_device = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
            if let (Destination::File(_), true) = (dest, is_device) {
                return Err(Failure::Refused(format!(
                    "{} is a block device, not an image file: nothing was written. Choose it in \
                     the drive list instead (it is checked, named and confirmed there)",
                    path.display()
                )));
            }
            // A drive chosen as one is only ever written as one: gone from its path, it is
            // refused there, not created as a file.
            devices.push(is_device || matches!(dest, Destination::Drive { .. }));
        }
        let incoming = Incoming::image(image);
        if let [dest] = self.targets.as_slice() {
            let opened = match (dest, devices[0]) {
                (Destination::Drive { path, confirmed }, _) => {
                    self.open_one(path, Some(confirmed), &incoming, run)?
                }
                (_, false) => self.open_file(dest.path(), image, run)?,
                (_, true) => self.open_one(dest.path(), None, &incoming, run)?,
            };
            return Ok(vec![Ok(opened)]);
        }
        let mut files: Vec<Option<Result<Opened, Failure>>> = Vec::new();
        for (dest, &is_device) in self.targets.iter().zip(&devices) {
            if is_device {
                files.push(None);
                continue;
            }
            match self.open_file(dest.path(), image, run) {
                Err(e) if !self.skip_refused => {
                    for opened in files.iter().flatten().flatten() {
                        opened.target.abandon();
                    }
                    return Err(e);
                }
                opened => files.push(Some(opened)),
            }
        }
        let wanted: Vec<Wanted> = self
            .targets
            .iter()
            .zip(settings)
            .zip(&devices)
            .filter(|(_, &is_device)| is_device)
            .map(|((dest, s), _)| Wanted {
                path: dest.path().to_owned(),
                confirmed: match dest {
                    Destination::Drive { confirmed, .. } => Some(confirmed.clone()),
                    _ => None,
                },
                gets: s
                    .as_ref()
                    .and_then(|s| s.hostname_now().ok().flatten())
                    .map(|h| format!("host name {h}")),
            })
            .collect();
        let mut drives = match wanted.is_empty() {
            true => Vec::new(),
            false => open_drives(&self.permission, &wanted, &incoming, self.skip_refused, run)
                .inspect_err(|_| {
                    for opened in files.iter().flatten().flatten() {
                        opened.target.abandon();
                    }
                })?,
        }
        .into_iter();
        Ok(files
            .into_iter()
            .map(|file| match file {
                Some(opened) => opened,
                None => drives
                    .next()
                    .expect("a drive for every device")
                    .map(|d| Opened {
                        target: d.target,
                        drive: Some(d.drive),
                        unmounted: d.unmounted,
                    }),
            })
            .collect())
    }

    /// The one drive of a write to one card.
    fn open_one(
        &self,
        path: &Path,
        confirmed: Option<&Identity>,
        incoming: &Incoming,
        run: &mut Run<'_>,
    ) -> Result<Opened, Failure> {
        let opened = open_drive(&self.permission, path, confirmed, incoming, run)?;
        Ok(Opened {
            target: opened.target,
            drive: Some(opened.drive),
            unmounted: opened.unmounted,
        })
    }

    /// A regular file as target: asks before overwriting one that exists.
    fn open_file(&self, path: &Path, image: &Image, run: &mut Run<'_>) -> Result<Opened, Failure> {
        // An image file that gets first-boot settings holds password hashes and Wi-Fi keys.
        let files = engine::NewFiles {
            private: self.settings.is_some(),
            owner: invoking_user(),
        };
        let existed = path.exists();
        let target = Target::open_for_write(path, self.force, files)?;
        if existed && !self.permission.yes {
            let ask = Ask {
                question: format!(
                    "Write {} ({} image) to the file {}? Its contents will be replaced.",
                    image.input(),
                    image.format(),
                    target.path().display()
                ),
                needed: Needed::Yes,
                drives: Vec::new(),
                name: String::new(),
                verb: "replace",
            };
            run.sink.watching_cancel(false);
            let answer = run.sink.consent(&ask);
            run.sink.watching_cancel(true);
            answer.map_err(Failure::Refused)?;
        }
        if existed && files.private {
            // The file is about to hold password hashes and the Wi-Fi key.
            if let Some(mode) = engine::make_private(target.file(), path)? {
                super::made_private(path, mode, run);
            }
        }
        Ok(Opened {
            target,
            drive: None,
            unmounted: Vec::new(),
        })
    }
}

impl CardRun {
    /// The card's row in the report's table.
    fn into_card(self) -> Card {
        let hostname = self
            .settings
            .as_ref()
            .and_then(|s| s.hostname_now().ok().flatten());
        let outcome = self.outcome.unwrap_or_else(|| {
            Err(Error {
                failure: Failure::Refused("the write stopped before this card was done".into()),
                left: Left::PartlyWritten,
            })
        });
        Card::of(
            &self.path,
            self.drive.as_ref(),
            hostname,
            outcome.map(Some),
            self.seconds,
        )
    }
}

/// Which blocks a write (or verify) of an image moves.
#[derive(Debug, Clone, PartialEq)]
pub enum MapChoice {
    /// Those this map names; where it came from.
    Map(Bmap, String),
    /// Those the image's metadata says are used, as it streams past.
    AsItStreams,
    /// Every block.
    All,
}

/// The map for `image` as `blocks` asks: a given `.bmap`, one beside the image, one
/// worked out from a raw image's filesystems, or (compressed, downloaded) one as it
/// streams. A map from a file or the image says so through a `block_map` event.
pub fn choose_map(image: &Image, blocks: &Blocks, run: &mut Run<'_>) -> Result<MapChoice, Failure> {
    let read_map = |path: &Path| -> Result<Bmap, Failure> {
        let data = std::fs::read(path).map_err(|e| {
            Failure::Refused(format!("cannot read the block map {}: {e}", path.display()))
        })?;
        Ok(Bmap::parse(&data, &path.display().to_string())?)
    };
    let local = match image.input() {
        Input::Path(path) if std::fs::metadata(path).is_ok_and(|m| m.is_file()) => {
            Some(path.clone())
        }
        _ => None,
    };
    let (map, from) = match blocks {
        Blocks::All => return Ok(MapChoice::All),
        Blocks::Bmap(given) if is_url(given) => {
            let fetcher = cardsmith_catalog::Fetcher {
                http: Http::new(cardsmith_catalog::STALL_TIMEOUT)?,
            };
            let data = fetcher
                .fetch(&Location::parse(given), 64 << 20)
                .map_err(|e| {
                    Failure::Refused(format!("cannot fetch the block map {given}: {e}"))
                })?;
            (Bmap::parse(&data, given)?, given.clone())
        }
        Blocks::Bmap(given) => (read_map(Path::new(given))?, given.clone()),
        Blocks::Used => match local.as_deref().and_then(bmap_beside) {
            Some(path) => (read_map(&path)?, path.display().to_string()),
            None => match local.filter(|_| image.format() == engine::Format::Raw) {
                Some(path) => {
                    let file = std::fs::File::open(&path).map_err(|e| {
                        Failure::Refused(format!("cannot read {}: {e}", path.display()))
                    })?;
                    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                    let usage = engine::usage_of_file(&file, size, &path.display().to_string())?;
                    for part in usage.parts.iter().filter(|p| p.note.is_some()) {
                        run.event(Event::note(format!(
                            "Partition at byte {} ({}) counts whole: {}",
                            part.start,
                            part.filesystem.name(),
                            part.note.as_deref().unwrap_or_default()
                        )));
                    }
                    let map = Bmap::from_usage_unhashed(&usage);
                    if map.mapped_bytes() == map.image_size {
                        // Nothing to skip: written as it is.
                        return Ok(MapChoice::AsItStreams);
                    }
                    (map, "the image's filesystems".to_owned())
                }
                None => return Ok(MapChoice::AsItStreams),
            },
        },
    };
    run.event(Event::BlockMap {
        from: from.clone(),
        mapped_bytes: map.mapped_bytes(),
        image_bytes: map.image_size,
    });
    Ok(MapChoice::Map(map, from))
}

/// The `.bmap` bmaptool would find for `image`: `IMAGE.bmap`, then with one extension
/// after another taken off (`os.img.xz.bmap`, `os.img.bmap`).
fn bmap_beside(image: &Path) -> Option<PathBuf> {
    let name = image.file_name()?.to_string_lossy().into_owned();
    let mut stem = name.as_str();
    loop {
        let candidate = image.with_file_name(format!("{stem}.bmap"));
        if candidate.is_file() {
            return Some(candidate);
        }
        stem = stem.rsplit_once('.')?.0;
    }
}

/// Files a checked download in the cache; a failure to do so is reported, not fatal.
fn keep_download(
    pending: &Pending,
    cache: &cardsmith_catalog::Cache,
    image_sha256: Option<String>,
    run: &mut Run<'_>,
) -> bool {
    let (text, kept) = match pending.commit(cache, image_sha256) {
        Ok(Some(entry)) => (
            format!(
                "Kept the download in the cache ({})",
                entry.sha256.get(..12).unwrap_or(&entry.sha256)
            ),
            true,
        ),
        Ok(None) => match pending.failure() {
            Some(problem) => (problem, false),
            None if !pending.is_complete() => (
                "The download was not cached: it did not arrive whole".to_owned(),
                false,
            ),
            None => (
                "The download was not cached: it is larger than the cache may hold".to_owned(),
                false,
            ),
        },
        Err(e) => (format!("The download was not cached: {e}"), false),
    };
    run.event(Event::note(text));
    kept
}
