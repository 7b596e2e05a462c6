//! The repository stands on its own: the specification (docs/spec.md) states every rule the
//! verifier checks and every ambiguity the code cites; every relative link in the README and
//! docs/ resolves to a file in the repository; nothing points outside it.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every `.md` file of the README and docs/.
fn markdown() -> Vec<PathBuf> {
    let mut v = vec![root().join("README.md"), root().join("BENCHMARKS.md")];
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            v.push(p);
        }
    }
    v
}

/// Every source and doc file of the repository (no build output, no VCS).
fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name == "target" || name.starts_with('.') && name != ".ci" {
            continue;
        }
        if p.is_dir() {
            all_files(&p, out);
        } else if ["rs", "md", "sh", "pkt", "toml"].iter().any(|x| p.extension().is_some_and(|e| e == *x))
            || p.ends_with(".ci/run")
        {
            out.push(p);
        }
    }
}

#[test]
fn the_spec_states_every_checked_rule() {
    let spec = read(&root().join("docs/spec.md"));
    for r in chimney::contract::RULES {
        assert!(spec.contains(r.id), "docs/spec.md does not state {}", r.id);
        // The catalogue marks each checked rule as held by the verifier.
        let row = spec.lines().find(|l| l.starts_with(&format!("| {} |", r.id)));
        let row = row.unwrap_or_else(|| panic!("docs/spec.md §9 has no row for {}", r.id));
        assert!(row.contains("| verifier"), "docs/spec.md §9 does not mark {} as checked by the verifier", r.id);
    }
    let count = format!("the {}\nrules of `contract/rules.rs`", chimney::contract::RULES.len());
    assert!(spec.contains(&count), "docs/spec.md §9 gives the wrong number of checked rules");
}

#[test]
fn the_trace_format_doc_names_every_line_kind() {
    let doc = read(&root().join("docs/trace-format.md"));
    for ev in chimney::contract::trace::TraceEv::ALL {
        assert!(doc.contains(&format!("`{}`", ev.name())), "docs/trace-format.md does not describe `{}`", ev.name());
    }
}

/// Ambiguity ids cited in `text`: `A` and one or two digits standing alone (`A7`, `(A8)`,
/// `§8 A22`), not part of a longer word or number (`0xA5`, `A100`).
fn ambiguity_ids(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'#';
    let mut ids = Vec::new();
    for i in 0..b.len() {
        if b[i] != b'A' || (i > 0 && word(b[i - 1])) {
            continue;
        }
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        let end = i + 1 + digits;
        if (1..=2).contains(&digits) && (end == b.len() || !word(b[end])) {
            ids.push(text[i..end].to_string());
        }
    }
    ids
}

#[test]
fn every_ambiguity_the_code_cites_is_in_the_spec() {
    assert_eq!(ambiguity_ids("(A8) and §8 A22, A35; not 0xA5, A100 or A7x"), ["A8", "A22", "A35"]);
    let spec = read(&root().join("docs/spec.md"));
    let mut files = Vec::new();
    all_files(&root().join("crates"), &mut files);
    let mut cited = 0;
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "rs")) {
        for id in ambiguity_ids(&read(f)) {
            cited += 1;
            assert!(
                spec.contains(&format!("**{id}**")),
                "{} cites {id}, which docs/spec.md §8 does not define",
                f.display()
            );
        }
    }
    assert!(cited >= 10, "only {cited} ambiguity citations found: the scan is broken");
}

#[test]
fn relative_links_resolve_and_nothing_points_outside() {
    for md in markdown() {
        let text = read(&md);
        let dir = md.parent().unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("](") {
            let tail = &rest[i + 2..];
            let end = tail.find(')').unwrap_or(tail.len());
            let target = tail[..end].split('#').next().unwrap();
            rest = &tail[end..];
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            assert!(dir.join(target).exists(), "{}: link to {target} does not resolve", md.display());
        }
    }
    let mut files = Vec::new();
    all_files(&root(), &mut files);
    for f in files {
        let text = read(&f);
        // Spelled in two parts so that this file does not match itself.
        assert!(!text.contains(concat!("../", "shared")), "{} points outside the repository", f.display());
        assert!(
            !text.contains(concat!("contract ", "digest")),
            "{} cites a document the repository lacks",
            f.display()
        );
    }
}
