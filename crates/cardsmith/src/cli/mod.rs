//! The command line: `write`, `verify`, `hash` and `drives`, with human, plain or JSON
//! output.

mod catalog;
mod confirm;
mod custom;
mod device;
mod drives;
pub mod inspect;
pub(crate) mod report;
mod source;

use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use cardsmith_engine::{
    self as engine, units, Algorithm, CancelToken, ChecksumMatch, Error, Image, Input, OpenAs,
    Target,
};
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use confirm::Consent;
use report::{Left, Reporter, Said};

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    failure (bad image, unreadable file, refused target, I/O error, ...)
  2    invalid command line
  3    verification failed: the target differs from the image
  4    a SHA-256 did not match (--sha256, or the catalog's)
  130  cancelled (Ctrl-C)";

const READ_HELP: &str = "\
The extension of OUTPUT picks the format: .img (raw), .img.zst (zstd, multi-threaded),
.img.xz (xz, multi-threaded and multi-block), .img.gz (gzip). OUTPUT.sha256 holds the
SHA-256 of the uncompressed image in sha256sum format. The image is written under a
temporary name and renamed when complete: a full disk, a read error or Ctrl-C leave no
partial file, and an existing OUTPUT stays as it is unless --force replaces it.

A device is opened read-only and exclusively; filesystems on it are not unmounted (a
mounted one may change while it is read, and cardsmith warns about it).

--allocated-only: MBR images end at the last partition's end (the extended partition is
cut down to its last logical one); GPT images end at the last partition's end plus a
new backup partition table (33 sectors with 128 entries), the headers rewritten to match.

Restore: cardsmith write OUTPUT DEVICE.  Check a card: cardsmith verify OUTPUT DEVICE.

Exit codes:
  0    success
  1    failure (unreadable device, full disk, refused output, ...)
  2    invalid command line
  130  cancelled (Ctrl-C)";

/// Exit code when the target differs from the image.
pub const EXIT_VERIFY_FAILED: u8 = 3;
/// Exit code when the image's SHA-256 is not the expected one.
pub const EXIT_CHECKSUM_MISMATCH: u8 = 4;
/// Exit code after Ctrl-C, as shells report a SIGINT death.
pub const EXIT_CANCELLED: u8 = 130;

#[derive(Parser)]
#[command(
    name = "cardsmith",
    version,
    about = "Write OS images to SD cards and USB drives, set up their first boot, verify them, and read cards back into backups",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write an image (raw, .xz, .gz, .bz2, .zst or .zip) to a block device or a file
    #[command(after_help = EXIT_CODES)]
    Write(Box<WriteArgs>),
    /// Compare an image with what is on a device or in a file
    #[command(after_help = EXIT_CODES)]
    Verify(VerifyArgs),
    /// Print the hash of the decompressed image, as sha256sum prints it
    #[command(after_help = EXIT_CODES)]
    Hash(HashArgs),
    /// Erase a card: one FAT32 partition over all of it, as a new card comes
    #[command(after_help = EXIT_CODES)]
    Erase(EraseArgs),
    /// Read a card (or any device or file) back into an image: a backup
    #[command(after_help = READ_HELP)]
    Read(ReadArgs),
    /// List the drives an image can be written to
    Drives(drives::DrivesArgs),
    /// The OS catalog (Raspberry Pi Imager's list, or your own)
    #[command(subcommand)]
    Os(catalog::OsCommand),
    /// List the devices (Raspberry Pi models) the catalog knows
    Devices(catalog::DevicesArgs),
    /// The download cache
    #[command(subcommand)]
    Cache(catalog::CacheCommand),
    /// Show what an image or card runs on its first boot, and what each setting would do
    Inspect(inspect::InspectArgs),
    /// Put first-boot settings (host name, user, SSH, Wi-Fi…) on a written card or image file
    Customize(Box<custom::CustomizeArgs>),
    /// Named settings for whole clusters
    #[command(subcommand)]
    Preset(custom::PresetCommand),
}

