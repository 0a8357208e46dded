//! Checks the structure of `docs/PROTOCOL.md`: its table of contents lists every section and
//! subsection (`##` and `###` headings) in order, with the anchors GitHub gives them, and the
//! sections on session setup (5), the Double Ratchet (6) and sealed attachments (13) open with
//! a Mermaid sequence diagram.

use std::path::Path;

fn protocol() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/PROTOCOL.md");
    std::fs::read_to_string(path).expect("docs/PROTOCOL.md is readable")
}

/// The anchor GitHub gives a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces turned into `-`, and `-1`, `-2`... appended to repeats.
fn anchor(title: &str, seen: &mut Vec<String>) -> String {
    let base: String = title
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect();
    let repeats = seen.iter().filter(|s| **s == base).count();
    seen.push(base.clone());
    if repeats == 0 {
        base
    } else {
        format!("{base}-{repeats}")
    }
}

/// The `##` and `###` headings outside code blocks, as table-of-contents lines.
fn expected_contents(doc: &str) -> Vec<String> {
    let mut in_code = false;
    let mut seen = Vec::new();
    let mut lines = Vec::new();
    for line in doc.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let (indent, title) = if let Some(t) = line.strip_prefix("### ") {
            ("  ", t)
        } else if let Some(t) = line.strip_prefix("## ") {
            ("", t)
        } else {
            continue;
        };
        lines.push(format!(
            "{indent}- [{title}](#{})",
            anchor(title, &mut seen)
        ));
    }
    lines
}

/// The list under `**Contents**`, up to the first blank line after it.
fn contents(doc: &str) -> Vec<String> {
    let mut lines = doc.lines().skip_while(|l| *l != "**Contents**").skip(1);
    let first = lines.by_ref().find(|l| !l.is_empty());
    first
        .into_iter()
        .chain(lines.take_while(|l| !l.is_empty()))
        .map(str::to_owned)
        .collect()
}

#[test]
fn table_of_contents_lists_every_section_with_its_anchor() {
    let doc = protocol();
    let toc = contents(&doc);
    assert!(!toc.is_empty(), "docs/PROTOCOL.md has no **Contents** list");
    assert_eq!(toc, expected_contents(&doc));
}

#[test]
fn setup_ratchet_and_attachment_sections_open_with_a_sequence_diagram() {
    let doc = protocol();
    for heading in [
        "## 5. PQXDH and X3DH",
        "## 6. Double Ratchet",
        "## 13. Sealed attachments (format version 2)",
    ] {
        let start = doc
            .find(&format!("\n{heading}\n"))
            .unwrap_or_else(|| panic!("no section {heading:?}"));
        let section = &doc[start + heading.len() + 2..];
        // Up to the first subsection or the next section.
        let intro = &section[..section.find("\n##").unwrap_or(section.len())];
        let diagram = intro.find("```mermaid\nsequenceDiagram\n");
        assert!(
            diagram.is_some(),
            "{heading:?} does not open with a Mermaid sequence diagram"
        );
    }
}
