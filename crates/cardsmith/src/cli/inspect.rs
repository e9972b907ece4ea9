//! `cardsmith inspect`: what an image or a card runs on its first boot, read from its root
//! filesystem without mounting or changing anything, and what each setting would do there.

use std::fs::{self, File};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use cardsmith_customize::inspect::{Given, Inspection};
use cardsmith_customize::{examine, Format};
use cardsmith_engine::{CancelToken, Format as Packing};
use clap::Args;
use serde_json::json;

use super::report::{Reporter, Said};
use crate::job::{self, Event, Failure, Left, Run, Sink};

#[derive(Args)]
pub struct InspectArgs {
    /// An image file (raw or compressed), an http(s) URL, or a drive (read only)
    #[arg(value_name = "IMAGE|URL|DEVICE")]
    image: String,
    /// The format to judge settings by (systemd, cloudinit or cloudinit-rpi), as a catalog
    /// would give it; without it, the one inspection finds
    #[arg(long, value_name = "FORMAT")]
    init_format: Option<String>,
    #[command(flatten)]
    catalog: super::catalog::CatalogArgs,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

pub(super) fn run(
    args: InspectArgs,
    cancel: &CancelToken,
    reporter: &mut Reporter,
) -> Result<(), Failure> {
    let path = Path::new(&args.image);
    let meta = fs::metadata(path).ok();
    let device = meta
        .as_ref()
        .is_some_and(|m| m.file_type().is_block_device());
    let open_plain = |what: &str| {
        File::open(path)
            .map_err(|e| Failure::Refused(format!("cannot read {what} {}: {e}", path.display())))
    };
    // A drive or a raw image file is read where it is; anything compressed or downloaded
    // is decoded into a sparse temporary file first (filesystems want random access).
    let file = if device {
        open_plain("the drive")?
    } else {
        let (image, _scratch) = {
            let mut run = Run::new(reporter, Left::Untouched);
            job::open_arg(&args.image, args.catalog.http()?, cancel, &mut run)?
        };
        let local_raw =
            image.format() == Packing::Raw && meta.as_ref().is_some_and(|m| m.is_file());
        if !local_raw {
            let text = format!(
                "{} is {}: decoding it into a temporary file in {} to read its filesystems",
                args.image,
                match image.format() {
                    Packing::Raw => "streamed".to_owned(),
                    other => format!("{other} compressed"),
                },
                std::env::temp_dir().display()
            );
            reporter.event(Event::note(text));
        }
        super::ctrl_c_cancels(true);
        let file = job::readable(image, cancel);
        super::ctrl_c_cancels(false);
        file?
    };
    let given = args
        .init_format
        .as_deref()
        .map(Format::parse)
        .transpose()?
        .map(|format| Given {
            format,
            by: "--init-format",
        });
    let found = examine(&file, path, given)?;
    let mut lines = vec![format!("{}:", args.image)];
    match &found.inspection {
        Ok(ins) => lines.extend(describe(ins)),
        Err(why) => lines.push(format!("  root filesystem: not readable ({why})")),
    }
    let (choice_json, effects_json) = match &found.choice {
        Ok(c) => {
            let mut line = format!("  first-boot format: {} ({})", c.format.name(), c.why);
            if let Some(script) = &c.script {
                line += &format!("; cmdline.txt names {script}");
            }
            lines.push(line);
            if let Some(d) = &c.disagreement {
                lines.push(format!("  note: {d}"));
            }
            lines.push("  settings:".into());
            for e in &found.effects {
                lines.push(format!("    {}", e.describe()));
            }
            (json!(c), json!(found.effects))
        }
        Err(e) => {
            lines.push(format!("  first-boot settings: none can apply: {e}"));
            (json!({ "refused": e.to_string() }), json!([]))
        }
    };
    let inspection = match &found.inspection {
        Ok(ins) => json!(ins),
        Err(why) => json!({ "unreadable": why }),
    };
    reporter.success(
        Said::Answer(&lines.join("\n")),
        json!({ "command": "inspect", "image": args.image, "inspection": inspection,
                "choice": choice_json, "effects": effects_json }),
    );
    Ok(())
}

/// What inspection found, line by line.
fn describe(ins: &Inspection) -> Vec<String> {
    let mut lines = Vec::new();
    match &ins.os {
        Some(os) => {
            let mut line = format!("  system: {}", os.name);
            let detail: Vec<&str> = [os.version.as_deref(), os.codename.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            if !detail.is_empty() {
                line += &format!(" (version {})", detail.join(", "));
            }
            lines.push(line);
        }
        None => lines.push("  system: no os-release".into()),
    }
    lines.push(match &ins.boot_mount {
        Some(m) => format!(
            "  boot partition: mounted at {} by fstab{}",
            m.point,
            if m.nofail { " (nofail)" } else { "" }
        ),
        None => "  boot partition: not in fstab".into(),
    });
    lines.push(format!(
        "  uid-1000 user: {}",
        ins.first_user.as_deref().unwrap_or("none")
    ));
    let parts = [
        ("systemd", ins.systemd),
        ("cloud-init", ins.cloud_init.is_some()),
        ("NetworkManager", ins.network_manager),
        ("netplan", ins.netplan),
        ("wpa_supplicant", ins.wpa_supplicant),
        ("dhcpcd", ins.dhcpcd),
        ("openssh-server", ins.openssh_server),
        ("imager_custom", ins.imager_custom),
        ("userconf", ins.userconf),
        ("imager_fixup", ins.imager_fixup),
        ("firstboot", ins.firstboot),
        ("raspi-config", ins.raspi_config),
    ];
    let list = |want: bool| {
        parts
            .iter()
            .filter(|(_, has)| *has == want)
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    lines.push(format!("  has: {}", list(true)));
    lines.push(format!("  lacks: {}", list(false)));
    if let Some(c) = &ins.cloud_init {
        let sources = c
            .datasources
            .as_ref()
            .map_or_else(|| "any".to_owned(), |d| d.join(", "));
        lines.push(format!(
            "  cloud-init: datasources {sources}; NoCloud seed {}; /etc/rpi-issue {}; \
             Raspberry Pi module {}",
            c.seedfrom.as_deref().unwrap_or("not configured"),
            if c.rpi_issue { "present" } else { "absent" },
            if c.rpi_module { "present" } else { "absent" }
        ));
    }
    let words: Vec<String> = [
        ins.cmdline.init.as_ref().map(|i| format!("init={i}")),
        ins.cmdline.resize.then(|| "resize".to_owned()),
        ins.cmdline.ds.clone(),
        ins.cmdline
            .systemd_run
            .as_ref()
            .map(|r| format!("systemd.run={r}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    lines.push(format!(
        "  cmdline.txt: {}",
        if words.is_empty() {
            "no first-boot words".to_owned()
        } else {
            words.join(" ")
        }
    ));
    lines
}