#[derive(Args)]
#[command(
    override_usage = "cardsmith write [OPTIONS] IMAGE|URL TARGET\n       cardsmith write [OPTIONS] --os NAME TARGET"
)]
struct WriteArgs {
    /// IMAGE (a file, - for standard input, or an http(s) URL; the format is found from its
    /// content) and TARGET (a block device, whose contents are erased, or a file to create);
    /// with --os, only TARGET
    #[arg(value_name = "IMAGE|URL TARGET", num_args = 1..=2, required = true)]
    operands: Vec<String>,
    /// Write this OS from the catalog (see `cardsmith os list`)
    #[arg(long, value_name = "NAME")]
    os: Option<String>,
    /// With --os: the device it must be made for (see `cardsmith devices`)
    #[arg(long, value_name = "NAME|TAG", requires = "os")]
    device: Option<String>,
    #[command(flatten)]
    catalog: catalog::CatalogArgs,
    #[command(flatten)]
    custom: custom::CustomArgs,
    /// Refuse to finish unless the decompressed image, or the file as stored, has this SHA-256
    #[arg(long, value_name = "HEX", value_parser = parse_sha256)]
    sha256: Option<[u8; 32]>,
    /// Do not read the target back to compare it with the image
    #[arg(long)]
    no_verify: bool,
    #[command(flatten)]
    allowed: device::Permission,
    /// Overwrite an existing, non-empty target file
    #[arg(long)]
    force: bool,
    /// Power the drive off through UDisks2 when done, so it can be pulled out
    #[arg(long)]
    eject: bool,
    /// Print progress and the result as JSON, one object per line
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EraseArgs {
    /// The card (block device) to erase
    target: PathBuf,
    #[command(flatten)]
    allowed: device::Permission,
    /// Power the drive off through UDisks2 when done, so it can be pulled out
    #[arg(long)]
    eject: bool,
    /// Print the result as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ReadArgs {
    /// The card or device to read (opened read-only; nothing on it changes)
    source: PathBuf,
    /// The image to create: .img (raw), .img.zst, .img.xz or .img.gz; OUTPUT.sha256 is
    /// written beside it
    output: PathBuf,
    /// Only up to the end of the last partition (MBR or GPT): a smaller image that also
    /// fits a smaller card
    #[arg(long)]
    allocated_only: bool,
    /// Replace an existing output file (and its .sha256)
    #[arg(long)]
    force: bool,
    /// Print progress and the result as JSON, one object per line
    #[arg(long)]
    json: bool,
    /// The drive the wizard's choice was for.
    #[arg(skip)]
    window: Option<cardsmith_drives::Identity>,
}

#[derive(Args)]
struct VerifyArgs {
    /// The image file (compressed or not), or - for standard input
    image: String,
    /// The block device or file to compare with the image
    target: PathBuf,
    /// Print progress and the result as JSON, one object per line
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct HashArgs {
    /// The image file, or - for standard input
    image: String,
    /// sha256, sha1 or md5
    #[arg(long, default_value = "sha256")]
    algorithm: Algorithm,
    /// Hash the file as stored instead of the decompressed image
    #[arg(long)]
    raw: bool,
    /// Print progress and the result as JSON, one object per line
    #[arg(long)]
    json: bool,
}

fn parse_sha256(hex: &str) -> Result<[u8; 32], String> {
    engine::parse_sha256(hex).ok_or_else(|| "expected 64 hexadecimal digits".to_owned())
}

/// For the wizard: runs `cardsmith VERB ARGV…` (write or read) on the calling (worker)
/// thread, as a user would type it, with settings already prepared (secrets hashed) and
/// the confirmation already given in the window; everything it reports goes to `events`.
pub(crate) fn run_for_window(
    verb: &str,
    argv: Vec<String>,
    prepared: Option<cardsmith_customize::Settings>,
    name_typed: bool,
    confirmed: Option<cardsmith_drives::Identity>,
    cancel: &CancelToken,
    events: std::sync::mpsc::Sender<report::Event>,
) {
    let mut reporter = Reporter::channel(events);
    let words = ["cardsmith".to_owned(), verb.to_owned()]
        .into_iter()
        .chain(argv);
    let outcome = match Cli::try_parse_from(words) {
        Ok(Cli {
            command: Command::Write(mut args),
        }) => {
            args.custom.prepared = prepared;
            args.allowed.given_in_window(name_typed, confirmed);
            write(*args, cancel, &mut reporter)
        }
        Ok(Cli {
            command: Command::Read(mut args),
        }) => {
            args.window = confirmed;
            read(args, cancel, &mut reporter)
        }
        Ok(Cli {
            command: Command::Erase(mut args),
        }) => {
            args.allowed.given_in_window(name_typed, confirmed);
            erase(args, &mut reporter)
        }
        Ok(_) => Err(Failure::Usage(format!("the wizard does not run {verb}"))),
        Err(e) => Err(Failure::Usage(e.to_string())),
    };
    if let Err(failure) = outcome {
        reporter.failure(&failure.to_string(), failure.exit_code(), failure.offset());
    }
}

/// The command line's help, for a desktop-less start without arguments.
pub fn print_help() {
    let _ = <Cli as clap::CommandFactory>::command().print_help();
}

/// Parses the command line, runs the verb, and maps its outcome to an exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let cancel = CancelToken::new();
    handle_ctrl_c(&cancel);
    let json = match &cli.command {
        Command::Write(a) => a.json,
        Command::Verify(a) => a.json,
        Command::Hash(a) => a.json,
        Command::Read(a) => a.json,
        Command::Erase(a) => a.json,
        Command::Customize(a) => a.json(),
        Command::Inspect(a) => a.json,
        Command::Drives(_)
        | Command::Os(_)
        | Command::Devices(_)
        | Command::Cache(_)
        | Command::Preset(_) => false,
    };
    let mut reporter = Reporter::new(json);
    let outcome = match cli.command {
        Command::Write(args) => write(*args, &cancel, &mut reporter),
        Command::Verify(args) => verify(args, &cancel, &mut reporter),
        Command::Hash(args) => hash(args, &cancel, &mut reporter),
        Command::Read(args) => read(args, &cancel, &mut reporter),
        Command::Erase(args) => erase(args, &mut reporter),
        Command::Drives(args) => drives::run(args),
        Command::Os(command) => catalog::os(command, &mut reporter),
        Command::Devices(args) => catalog::devices(args, &mut reporter),
        Command::Cache(command) => catalog::cache(command, &mut reporter),
        Command::Customize(args) => custom::customize_verb(*args, &mut reporter),
        Command::Inspect(args) => inspect::run(args, &cancel, &mut reporter),
        Command::Preset(command) => custom::preset(command, &mut reporter),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let code = failure.exit_code();
            reporter.failure(&failure.to_string(), code, failure.offset());
            ExitCode::from(code)
        }
    }
}

