//! The command line: clap arguments turned into jobs (`write`, `read`, `erase`) or into
//! calls of their own (`verify`, `hash`, `drives`, `os`, `inspect`…), with human, plain or
//! JSON output through [`report::Reporter`], the terminal's job sink.

mod bmap;
mod catalog;
mod check;
mod confirm;
mod custom;
mod docs;
mod drives;
pub mod inspect;
mod make_catalog;
pub(crate) mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cardsmith_engine::{
    self as engine, units, Algorithm, CancelToken, Image, Input, OpenAs, Target,
};
use clap::{Args, CommandFactory, Parser, Subcommand};
use serde_json::json;

use crate::job::{
    self, Blocks, Destination, EraseJob, Failure, Left, MapChoice, ReadJob, Run, ShrinkJob, Source,
    WriteJob, EXIT_CANCELLED,
};
use report::{Reporter, Said};

/// The exit codes, as help texts end with them.
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0    success
  1    failure (bad image, unreadable file, refused target, I/O error, ...)
  2    invalid command line
  3    verification failed: the target differs from the image
  4    a SHA-256 did not match (--sha256, or the catalog's)
  5    several cards: some failed and the others were done (the table says which;
       1 when none was done)
  130  cancelled (Ctrl-C)"
    };
}

const EXIT_CODES: &str = exit_codes!();

const WRITE_HELP: &str = concat!(
    "\
Used blocks only: with a block map (IMAGE.bmap beside the image, as bmaptool looks for
it, the catalog's bmap_url, or --bmap FILE|URL) or, for a raw image, its own filesystems
(ext2/3/4 bitmaps, FAT tables, swap headers; the partition table and the first MiB
always), every byte any filesystem in the image uses is written and verified, and the rest of the card keeps what it held, as
with bmaptool. Another or damaged filesystem is written whole. A compressed or downloaded
image without a map gets one as it streams past: a range is skipped only when metadata
already seen (the partition table, ext4 bitmaps, FATs) says it is unused, and anything
not yet known is written. The whole image's SHA-256 is checked as always.
--all-blocks writes every block; --discard trims what is skipped, on a card that takes it.

",
    exit_codes!()
);

const READ_HELP: &str = "\
Used blocks only: the blocks the card's filesystems use are read (ext2/3/4 bitmaps, FAT
tables, swap headers; the partition table and the first MiB always; another or damaged
filesystem whole); the rest of the image is zeros, a hole in a raw file and almost
nothing compressed. OUTPUT.bmap (bmaptool's format 2.0, each range with its SHA-256) is
written beside it, named without a compression suffix, where bmaptool looks for it.
--all-blocks reads every block.

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
    #[command(after_help = WRITE_HELP)]
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
    /// Check a card: its real capacity (counterfeits claim more than they keep, with
    /// --write, which erases it) and its speeds
    #[command(after_help = EXIT_CODES)]
    Check(check::CheckArgs),
    /// Read a card (or any device or file) back into an image: a backup
    #[command(after_help = READ_HELP)]
    Read(ReadArgs),
    /// Shrink an image file to fit smaller cards, growing back on its first boot
    Shrink(ShrinkImageArgs),
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
    /// Write the block map of an image (bmaptool's .bmap, format 2.0) from what its
    /// filesystems use
    #[command(after_help = EXIT_CODES)]
    Bmap(bmap::BmapArgs),
    /// Put first-boot settings (host name, user, SSH, Wi-Fi…) on a written card or image file
    Customize(Box<custom::CustomizeArgs>),
    /// Named settings for whole clusters
    #[command(subcommand)]
    Preset(custom::PresetCommand),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell)
    Completions(docs::CompletionsArgs),
    /// Print the manual page (roff), or write one for cardsmith and each verb into DIR
    Man(docs::ManArgs),
}

