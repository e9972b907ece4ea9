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
