//! cardsmith on a Linux desktop: its manual pages and shell completions, generated from
//! the command line's own definition, checked by the tools that read them: man (with
//! groff's warnings), bash (syntax, and its completion function asked as bash asks it),
//! zsh -n and fish -n.

mod common;

use std::fs;
use std::process::Command;

use common::*;

/// Every verb `cardsmith --help` lists (the line after "Commands:" up to "Options:").
fn verbs() -> Vec<String> {
    let help = stdout(&cardsmith(&["--help"]));
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|v| v != "help")
        .collect()
}

#[test]
fn a_manual_page_renders_for_cardsmith_and_each_verb() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    assert_ok(&cardsmith(&["man", "--dir", pages.to_str().unwrap()]));
    let verbs = verbs();
    assert!(
        verbs.len() >= 15 && verbs.contains(&"shrink".to_owned()),
        "{verbs:?}"
    );
    let mut names = vec!["cardsmith".to_owned()];
    names.extend(verbs.iter().map(|v| format!("cardsmith-{v}")));
    // Nested verbs get their own pages too.
    names.extend(["cardsmith-os-list", "cardsmith-preset-save"].map(str::to_owned));
    for name in &names {
        let page = pages.join(format!("{name}.1"));
        assert!(page.is_file(), "{} is missing", page.display());
        let shown = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&page)
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("man (man-db) is needed");
        let text = String::from_utf8_lossy(&shown.stdout);
        let warnings = String::from_utf8_lossy(&shown.stderr);
        assert!(shown.status.success(), "{name}: {warnings}");
        assert!(warnings.trim().is_empty(), "{name}: {warnings}");
        let typed = name.replace('-', " ");
        // man justifies lines: words, not spaces.
        let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            words.contains("NAME") && words.contains("SYNOPSIS"),
            "{name}: {text}"
        );
        assert!(
            words.contains(&format!("SYNOPSIS {typed}")),
            "{name}'s synopsis says {typed}: {text}"
        );
    }
    // Options and the extra text are there: write's --first-number, read's exit codes.
    let write = fs::read_to_string(pages.join("cardsmith-write.1")).unwrap();
    assert!(write.contains("first\\-number"), "{write}");
    let read = fs::read_to_string(pages.join("cardsmith-read.1")).unwrap();
    assert!(read.contains("Exit codes"), "{read}");
    // Without --dir, the main page on standard output: the same page.
    let out = cardsmith(&["man"]);
    assert_ok(&out);
    assert_eq!(
        out.stdout,
        fs::read(pages.join("cardsmith.1")).unwrap(),
        "cardsmith man prints cardsmith.1"
    );
}

