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
    }
}

#[test]
fn the_trace_format_doc_names_every_line_kind() {
    let doc = read(&root().join("docs/trace-format.md"));
    for ev in chimney::contract::trace::TraceEv::ALL {
        assert!(doc.contains(&format!("`{}`", ev.name())), "docs/trace-format.md does not describe `{}`", ev.name());
    }
}

#[test]
fn every_ambiguity_the_code_cites_is_in_the_spec() {
    let spec = read(&root().join("docs/spec.md"));
    let mut files = Vec::new();
    all_files(&root().join("crates"), &mut files);
    for f in files {
        let text = read(&f);
        let mut rest = text.as_str();
        while let Some(i) = rest.find("§8 A") {
            let id: String = rest[i + "§8 ".len()..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            if id.len() < 2 {
                // Not a citation (e.g. this test's own search string).
                rest = &rest[i + "§8 A".len()..];
                continue;
            }
            assert!(
                spec.contains(&format!("**{id}**")),
                "{} cites {id}, which docs/spec.md §8 does not define",
                f.display()
            );
            rest = &rest[i + "§8 A".len()..];
        }
    }
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