/// Why a verb failed: an engine error, or a refusal of the command line's own.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Engine(#[from] Error),
    #[error(transparent)]
    Drive(#[from] cardsmith_drives::Error),
    #[error(transparent)]
    Catalog(#[from] cardsmith_catalog::Error),
    #[error(transparent)]
    Customize(#[from] cardsmith_customize::Error),
    /// A command line clap cannot check by itself.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Refused(String),
    /// What was written did not read back the same.
    #[error(
        "{0}. The card did not keep what was written to it (a failing or counterfeit card, or \
         a bad reader or cable): try another card or reader"
    )]
    NotKept(Error),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Engine(Error::VerifyMismatch { .. }) | Failure::NotKept(_) => {
                EXIT_VERIFY_FAILED
            }
            Failure::Engine(
                Error::ChecksumMismatch { .. } | Error::PublishedChecksumMismatch { .. },
            ) => EXIT_CHECKSUM_MISMATCH,
            Failure::Engine(Error::Cancelled) => EXIT_CANCELLED,
            Failure::Usage(_) => 2,
            _ => 1,
        }
    }

    fn offset(&self) -> Option<u64> {
        match self {
            Failure::Engine(Error::VerifyMismatch { offset, .. })
            | Failure::NotKept(Error::VerifyMismatch { offset, .. }) => *offset,
            _ => None,
        }
    }
}

