//! First-boot settings inside a job: judged against the image before anything is written,
//! put on the boot partition after, and a preset's counter moved on.

use std::fs::{self, File};
use std::path::Path;

use cardsmith_customize::presets::Presets;
use cardsmith_customize::{prepare, Prepared, Report, Request};
use cardsmith_engine::{unpack, CancelToken, Format as Packing, Image, Input};

use super::{Customised, Event, Failure, Left, Run};

/// The image's content as a file to read at random: a raw image file where it is, anything
/// else (compressed, streamed) decoded into a sparse temporary file that vanishes when
/// closed.
pub fn readable(image: Image, cancel: &CancelToken) -> Result<File, cardsmith_engine::Error> {
    if image.format() == Packing::Raw {
        if let Some((Input::Path(path), _)) = image.reopen_args() {
            if fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                return File::open(&path)
                    .map_err(|source| cardsmith_engine::Error::Open { path, source });
            }
        }
    }
    Ok(unpack(image, &std::env::temp_dir(), cancel)?.file)
}

/// Before anything is written: whether the image can take the settings, judged from its own
/// root filesystem as customising it later will. A raw image file is read where it is; a
/// compressed one, when no format was given, is decoded into a sparse temporary file
/// first. With a format given (the catalog's, `--init-format`), a compressed or streamed
/// image is trusted to it until it is written, then inspected there.
pub fn check_before_writing(
    image: &Image,
    request: Request<'_>,
    cancel: &CancelToken,
    run: &mut Run<'_>,
) -> Result<(), Failure> {
    // An image read before writing is judged whole by `prepare`; one that is not (a stream
    // with a format given) is judged by that format now, and by `prepare` once written.
    let readable_here = match image.reopen_args() {
        Some((Input::Path(path), open_as))
            if image.format() == Packing::Raw || request.format.is_none() =>
        {
            Some((path, open_as))
        }
        _ => None,
    };
    let Some((path, open_as)) = readable_here else {
        if let Some(format) = request.format {
            cardsmith_customize::Format::parse(format)?.takes(request.settings)?;
        }
        return Ok(());
    };
    if image.format() != Packing::Raw {
        run.event(Event::note(format!(
            "Reading the image's filesystems before writing, to see how it takes settings: \
             decoding {} into a temporary file",
            path.display()
        )));
    }
    let again = Image::open(&Input::Path(path.clone()), open_as)?;
    run.sink.watching_cancel(true);
    let file = readable(again, cancel);
    run.sink.watching_cancel(false);
    let file = match file {
        Ok(file) => file,
        // No room to decode it here: it is judged on the target once written instead.
        Err(cardsmith_engine::Error::NoSpace { path, .. }) => {
            run.event(Event::note(format!(
                "No room to decode the image in {} before writing: it is inspected once \
                 written (set TMPDIR to a roomier place to have it checked first)",
                path.display()
            )));
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    prepare(&file, &path, false, request)?;
    Ok(())
}

/// Writes the prepared settings; from the first byte on, a failure may leave part of them.
pub fn apply(prepared: Prepared, file: &fs::File, run: &mut Run<'_>) -> Result<Report, Failure> {
    run.left = Left::PartlyCustomised;
    run.sink.watching_cancel(true);
    Ok(prepared.apply(file)?)
}

/// What a customisation did, as an event (and its paragraph for people).
pub fn customised(report: &Report) -> Customised {
    let mut text = format!(
        "Customised the boot partition for {} ({}): {}",
        report.format.name(),
        report.why,
        report.files.join(", ")
    );
    if let Some(h) = &report.hostname {
        text += &format!("; hostname {h}");
    }
    if let Some(kind) = report.password_hash {
        text += &format!("; password stored as {kind}");
    }
    for effect in &report.effects {
        text += &format!("\n  {}", effect.describe());
    }
    if let Some(d) = &report.disagreement {
        text += &format!("\nNote: {d}");
    }
    for note in &report.notes {
        text += &format!("\nNote: {note}");
    }
    Customised {
        init_format: report.format.name(),
        detected: report.detected,
        why: report.why.clone(),
        disagreement: report.disagreement.clone(),
        notes: report.notes.clone(),
        effects: report.effects.clone(),
        files: report.files.clone(),
        hostname: report.hostname.clone(),
        password_hash: report.password_hash,
        text,
    }
}

/// The settings card `index` (from 0) of several gets: the host-name counter starts at
/// `first` (else where the settings have it) and moves on by one per card.
pub fn for_card(
    settings: &cardsmith_customize::Settings,
    first: Option<u64>,
    index: usize,
) -> cardsmith_customize::Settings {
    let mut s = settings.clone();
    if let Some(first) = first {
        s.counter = first;
    }
    if s.has_counter() {
        s.counter = s.counter.saturating_add(index as u64);
    }
    s
}

/// After a card got a host name from preset `name`'s counter: the next card gets the next
/// number. A preset that cannot be updated is reported, not a failure (the card is done).
pub fn advance_preset(name: &str, counter: u64, run: &mut Run<'_>) {
    let text = match Presets::open().and_then(|p| p.advance(name, counter)) {
        Ok(next) => format!("Preset {name}: the next card is number {next}"),
        Err(e) => format!("Preset {name} was not advanced: {e}"),
    };
    run.event(Event::PresetCounter {
        preset: name.to_owned(),
        text,
    });
}

/// Tells that an image file others could read was made private before it got secrets.
pub fn made_private(path: &Path, mode: u32, run: &mut Run<'_>) {
    run.event(Event::MadePrivate {
        path: path.to_owned(),
        mode_was: mode,
    });
}