#[derive(Args)]
#[command(
    override_usage = "cardsmith write [OPTIONS] IMAGE|URL TARGET [TARGET...]\n       cardsmith write [OPTIONS] --os NAME TARGET [TARGET...]"
)]
struct WriteArgs {
    /// IMAGE (a file, - for standard input, or an http(s) URL; the format is found from its
    /// content) and TARGET (a block device, whose contents are erased, or a file to create);
    /// with --os, only TARGET. Several TARGETs are written at once from one download and
    /// one decode, each verified and customised on its own
    #[arg(value_name = "IMAGE|URL TARGET", num_args = 1.., required = true)]
    operands: Vec<String>,
    /// The number the first card's host-name counter ({n}, {n:02}) gets; each further
    /// TARGET gets the next (default: the preset's counter, else 1)
    #[arg(long, value_name = "N")]
    first_number: Option<u64>,
    /// With several TARGETs: leave out one that is refused (the root drive, one too small,
    /// one holding the image…) and write the others, rather than refuse the run
    #[arg(long)]
    skip_refused: bool,
    /// Say so when a card has not accepted data for this many seconds (a stalled card)
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    write_stall_timeout: u64,
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
    allowed: PermissionArgs,
    /// Overwrite an existing, non-empty target file
    #[arg(long)]
    force: bool,
    /// Power the drive off through UDisks2 when done, so it can be pulled out
    #[arg(long)]
    eject: bool,
    /// Write only the blocks this block map (bmaptool's .bmap, 1.x or 2.0; a file or an
    /// http(s) URL) names, checking each range's checksum (default: IMAGE.bmap beside the
    /// image, the catalog's bmap_url, else what the image's filesystems use)
    #[arg(long, value_name = "FILE|URL", conflicts_with = "all_blocks")]
    bmap: Option<String>,
    /// Write every block of the image, used or not
    #[arg(long)]
    all_blocks: bool,
    /// Discard the blocks not written (BLKDISCARD), on a card that takes it: they read
    /// as zeros, or as whatever the card says, rather than what they held
    #[arg(long, conflicts_with = "all_blocks")]
    discard: bool,
    /// Print progress and the result as JSON, one object per line
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EraseArgs {
    /// The card (block device) to erase, or several: one question for all of them
    #[arg(required = true)]
    targets: Vec<PathBuf>,
    /// With several cards: leave out one that is refused and erase the others
    #[arg(long)]
    skip_refused: bool,
    #[command(flatten)]
    allowed: PermissionArgs,
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
    /// Replace an existing output file (and its .sha256 and .bmap)
    #[arg(long)]
    force: bool,
    /// Read every block of the card, not only those its filesystems use
    #[arg(long)]
    all_blocks: bool,
    /// Keep going past unreadable blocks (a dying card): each is read again 4 KiB at a
    /// time, what cannot be read becomes zeros, OUTPUT.badblocks (a GNU ddrescue mapfile)
    /// lists it, and the summary says the backup is incomplete and which files, folders
    /// and filesystem structures (ext2/3/4, FAT) were hit
    #[arg(long)]
    rescue: bool,
    /// Shrink the backup to fit smaller cards: its last partition's ext2/3/4 filesystem is
    /// cut to what its files use plus --shrink-margin (e2fsck, resize2fs), the partition
    /// table made to match (a GPT's backup moved), the image ended there, and the OS's own
    /// first-boot growth re-armed so it fills the card it is restored to. Implies
    /// --allocated-only. The card is not changed
    #[arg(long)]
    shrink: bool,
    #[command(flatten)]
    shrink_options: ShrinkOptions,
    /// Print progress and the result as JSON, one object per line
    #[arg(long)]
    json: bool,
}

/// How a backup is shrunk (`read --shrink`, `shrink`).
#[derive(Args)]
struct ShrinkOptions {
    /// Free space the shrunk filesystem keeps (never cut below resize2fs's minimum): a
    /// size in bytes, or with K, M, G or T (1024-based)
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size)]
    shrink_margin: u64,
    /// The folder for the temporary copy the shrink works on (needs room for the used
    /// data; default: the output's folder)
    #[arg(long, value_name = "DIR")]
    tmp: Option<PathBuf>,
    /// Do not re-arm the first-boot growth: the root filesystem stays as small as it is
    #[arg(long)]
    no_expand: bool,
}

impl ShrinkOptions {
    fn shrink(&self) -> job::Shrink {
        job::Shrink {
            margin: self.shrink_margin,
            tmp: self.tmp.clone(),
            expand: !self.no_expand,
        }
    }
}