/// Lets Ctrl-C stop the job at the next chunk instead of killing the process mid-write.
/// Whether Ctrl-C cancels the job (at the next chunk, leaving the target unbootable) or,
/// before anything was started, simply ends cardsmith.
static CTRL_C_CANCELS: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler once: until [`ctrl_c_cancels`] is switched on, Ctrl-C ends
/// the process at once (at a prompt, nothing has been touched).
fn handle_ctrl_c(cancel: &CancelToken) {
    let cancel = cancel.clone();
    let _ = ctrlc::set_handler(move || {
        if CTRL_C_CANCELS.load(Ordering::SeqCst) {
            cancel.cancel();
        } else {
            // At a prompt: nothing has been touched. A hidden one gets its echo back.
            confirm::restore_terminal();
            std::process::exit(i32::from(EXIT_CANCELLED));
        }
    });
}

/// From now on (or no longer), Ctrl-C cancels the running job so it can clean up.
pub(crate) fn ctrl_c_cancels(on: bool) {
    CTRL_C_CANCELS.store(on, Ordering::SeqCst);
}

impl WriteArgs {
    /// The image argument (absent with --os) and the target.
    fn operands(&self) -> Result<(Option<&str>, PathBuf), Failure> {
        match (&self.os, self.operands.as_slice()) {
            (Some(_), [target]) => Ok((None, PathBuf::from(target))),
            (None, [image, target]) => Ok((Some(image.as_str()), PathBuf::from(target))),
            (Some(_), _) => Err(Failure::Usage(
                "with --os, name only the TARGET: cardsmith write --os NAME TARGET".into(),
            )),
            (None, _) => Err(Failure::Usage(
                "name the IMAGE (or URL) and the TARGET, or use --os NAME TARGET".into(),
            )),
        }
    }
}

