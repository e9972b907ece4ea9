//! `cardsmith check DEVICE [--write]`: a card's real capacity (a counterfeit keeps less
//! than it claims, or wraps around) and its speeds. Only `--write` changes the card.

use std::path::PathBuf;

use cardsmith_engine::{self as engine, units, CancelToken, CheckReport, Target};
use clap::Args;
use serde_json::json;

use super::report::{Reporter, Said};
use super::{ctrl_c_cancels, PermissionArgs, Stopped};
use crate::job::{self, Failure, Left, Run};

#[derive(Args)]
pub struct CheckArgs {
    /// The card (block device) to check
    target: PathBuf,
    /// Write test patterns across the card and read them back (erases it): its real
    /// capacity, where it wraps, and its write speeds. A later write to this card is held
    /// to the capacity found
    #[arg(long)]
    write: bool,
    #[command(flatten)]
    allowed: PermissionArgs,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CheckArgs, cancel: &CancelToken, reporter: &mut Reporter) -> Result<(), Stopped> {
    let (report, kept) = if args.write {
        let mut run = Run::new(reporter, Left::Untouched);
        let outcome = write_check(&args, cancel, &mut run);
        run.end(outcome)?
    } else {
        let target = Target::open_for_read(&args.target).map_err(Failure::from)?;
        ctrl_c_cancels(true);
        let mut run = Run::new(reporter, Left::Untouched);
        let report = engine::check(&target, false, cancel, &mut |p| run.progress(p))
            .map_err(Failure::from)?;
        (report, None)
    };
    let mut said = vec![summary(&args.target, &report)];
    if let Some(kept) = &kept {
        said.push(kept.clone());
    }
    reporter.success(
        Said::Note(&said.join("\n")),
        json!({
            "command": "check",
            "target": args.target,
            "claimed": report.claimed,
            "real": report.real,
            "wraps_at": report.wraps_at,
            "counterfeit": report.real.map(|r| r < report.claimed),
            "write_rate": report.write_rate,
            "read_rate": report.read_rate,
            "random_reads_per_s": report.random_reads,
            "random_writes_per_s": report.random_writes,
        }),
    );
    Ok(())
}

/// Opens the card as write and erase do (checked, asked, unmounted, exclusive), checks
/// it, and keeps what was found.
fn write_check(
    args: &CheckArgs,
    cancel: &CancelToken,
    run: &mut Run<'_>,
) -> Result<(CheckReport, Option<String>), Failure> {
    let opened = job::open_drive(
        &args.allowed.permission(),
        &args.target,
        None,
        &job::Incoming::check(),
        run,
    )?;
    let target = opened.target;
    run.left = Left::Zeroed;
    ctrl_c_cancels(true);
    let report =
        engine::check(&target, true, cancel, &mut |p| run.progress(p)).inspect_err(|_| {
            target.scrub_after_failure();
            run.left = Left::after_write(target.leftover());
        })?;
    let kept = match job::checks::remember(&opened.drive.identity(), &report) {
        Ok(path) => format!(
            "Kept in {}: later writes to this card are held to what it really holds.",
            path.display()
        ),
        Err(e) => format!("The finding was not kept: {e}"),
    };
    Ok((report, Some(kept)))
}

/// What was found, for people.
fn summary(path: &std::path::Path, r: &CheckReport) -> String {
    let mut lines = Vec::new();
    match (r.real, r.wraps_at) {
        (Some(real), Some(at)) if real < r.claimed => lines.push(format!(
            "COUNTERFEIT: {} claims {} but keeps only {}: writes from byte {at} on land at its \
             start again, over what is there. Do not use it for more than {}.",
            path.display(),
            units::bytes(r.claimed),
            units::bytes(real),
            units::bytes(real)
        )),
        (Some(real), None) if real < r.claimed => lines.push(format!(
            "COUNTERFEIT: {} claims {} but keeps only {}: what is written past that is lost.",
            path.display(),
            units::bytes(r.claimed),
            units::bytes(real)
        )),
        (Some(_), _) => lines.push(format!(
            "{} keeps all of the {} it claims.",
            path.display(),
            units::bytes(r.claimed)
        )),
        (None, _) => lines.push(format!(
            "{} claims {}; its real capacity is checked only with --write (which erases it).",
            path.display(),
            units::bytes(r.claimed)
        )),
    }
    let mb = |rate: u64| format!("{:.1} MB/s", rate as f64 / 1e6);
    let mut speeds = format!("Sequential read {}", mb(r.read_rate));
    if let Some(w) = r.write_rate {
        speeds += &format!(", write {}", mb(w));
    }
    speeds += &format!("; 4 KiB random reads {}/s", r.random_reads);
    if let Some(w) = r.random_writes {
        speeds += &format!(", writes {w}/s");
    }
    lines.push(speeds + ".");
    lines.join("\n")
}