/// "256M", "1G", "4096": a size in bytes (K, M, G, T are powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 256M, 1G, 4096)"))?;
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{text:?}: the unit must be K, M, G or T")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[derive(Args)]
#[command(after_help = SHRINK_HELP)]
struct ShrinkImageArgs {
    /// The image to shrink: raw, or compressed (.xz, .gz, .bz2, .zst, .zip)
    image: PathBuf,
    /// Where the shrunk image goes (.img, .img.zst, .img.xz, .img.gz); without it, IMAGE
    /// (and its .sha256 and .bmap) is replaced once the shrunk one is complete
    output: Option<PathBuf>,
    #[command(flatten)]
    options: ShrinkOptions,
    /// Replace an existing OUTPUT (and its .sha256 and .bmap)
    #[arg(long)]
    force: bool,
    /// Print progress and the result as JSON, one object per line
    #[arg(long)]
    json: bool,
}

const SHRINK_HELP: &str = "\
The last partition's ext2/3/4 filesystem is checked (e2fsck -fn: a filesystem with errors
is refused, nothing written) and cut with resize2fs to what its files use plus
--shrink-margin (never below resize2fs's minimum), on a private temporary copy holding only the used blocks; the partition table is made to
match (MBR, or GPT with its backup moved to the new end) and the image ends there. Needs
e2fsprogs.

First boot grows it back, with the OS's own mechanism (--no-expand: not re-armed):
  Raspberry Pi OS Bookworm  init=/usr/lib/raspberrypi-sys-mods/firstboot on cmdline.txt
  Raspberry Pi OS Trixie    the resize word on cmdline.txt (its initramfs grows the
                            partition; cloud-init's resizefs the filesystem)
  cloud-init with growpart  nothing to change: it grows the root on every boot
  anything else             not re-armed; the summary says how to grow it by hand

Exit codes:
  0    success
  1    failure (filesystem errors, not enough room for the copy, e2fsprogs missing, ...)
  2    invalid command line
  130  cancelled (Ctrl-C)";

#[derive(Args)]
struct VerifyArgs {
    /// The image file (compressed or not), or - for standard input
    image: String,
    /// The block device or file to compare with the image
    target: PathBuf,
    /// Compare only the blocks this block map (a file or an http(s) URL) names (default: as
    /// write: IMAGE.bmap beside the image, else what the image's filesystems use)
    #[arg(long, value_name = "FILE|URL", conflicts_with = "all_blocks")]
    bmap: Option<String>,
    /// Compare every byte of the image, used or not
    #[arg(long)]
    all_blocks: bool,
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

/// What the user allowed on the command line, for the verbs that change a drive (write,
/// erase, customize).
#[derive(Args, Clone, Default)]
pub struct PermissionArgs {
    /// Do not ask for confirmation (required when standard input is not a terminal; not
    /// enough for a system drive or a fixed disk, whose name must be typed)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Allow a drive the running system uses (/boot, /home, swap…); its name must still be
    /// typed at a prompt. The drive holding / is never changed.
    #[arg(long)]
    pub allow_system_drive: bool,
}

impl PermissionArgs {
    pub(crate) fn permission(&self) -> job::Permission {
        job::Permission {
            yes: self.yes,
            allow_system_drive: self.allow_system_drive,
        }
    }
}

/// Why a verb stopped, and what a job left its target as.
pub(crate) struct Stopped {
    failure: Failure,
    left: Option<Left>,
    /// Already reported (a table of cards): only this exit code is left to give.
    said: Option<u8>,
}

impl<E: Into<Failure>> From<E> for Stopped {
    fn from(e: E) -> Stopped {
        Stopped {
            failure: e.into(),
            left: None,
            said: None,
        }
    }
}

impl From<job::Error> for Stopped {
    fn from(e: job::Error) -> Stopped {
        Stopped {
            failure: e.failure,
            left: Some(e.left),
            said: None,
        }
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
        Command::Shrink(a) => a.json,
        Command::Erase(a) => a.json,
        Command::Customize(a) => a.json(),
        Command::Inspect(a) => a.json,
        Command::Bmap(a) => a.json,
        Command::Check(a) => a.json,
        Command::Os(catalog::OsCommand::MakeCatalog(a)) => a.json(),
        Command::Drives(_)
        | Command::Os(_)
        | Command::Devices(_)
        | Command::Cache(_)
        | Command::Preset(_)
        | Command::Completions(_)
        | Command::Man(_) => false,
    };
    let mut reporter = Reporter::new(json);
    let outcome: Result<(), Stopped> = match cli.command {
        Command::Write(args) => write(*args, &cancel, &mut reporter),
        Command::Verify(args) => verify(args, &cancel, &mut reporter).map_err(Stopped::from),
        Command::Hash(args) => hash(args, &cancel, &mut reporter).map_err(Stopped::from),
        Command::Read(args) => read(args, &cancel, &mut reporter),
        Command::Shrink(args) => shrink(args, &cancel, &mut reporter),
        Command::Erase(args) => erase(args, &cancel, &mut reporter),
        Command::Drives(args) => drives::run(args).map_err(Stopped::from),
        Command::Os(command) => catalog::os(command, &cancel, &mut reporter).map_err(Stopped::from),
        Command::Devices(args) => catalog::devices(args, &mut reporter).map_err(Stopped::from),
        Command::Cache(command) => catalog::cache(command, &mut reporter).map_err(Stopped::from),
        Command::Customize(args) => custom::customize_verb(*args, &mut reporter),
        Command::Inspect(args) => inspect::run(args, &cancel, &mut reporter).map_err(Stopped::from),
        Command::Bmap(args) => bmap::run(args, &cancel, &mut reporter).map_err(Stopped::from),
        Command::Check(args) => check::run(args, &cancel, &mut reporter),
        Command::Preset(command) => custom::preset(command, &mut reporter).map_err(Stopped::from),
        Command::Completions(args) => docs::completions(args, Cli::command()),
        Command::Man(args) => docs::man(args, Cli::command()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Stopped {
            said: Some(code), ..
        }) => ExitCode::from(code),
        Err(Stopped { failure, left, .. }) => {
            let code = failure.exit_code();
            reporter.failure(&failure.to_string(), code, failure.offset(), left);
            ExitCode::from(code)
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
    /// The image argument (absent with --os) and the targets.
    fn operands(&self) -> Result<(Option<&str>, Vec<PathBuf>), Failure> {
        let paths = |names: &[String]| names.iter().map(PathBuf::from).collect();
        match (&self.os, self.operands.as_slice()) {
            (Some(_), targets) => {
                // A URL or a compressed file is an image, never a card to write to.
                let image_like = [".xz", ".gz", ".zst", ".bz2", ".zip"];
                match targets
                    .iter()
                    .find(|t| job::is_url(t) || image_like.iter().any(|e| t.ends_with(e)))
                {
                    Some(image) => Err(Failure::Usage(format!(
                        "with --os, name only TARGETs: {image} looks like an image (write it \
                         without --os, or name the cards and files to write)"
                    ))),
                    None => Ok((None, paths(targets))),
                }
            }
            (None, [image, targets @ ..]) if !targets.is_empty() => {
                Ok((Some(image.as_str()), paths(targets)))
            }
            (None, _) => Err(Failure::Usage(
                "name the IMAGE (or URL) and the TARGET, or use --os NAME TARGET".into(),
            )),
        }
    }
}

/// `cardsmith write`: the arguments as a [`WriteJob`]. Settings (and their passwords) are
/// asked for, and the catalog entry found, before anything is downloaded or written.
fn write(args: WriteArgs, cancel: &CancelToken, reporter: &mut Reporter) -> Result<(), Stopped> {
    let (image_arg, targets) = args.operands()?;
    let settings = args.custom.settings()?;
    let source = match (&args.os, image_arg) {
        (Some(name), _) => Source::Os(Box::new(catalog::entry(
            &args.catalog,
            name,
            args.device.as_deref(),
            reporter,
        )?)),
        (None, Some(arg)) => Source::from_arg(arg),
        (None, None) => unreachable!("operands() names the image without --os"),
    };
    let job = WriteJob {
        sha256: args.sha256,
        verify: !args.no_verify,
        eject: args.eject,
        permission: args.allowed.permission(),
        force: args.force,
        advance_preset: args.custom.counting_preset(),
        settings,
        init_format: args.custom.init_format.clone(),
        cache_dir: None,
        stall_timeout: Duration::from_secs(args.catalog.stall_timeout),
        blocks: match (&args.bmap, args.all_blocks) {
            (Some(map), _) => Blocks::Bmap(map.clone()),
            (None, true) => Blocks::All,
            (None, false) => Blocks::Used,
        },
        discard: args.discard,
        first_number: args.first_number,
        skip_refused: args.skip_refused,
        write_stall_timeout: Duration::from_secs(args.write_stall_timeout.max(1)),
        ..WriteJob::to_all(source, targets.into_iter().map(Destination::Path).collect())
    };
    let report = job.run(cancel, reporter)?;
    cards_done(&report, reporter)
}

/// A job's report; over several cards, the table, and exit code 5 when one failed.
pub(crate) fn cards_done(report: &job::Report, reporter: &mut Reporter) -> Result<(), Stopped> {
    reporter.cards(report);
    match report {
        job::Report::Cards(cards) if cards.failed > 0 => Err(Stopped {
            failure: Failure::Refused(format!(
                "{} of {} cards failed",
                cards.failed,
                cards.cards.len()
            )),
            left: None,
            said: Some(cards.exit_code()),
        }),
        _ => Ok(()),
    }
}

fn verify(args: VerifyArgs, cancel: &CancelToken, reporter: &mut Reporter) -> Result<(), Failure> {
    let input = Input::from_arg(&args.image);
    let image = Image::open(&input, OpenAs::Detect)?;
    let target = Target::open_for_read(&args.target)?;
    ctrl_c_cancels(true);
    let blocks = match (&args.bmap, args.all_blocks) {
        (Some(map), _) => Blocks::Bmap(map.clone()),
        (None, true) => Blocks::All,
        (None, false) => Blocks::Used,
    };
    let mut run = Run::new(reporter, Left::Untouched);
    let choice = job::choose_map(&image, &blocks, &mut run)?;
    let which = match &choice {
        MapChoice::Map(map, _) => engine::VerifyBlocks::Map(map),
        MapChoice::AsItStreams => engine::VerifyBlocks::AsItStreams,
        MapChoice::All => engine::VerifyBlocks::All,
    };
    let report = engine::verify_blocks(image, &target, which, cancel, &mut |p| run.progress(p))?;
    let summary = if report.compared < report.bytes {
        format!(
            "{} matches {input} in every block its filesystems use: {} compared, {} unused \
             left out.",
            target.path().display(),
            units::bytes(report.compared),
            units::bytes(report.bytes - report.compared)
        )
    } else {
        format!(
            "{} matches {input}: {} compared.",
            target.path().display(),
            units::bytes(report.bytes)
        )
    };
    reporter.success(
        Said::Note(&summary),
        json!({
            "command": "verify",
            "image": input.to_string(),
            "target": target.path(),
            "bytes": report.bytes,
            "bytes_compared": report.compared,
            "bypassed_cache": report.bypassed_cache,
        }),
    );
    Ok(())
}

/// `cardsmith erase`: an [`EraseJob`].
fn erase(args: EraseArgs, cancel: &CancelToken, reporter: &mut Reporter) -> Result<(), Stopped> {
    let job = EraseJob {
        targets: args
            .targets
            .into_iter()
            .map(|path| job::Wanted {
                path,
                confirmed: None,
                gets: None,
            })
            .collect(),
        permission: args.allowed.permission(),
        eject: args.eject,
        skip_refused: args.skip_refused,
    };
    let report = job.run(cancel, reporter)?;
    cards_done(&report, reporter)
}

/// `cardsmith read`: a [`ReadJob`].
fn read(args: ReadArgs, cancel: &CancelToken, reporter: &mut Reporter) -> Result<(), Stopped> {
    let job = ReadJob {
        source: args.source,
        output: args.output,
        allocated_only: args.allocated_only,
        force: args.force,
        all_blocks: args.all_blocks,
        confirmed: None,
        rescue: args.rescue,
        shrink: args.shrink.then(|| args.shrink_options.shrink()),
    };
    if job.shrink.is_some() && (job.rescue || job.all_blocks) {
        return Err(Failure::Usage(
            "--shrink reads the used blocks of a healthy card: it cannot be combined with \
             --rescue or --all-blocks"
                .into(),
        )
        .into());
    }
    let report = job.run(cancel, reporter)?;
    reporter.report(&report);
    Ok(())
}

/// `cardsmith shrink`: a [`ShrinkJob`].
fn shrink(
    args: ShrinkImageArgs,
    cancel: &CancelToken,
    reporter: &mut Reporter,
) -> Result<(), Stopped> {
    let job = ShrinkJob {
        image: args.image,
        output: args.output,
        force: args.force,
        shrink: args.options.shrink(),
    };
    let report = job.run(cancel, reporter)?;
    reporter.report(&report);
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
    let mut run = Run::new(reporter, Left::Untouched);
    let report = engine::hash(image, args.algorithm, cancel, &mut |p| run.progress(p))?;
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