fn write(args: WriteArgs, cancel: &CancelToken, reporter: &mut Reporter) -> Result<(), Failure> {
    reporter.left(Left::Untouched);
    let (image_arg, target_path) = args.operands()?;
    // Settings (and their passwords) are asked for before anything is downloaded or written.
    let settings = args.custom.settings()?;
    let inspect_first = settings.is_some() && args.custom.init_format.is_none();
    let planned = source::plan(&args, image_arg, inspect_first, cancel, reporter)?;
    let (init_format, format_by) = match (&args.custom.init_format, &planned.os) {
        (Some(given), _) => (Some(given.clone()), "--init-format"),
        (None, Some(entry)) => (entry.init_format.clone(), "the catalog"),
        (None, None) => (None, ""),
    };
    if let Some(s) = &settings {
        // Refused now, not after a write: an image that takes no settings, or not these.
        let request = cardsmith_customize::Request {
            settings: s,
            format: init_format.as_deref(),
            format_by,
            release_date: planned.os.as_ref().and_then(|e| e.release_date.as_deref()),
        };
        custom::check_before_writing(&planned.image, request, cancel, reporter)?;
    }
    let image = planned.image;
    // A zip downloaded into a scratch directory must outlive the write.
    let _scratch = planned.scratch;
    let input = image.input().to_string();
    let is_device = std::fs::metadata(&target_path)
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false);
    let (target, drive, unmounted) = if is_device {
        let incoming = device::Incoming::image(&image);
        let opened = device::open(&args.allowed, &target_path, &incoming, reporter)?;
        (opened.target, Some(opened.drive), opened.unmounted)
    } else {
        // An image file that gets first-boot settings holds password hashes and Wi-Fi keys.
        let files = engine::NewFiles {
            private: settings.is_some(),
            owner: invoking_user(),
        };
        (
            open_file(&args, &target_path, &image, files, reporter)?,
            None,
            Vec::new(),
        )
    };
    ctrl_c_cancels(true);
    let options = planned.options;
    let written = engine::write(image, &target, &options, cancel, &mut |p| {
        reporter.progress(p)
    });
    let report = written
        .inspect_err(|_| reporter.left(Left::after_write(target.leftover())))
        .map_err(|e| match e {
            Error::VerifyMismatch { .. } if is_device => Failure::NotKept(e),
            e => Failure::Engine(e),
        })?;
    let published = options.stored_sha256.is_some() || options.image_sha256.is_some();
    let checksum = match report.checksum {
        Some(ChecksumMatch::Image) => "matched the image",
        Some(ChecksumMatch::StoredFile) => "matched the file as stored",
        None if published => "matched the catalog",
        None => "not checked",
    };
    let summary = format!(
        "Wrote {} to {}{}; SHA-256 {checksum}.",
        units::bytes(report.bytes),
        target.path().display(),
        if report.verified {
            " and verified it"
        } else {
            " (not verified)"
        },
    );
    let customized = match &settings {
        Some(s) => {
            reporter.left(Left::WithoutSettings);
            let request = cardsmith_customize::Request {
                settings: s,
                format: init_format.as_deref(),
                format_by,
                release_date: planned.os.as_ref().and_then(|e| e.release_date.as_deref()),
            };
            let report =
                cardsmith_customize::customize(target.file(), target.path(), is_device, request)
                    .map_err(|e| {
                        let done = if report.verified {
                            "written and verified"
                        } else {
                            "written"
                        };
                        Failure::Refused(format!(
                            "the image was {done}, but customising it failed: {e}"
                        ))
                    })?;
            custom::said(&report, reporter);
            custom::advance_preset(&args.custom, s, reporter)?;
            Some(report.format.name())
        }
        None => None,
    };
    drop(target);
    let cached = match (&planned.pending, &planned.cache) {
        (Some(pending), Some(cache)) if published || options.expected_sha256.is_some() => {
            keep_download(pending, cache, report.image_sha256.clone(), reporter)
        }
        _ => false,
    };
    if let Some(cache) = &planned.cache {
        catalog::cache_notes(cache, reporter);
    }
    let ejected = drive
        .filter(|_| args.eject)
        .map(|drive| eject(&drive, reporter));
    reporter.success(
        Said::Note(&summary),
        json!({
            "command": "write",
            "image": input,
            "os": planned.os.as_ref().map(|e| &e.name),
            "init_format": planned.os.as_ref().and_then(|e| e.init_format.as_ref()),
            "target": target_path,
            "bytes": report.bytes,
            "verified": report.verified,
            "verify_bypassed_cache": report.verified && report.bypassed_cache,
            "sha256_matched": report.checksum.map(|c| match c {
                ChecksumMatch::Image => "image",
                ChecksumMatch::StoredFile => "stored_file",
            }),
            "catalog_sha256_checked": published,
            "image_sha256": report.image_sha256,
            "partition_table_reread": report.partitions_reread,
            "unmounted": unmounted,
            "customized": customized,
            "download_cached": cached,
            "ejected": ejected,
        }),
    );
    Ok(())
}

/// Files a checked download in the cache; a failure to do so is reported, not fatal.
fn keep_download(
    pending: &cardsmith_catalog::Pending,
    cache: &cardsmith_catalog::Cache,
    image_sha256: Option<String>,
    reporter: &mut Reporter,
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
    reporter.note(&text, json!({ "event": "note", "text": text }));
    kept
}