#[test]
fn completions_load_in_bash_zsh_and_fish_and_complete_verbs_and_options() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, check) in [("bash", "-n"), ("zsh", "-n"), ("fish", "--no-execute")] {
        let out = cardsmith(&["completions", shell]);
        assert_ok(&out);
        let script = dir.path().join(format!("cardsmith.{shell}"));
        fs::write(&script, &out.stdout).unwrap();
        let checked = Command::new(shell)
            .arg(check)
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("{shell} is needed (scripts/test installs it): {e}"));
        assert!(
            checked.status.success(),
            "{shell} {check}: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }
    // bash asks the function it registered, as it would on Tab: `cardsmith sh<Tab>` and
    // `cardsmith read /dev/x out.img --shr<Tab>`.
    let script = dir.path().join("cardsmith.bash");
    let ask = |words: &str| -> String {
        let probe = format!(
            "source {}; complete -p cardsmith >/dev/null || exit 9; \
             COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
             _cardsmith cardsmith \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = Command::new("bash").arg("-c").arg(&probe).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let verbs = ask("cardsmith sh");
    assert_eq!(verbs.lines().collect::<Vec<_>>(), ["shrink"], "{verbs}");
    let options = ask("cardsmith read /dev/x out.img --shr");
    let options: Vec<&str> = options.lines().collect();
    assert!(
        options.contains(&"--shrink") && options.contains(&"--shrink-margin"),
        "{options:?}"
    );
}

fn sha256_of(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    fs::write(&path, bytes).unwrap();
    sha256sum(&path)
}

/// A folder of images (xz, raw in a subfolder with a space in its name, zip; the sample
/// catalog's two demo systems) made into a catalog: it passes Raspberry Pi Imager's
/// published schema (python's jsonschema), its sizes and SHA-256s are the ones sha256sum,
/// xz and unzip give, `os list` shows it, and `write --os` of each entry (with settings for
/// the cloud-init one) works from it offline.
#[test]
fn make_catalog_turns_a_folder_of_images_into_a_catalog_that_works_offline() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("bench");
    fs::create_dir_all(images.join("more images")).unwrap();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../../os-list-sample");
    fs::copy(
        format!("{sample}/demo-systemd.img.xz"),
        images.join("demo-systemd.img.xz"),
    )
    .unwrap();
    let cloud = run_ok(
        Command::new("xz")
            .args(["-dc"])
            .arg(format!("{sample}/demo-cloudinit.img.xz")),
    )
    .stdout;
    fs::write(images.join("more images/demo cloud.img"), &cloud).unwrap();
    let systemd = run_ok(
        Command::new("xz")
            .args(["-dc"])
            .arg(format!("{sample}/demo-systemd.img.xz")),
    )
    .stdout;
    fs::write(dir.path().join("zipped.img"), &systemd).unwrap();
    run_ok(
        Command::new("zip")
            .args(["-q", "-j"])
            .arg(images.join("zipped.zip"))
            .arg(dir.path().join("zipped.img")),
    );
    fs::write(images.join("notes.txt"), "not an image").unwrap();

    let out = cardsmith(&["os", "make-catalog", images.to_str().unwrap()]);
    assert_ok(&out);
    let catalog = images.join("os_list.json");
    let schema = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/os-list-schema.json"
    );
    let valid = Command::new("python3")
        .arg("-c")
        .arg(
            "import json, sys, jsonschema; \
             jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))",
        )
        .arg(&catalog)
        .arg(schema)
        .output()
        .unwrap();
    assert!(
        valid.status.success(),
        "{}",
        String::from_utf8_lossy(&valid.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&fs::read(&catalog).unwrap()).unwrap();
    let entries = list["os_list"].as_array().unwrap();
    let by_name = |name: &str| {
        entries
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {list}"))
    };
    assert_eq!(entries.len(), 3, "notes.txt is not an image: {list}");
    let expect = [
        ("demo-systemd", "demo-systemd.img.xz", &systemd, "systemd"),
        (
            "demo cloud",
            "more%20images/demo%20cloud.img",
            &cloud,
            "cloudinit-rpi",
        ),
        ("zipped", "zipped.zip", &systemd, "systemd"),
    ];
    for (name, url, decoded, format) in expect {
        let e = by_name(name);
        assert_eq!(e["url"], url, "{e}");
        assert_eq!(e["init_format"], format, "{e}");
        assert_eq!(e["extract_size"].as_u64(), Some(decoded.len() as u64));
        assert_eq!(e["extract_sha256"], sha256_of(decoded), "{e}");
        let file = images.join(url.replace("%20", " "));
        assert_eq!(e["image_download_sha256"], sha256sum(&file), "{e}");
        assert_eq!(
            e["image_download_size"].as_u64(),
            Some(fs::metadata(&file).unwrap().len())
        );
        assert!(images.join(e["icon"].as_str().unwrap()).is_file(), "{e}");
    }
    let shown = cardsmith(&["os", "list", "--repo", catalog.to_str().unwrap()]);
    assert_ok(&shown);
    for name in ["demo-systemd", "demo cloud", "zipped"] {
        assert!(stdout(&shown).contains(name), "{}", stdout(&shown));
    }
    // Written from it, each is the image it names, byte for byte.
    for (name, _, decoded, _) in expect {
        let target = dir.path().join(format!("{name}.out"));
        let out = cardsmith(&[
            "write",
            "--os",
            name,
            "--repo",
            catalog.to_str().unwrap(),
            target.to_str().unwrap(),
            "--yes",
        ]);
        assert_ok(&out);
        assert_eq!(sha256sum(&target), sha256_of(decoded), "{name}");
    }
    // And with first-boot settings, offline.
    let target = dir.path().join("customised.out");
    let out = cardsmith(&[
        "write",
        "--os",
        "demo cloud",
        "--repo",
        catalog.to_str().unwrap(),
        target.to_str().unwrap(),
        "--yes",
        "--hostname",
        "bench-node",
    ]);
    assert_ok(&out);
    let fat = u64::from(u32::from_le_bytes(
        read_range(&target, 454, 4).try_into().unwrap(),
    )) * 512;
    let seed = run_ok(
        Command::new("mtype")
            .arg("-i")
            .arg(format!("{}@@{fat}", target.display()))
            .arg("::user-data"),
    );
    assert!(String::from_utf8_lossy(&seed.stdout).contains("bench-node"));
    // The catalog is not replaced unless asked.
    let again = cardsmith(&["os", "make-catalog", images.to_str().unwrap()]);
    assert_fails(&again, 1, &["exists", "--force"]);
}