/// A regular file as target: asks before overwriting one that exists.
fn open_file(
    args: &WriteArgs,
    path: &std::path::Path,
    image: &Image,
    files: engine::NewFiles,
    reporter: &mut Reporter,
) -> Result<Target, Failure> {
    let existed = path.exists();
    let target = Target::open_for_write(path, args.force, files)?;
    if existed && !args.allowed.yes {
        let question = format!(
            "Write {} ({} image) to the file {}? Its contents will be replaced.",
            image.input(),
            image.format(),
            target.path().display()
        );
        let no_terminal = "standard input is not a terminal, so pass --yes";
        confirm::obtain(&question, Consent::Yes, no_terminal).map_err(Failure::Refused)?;
    }
    if existed && files.private {
        // The file is about to hold password hashes and the Wi-Fi key.
        if let Some(mode) = engine::make_private(target.file(), path)? {
            custom::made_private(path, mode, reporter);
        }
    }
    Ok(target)
}

/// The person behind `sudo cardsmith …`: files cardsmith creates (image files, backups)
/// are handed to them, not left to root in their home folder.
fn invoking_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |name| std::env::var(name).ok()?.parse::<u32>().ok();
    Some((id("SUDO_UID")?, id("SUDO_GID")?)).filter(|&(uid, _)| uid != 0)
}

/// Powers the drive off after a successful write. A drive that cannot be powered off is
/// reported, but the write stands.
fn eject(drive: &cardsmith_drives::Drive, reporter: &mut Reporter) -> bool {
    match cardsmith_drives::power_off(drive) {
        Ok(()) => {
            reporter.note(
                &format!("Powered off {}: it can be removed.", drive.path.display()),
                json!({ "event": "ejected", "drive": drive.path }),
            );
            true
        }
        Err(e) => {
            reporter.note(
                &format!("Not ejected: {e}"),
                json!({ "event": "eject_failed", "drive": drive.path, "error": e.to_string() }),
            );
            false
        }
    }
}

fn verify(args: VerifyArgs, cancel: &CancelToken, reporter: &mut Reporter) -> Result<(), Failure> {
    let input = Input::from_arg(&args.image);
    let image = Image::open(&input, OpenAs::Detect)?;
    let target = Target::open_for_read(&args.target)?;
    ctrl_c_cancels(true);
    let report = engine::verify(image, &target, cancel, &mut |p| reporter.progress(p))?;
    let summary = format!(
        "{} matches {input}: {} compared.",
        target.path().display(),
        units::bytes(report.bytes)
    );
    reporter.success(
        Said::Note(&summary),
        json!({
            "command": "verify",
            "image": input.to_string(),
            "target": target.path(),
            "bytes": report.bytes,
            "bypassed_cache": report.bypassed_cache,
        }),
    );
    Ok(())
}

fn erase(args: EraseArgs, reporter: &mut Reporter) -> Result<(), Failure> {
    let is_device = std::fs::metadata(&args.target).is_ok_and(|m| m.file_type().is_block_device());
    if !is_device {
        return Err(Failure::Refused(format!(
            "{} is not a block device: erase formats a card",
            args.target.display()
        )));
    }
    reporter.left(Left::Untouched);
    let opened = device::open(
        &args.allowed,
        &args.target,
        &device::Incoming::erase(),
        reporter,
    )?;
    let target = opened.target;
    let size = target.size().unwrap_or(0);
    // Erasing takes seconds: a Ctrl-C from here on lets it finish rather than end the
    // process with the card half-formatted.
    ctrl_c_cancels(true);
    let formatted = target
        .prepare()
        .map_err(Failure::from)
        .and_then(|()| {
            cardsmith_customize::format_card(target.file(), size).map_err(|e| {
                Failure::Refused(format!("formatting {} failed: {e}", args.target.display()))
            })
        })
        .inspect_err(|_| {
            target.scrub_after_failure();
            reporter.left(Left::after_write(target.leftover()));
        })?;
    let reread = target.reread_partitions();
    drop(target);
    let ejected = args.eject.then(|| eject(&opened.drive, reporter));
    let summary = format!(
        "Erased {}: one FAT partition of {} (labelled BOOTFS).",
        args.target.display(),
        cardsmith_drives::human_size(formatted.len)
    );
    reporter.success(
        Said::Note(&summary),
        json!({
            "command": "erase",
            "target": args.target,
            "partition_offset": formatted.offset,
            "partition_bytes": formatted.len,
            "partition_table_reread": reread,
            "unmounted": opened.unmounted,
            "ejected": ejected,
        }),
    );
    Ok(())
}

fn read(args: ReadArgs, cancel: &CancelToken, reporter: &mut Reporter) -> Result<(), Failure> {
    reporter.left(Left::NothingKept);
    let is_device = std::fs::metadata(&args.source).is_ok_and(|m| m.file_type().is_block_device());
    let source = if is_device {
        let handle = cardsmith_drives::open_for_reading(&args.source, args.window.as_ref())?;
        if !handle.exclusive {
            let warning = format!(
                "{} is in use ({}); a mounted filesystem may change while it is read, so the \
                 backup may not be consistent. Unmount it first for a clean backup.",
                args.source.display(),
                handle.in_use.join(", ")
            );
            reporter.note(
                &format!("Warning: {warning}"),
                json!({ "event": "warning", "warning": warning, "in_use": handle.in_use }),
            );
        }
        Target::reading_device(&args.source, handle.file)?
    } else {
        Target::open_for_read(&args.source)?
    };
    ctrl_c_cancels(true);
    let options = engine::ReadOptions {
        force: args.force,
        allocated_only: args.allocated_only,
        owner: invoking_user(),
    };
    let report = engine::read(&source, &args.output, &options, cancel, &mut |p| {
        reporter.progress(p)
    })?;
    let mut summary = format!(
        "Read {} from {} into {}",
        units::bytes(report.bytes),
        args.source.display(),
        args.output.display(),
    );
    if report.format != engine::OutputFormat::Raw {
        summary += &format!(
            " ({}, {} stored)",
            report.format.name(),
            units::bytes(report.stored)
        );
    }
    if let Some((table, end)) = report.allocated {
        summary += &format!(
            ".\nOnly the partitions: the {} partitions end at {} of {}",
            table.name(),
            units::bytes(end),
            units::bytes(report.source_size)
        );
    }
    summary += &format!(
        ".\nSHA-256 of the image: {} (in {}).\nRestore it with `cardsmith write {} DEVICE`; \
         compare a card with it with `cardsmith verify {} DEVICE`.",
        report.sha256,
        report.checksum_file.display(),
        args.output.display(),
        args.output.display(),
    );
    reporter.success(
        Said::Note(&summary),
        json!({
            "command": "read",
            "source": args.source,
            "output": args.output,
            "format": report.format.name(),
            "bytes": report.bytes,
            "stored_bytes": report.stored,
            "sha256": report.sha256,
            "sha256_file": report.checksum_file,
            "source_bytes": report.source_size,
            "allocated_only": args.allocated_only,
            "table": report.allocated.map(|(t, _)| t.name()),
            "partitions_end": report.allocated.map(|(_, end)| end),
        }),
    );
    Ok(())
}

fn hash(args: HashArgs, cancel: &CancelToken, reporter: &mut Reporter) -> Result<(), Failure> {
    let input = Input::from_arg(&args.image);
    let open_as = if args.raw {
        OpenAs::Raw
    } else {
        OpenAs::Detect
    };
    let image = Image::open(&input, open_as)?;
    ctrl_c_cancels(true);
    let report = engine::hash(image, args.algorithm, cancel, &mut |p| reporter.progress(p))?;
    reporter.success(
        Said::Answer(&format!("{}  {input}", report.hex)),
        json!({
            "command": "hash",
            "image": input.to_string(),
            "algorithm": format!("{:?}", args.algorithm).to_lowercase(),
            "raw": args.raw,
            "hash": report.hex,
            "bytes": report.bytes,
        }),
    );
    Ok(())
}
