//! The report from fixed, made-up results: nothing here is timed. The expected figures are
//! worked out by hand from the fixed nanoseconds (e.g. 1 MiB in 500,000 ns is 2000 MiB/s).

use std::path::PathBuf;

use super::charts::{OPERATIONS, THROUGHPUT, write_all};
use super::*;

fn row(group: &str, op: &str, unit: Unit, ns: [Option<f64>; 3], target: &str, met: &str) -> Row {
    Row {
        group: group.into(),
        op: op.into(),
        unit,
        ratchetbox_ns: ns[0],
        vodozemac_ns: ns[1],
        floor_ns: ns[2],
        target: target.into(),
        met: met.into(),
    }
}

const ONE: Unit = Unit::Latency { per: 1 };
const KIB: Unit = Unit::Throughput { bytes: 1024 };
const MIB: Unit = Unit::Throughput { bytes: 1 << 20 };

fn base() -> Run {
    Run {
        format: FORMAT,
        commit: Some("1c66558".into()),
        features: vec![],
        cpu: "test CPU".into(),
        rounds: 15,
        start: Moment {
            utc: "2026-12-02 07:40 UTC".into(),
            load_average: Some([4.94, 1.9, 1.71]),
        },
        end: Moment {
            utc: "2026-12-02 07:46 UTC".into(),
            load_average: Some([5.1, 3.0, 2.0]),
        },
        rows: vec![
            row(
                "setup",
                "X3DH initiator, classical (vz: outbound session)",
                ONE,
                [Some(264_000.0), Some(174_000.0), Some(266_000.0)],
                "<= 1.3x floor",
                "yes",
            ),
            row(
                "steady",
                "encrypt 100 B",
                ONE,
                [Some(1060.0), Some(18_410.0), Some(849.0)],
                "<= 2x floor, >= 8x vz",
                "yes",
            ),
            row(
                "steady",
                "decrypt 100 B",
                ONE,
                [Some(1040.0), Some(1980.0), Some(835.0)],
                "<= 2x floor",
                "yes",
            ),
            row(
                "ping-pong",
                "message with DH ratchet step, 100 B (encrypt + decrypt)",
                Unit::Latency { per: 2 },
                [Some(252_000.0), Some(256_000.0), Some(248_000.0)],
                "<= 1.3x floor, >= 1x vz",
                "yes",
            ),
            row(
                "large",
                "encrypt 1 KiB",
                KIB,
                [Some(1000.0), Some(20_000.0), Some(800.0)],
                "",
                "",
            ),
            row(
                "large",
                "decrypt 1 KiB",
                KIB,
                [Some(1100.0), Some(3300.0), Some(850.0)],
                "",
                "",
            ),
            row(
                "large",
                "encrypt 1 MiB",
                MIB,
                [Some(480_000.0), Some(2_000_000.0), Some(450_000.0)],
                ">= 90% of floor, >= 5x vz",
                "NO",
            ),
            row(
                "large",
                "decrypt 1 MiB",
                MIB,
                [Some(500_000.0), Some(1_000_000.0), Some(480_000.0)],
                ">= 90% of floor, >= 5x vz",
                "NO",
            ),
            row(
                "growth",
                "decrypt 100 B in order, 0 keys stored",
                ONE,
                [Some(1050.0), None, Some(836.0)],
                "<= 2x floor",
                "yes",
            ),
            row(
                "state",
                "serialize session, fresh",
                ONE,
                [Some(824.0), None, None],
                "",
                "",
            ),
            row(
                "state",
                "deserialize session, fresh",
                ONE,
                [Some(18_050.0), Some(6760.0), None],
                "",
                "",
            ),
            row(
                "floor",
                "X25519 DH",
                ONE,
                [None, None, Some(52_730.0)],
                "",
                "",
            ),
        ],
        sizes: vec![Size {
            label: "session, fresh (plain)".into(),
            ratchetbox: 309,
            vodozemac: 1496,
        }],
    }
}

/// A second build's run: fewer rows, faster large messages.
fn fast() -> Run {
    let mut run = base();
    run.features = vec!["fast-aes".into()];
    run.rows = vec![
        row(
            "steady",
            "encrypt 100 B",
            ONE,
            [Some(1010.0), Some(18_000.0), Some(850.0)],
            "",
            "",
        ),
        row(
            "steady",
            "decrypt 100 B",
            ONE,
            [Some(1000.0), Some(1900.0), Some(830.0)],
            "",
            "",
        ),
        row(
            "large",
            "encrypt 1 KiB",
            KIB,
            [Some(500.0), Some(20_000.0), Some(800.0)],
            "",
            "",
        ),
        row(
            "large",
            "decrypt 1 KiB",
            KIB,
            [Some(600.0), Some(3300.0), Some(850.0)],
            "",
            "",
        ),
        row(
            "large",
            "encrypt 1 MiB",
            MIB,
            [Some(150_000.0), Some(2_000_000.0), Some(450_000.0)],
            "",
            "",
        ),
        row(
            "large",
            "decrypt 1 MiB",
            MIB,
            [Some(700_000.0), Some(1_000_000.0), Some(480_000.0)],
            "",
            "",
        ),
    ];
    run
}

/// A fresh directory under the system's temporary directory.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ratchetbox-bench-report-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

/// The SVG's text elements, in document order.
fn texts(doc: &roxmltree::Document) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or_default().trim().to_string())
        .collect()
}

fn attr(node: roxmltree::Node, name: &str) -> f64 {
    node.attribute(name)
        .unwrap_or_else(|| panic!("attribute {name}"))
        .parse()
        .expect("a number")
}

/// The filled rectangles of one colour (`#RRGGBB`), as (x, y, width, height).
fn rects(doc: &roxmltree::Document, color: &str) -> Vec<(f64, f64, f64, f64)> {
    doc.descendants()
        .filter(|n| n.has_tag_name("rect"))
        .filter(|n| {
            n.attribute("fill")
                .is_some_and(|f| f.eq_ignore_ascii_case(color))
        })
        .map(|n| {
            (
                attr(n, "x"),
                attr(n, "y"),
                attr(n, "width"),
                attr(n, "height"),
            )
        })
        .collect()
}

/// The polylines of one stroke colour, as their points.
fn polylines(doc: &roxmltree::Document, color: &str) -> Vec<Vec<(f64, f64)>> {
    doc.descendants()
        .filter(|n| n.has_tag_name("polyline"))
        .filter(|n| {
            n.attribute("stroke")
                .is_some_and(|f| f.eq_ignore_ascii_case(color))
        })
        .map(|n| {
            n.attribute("points")
                .expect("points")
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').expect("x,y");
                    (x.parse().expect("x"), y.parse().expect("y"))
                })
                .collect()
        })
        .collect()
}

#[test]
fn charts_are_well_formed_svg_with_titles_axes_legends_and_one_bar_per_figure() {
    let dir = temp_dir("charts");
    let written = write_all(&[base(), fast()], &dir).expect("charts");
    assert_eq!(written, vec![dir.join(OPERATIONS), dir.join(THROUGHPUT)]);

    let svg = std::fs::read_to_string(dir.join(OPERATIONS)).expect("operations chart");
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let t = texts(&doc);
    let has = |s: &str| t.iter().any(|x| x == s);
    for expected in [
        "ratchetbox vs vodozemac vs the floor, per operation",
        "time per operation (µs, log scale)",
        "ratchetbox",
        "vodozemac",
        "floor (primitives alone)",
        // The labels: the group, the operation without its notes in parentheses.
        "setup: X3DH initiator, classical",
        "steady: encrypt 100 B",
        "steady: decrypt 100 B",
        "ping-pong: message with DH ratchet step, 100 B",
        "state: deserialize session, fresh",
        // The figures at the bars; the ping-pong row times two messages per call.
        "264 µs",
        "174 µs",
        "266 µs",
        "1.06 µs",
        "18.41 µs",
        "849 ns",
        "126 µs",
        "128 µs",
        "124 µs",
        "18.05 µs",
        "6.76 µs",
        // The axis: whole decades from 0.1 µs (below the smallest figure, 835 ns) to
        // 10,000 µs (above four times the largest, 266 µs).
        "0.1",
        "1",
        "10000",
    ] {
        assert!(has(expected), "no text {expected:?} in {t:?}");
    }
    // Not charted: growth rows, rows with ratchetbox alone, the floor group, throughput rows.
    for absent in [
        "growth: decrypt 100 B in order, 0 keys stored",
        "state: serialize session, fresh",
        "floor: X25519 DH",
        "large: encrypt 1 KiB",
    ] {
        assert!(!has(absent), "unexpected text {absent:?}");
    }
    // One bar per figure plus a legend key: 5 rows, the floor missing in one.
    let rb = rects(&doc, "#1F77B4");
    let vz = rects(&doc, "#FF7F0E");
    let floor = rects(&doc, "#7F7F7F");
    assert_eq!((rb.len(), vz.len(), floor.len()), (6, 6, 5));
    // The bars start at 0.1 µs on a log axis: the setup bar (264 µs) is
    // log10(2640) / log10(10.6) = 3.337 times as long as the steady encrypt bar (1.06 µs).
    let bars: Vec<_> = rb.iter().filter(|r| r.2 > 20.0).collect();
    assert_eq!(bars.len(), 5, "{rb:?}");
    let ratio = bars[0].2 / bars[1].2;
    assert!((ratio - 3.337).abs() < 0.03, "ratio {ratio}");
    // Top to bottom in the tool's order.
    assert!(bars.windows(2).all(|w| w[0].1 < w[1].1), "{bars:?}");

    let svg = std::fs::read_to_string(dir.join(THROUGHPUT)).expect("throughput chart");
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    let t = texts(&doc);
    let has = |s: &str| t.iter().any(|x| x == s);
    for expected in [
        "Throughput by message size (higher is faster)",
        "encrypt",
        "decrypt",
        "message size (log scale)",
        "MiB/s (log scale)",
        "ratchetbox, default build",
        "floor, default build",
        "ratchetbox, fast-aes build",
        "floor, fast-aes build",
        "vodozemac",
        "100 B",
        "1 KiB",
        "1 MiB",
    ] {
        assert!(has(expected), "no text {expected:?} in {t:?}");
    }
    // ratchetbox in the default build: one line per panel through 100 B, 1 KiB and 1 MiB.
    let lines = polylines(&doc, "#1F77B4");
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in &lines {
        assert_eq!(line.len(), 3);
        // Sizes on a log axis: (1 KiB - 100 B) / (1 MiB - 1 KiB) = log 10.24 / log 1024.
        let ratio = (line[1].0 - line[0].0) / (line[2].0 - line[1].0);
        assert!((ratio - 0.3356).abs() < 0.01, "ratio {ratio}");
    }
    // Encrypt: 90 MiB/s at 100 B (1.06 µs), 977 at 1 KiB, 2083 at 1 MiB, rising (SVG y
    // grows downwards), on a log axis: log(977 / 90) / log(2083 / 977) = 3.15.
    let e = &lines[0];
    assert!(e[0].1 > e[1].1 && e[1].1 > e[2].1, "{e:?}");
    let ratio = (e[0].1 - e[1].1) / (e[1].1 - e[2].1);
    assert!((ratio - 3.15).abs() < 0.1, "ratio {ratio}");
    // The fast-aes build's ratchetbox line and the vodozemac line, in both panels.
    assert_eq!(polylines(&doc, "#2CA02C").len(), 2);
    assert_eq!(polylines(&doc, "#FF7F0E").len(), 2);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn table_has_every_base_row_and_one_column_per_further_run() {
    let table = markdown(&[base(), fast()]);
    let lines: Vec<&str> = table.lines().collect();
    for expected in [
        "- `default` (commit 1c66558, bench features: none): 2026-12-02 07:40 UTC to \
         2026-12-02 07:46 UTC, load average (1 min) 4.94 at the start and 5.10 at the end, 15 \
         rounds per operation; CPU: test CPU",
        "- `fast-aes` (commit 1c66558, bench features: fast-aes): 2026-12-02 07:40 UTC to \
         2026-12-02 07:46 UTC, load average (1 min) 4.94 at the start and 5.10 at the end, 15 \
         rounds per operation; CPU: test CPU",
        "| group | operation | ratchetbox (`default`) | vodozemac | floor | rb/floor | vz/rb | \
         ratchetbox (`fast-aes`) | target | met |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
        "| setup | X3DH initiator, classical (vz: outbound session) | 264 µs | 174 µs | 266 µs \
         | 0.99x | 0.66x | - | <= 1.3x floor | yes |",
        "| steady | encrypt 100 B | 1.06 µs | 18.41 µs | 849 ns | 1.25x | 17.37x | 1.01 µs | \
         <= 2x floor, >= 8x vz | yes |",
        "| ping-pong | message with DH ratchet step, 100 B (encrypt + decrypt) | 126 µs | 128 µs \
         | 124 µs | 1.02x | 1.02x | - | <= 1.3x floor, >= 1x vz | yes |",
        "| large | encrypt 1 KiB | 977 MiB/s | 49 MiB/s | 1221 MiB/s | 1.25x | 20.00x | \
         1953 MiB/s |  |  |",
        "| large | decrypt 1 MiB | 2000 MiB/s | 1000 MiB/s | 2083 MiB/s | 1.04x | 2.00x | \
         1429 MiB/s | >= 90% of floor, >= 5x vz | NO |",
        "| growth | decrypt 100 B in order, 0 keys stored | 1.05 µs | - | 836 ns | 1.26x | - | - \
         | <= 2x floor | yes |",
        "| floor | X25519 DH | - | - | 52.73 µs | - | - | - |  |  |",
        "| session, fresh (plain) | 309 B | 1496 B |",
    ] {
        assert!(
            lines.contains(&expected),
            "no line\n{expected}\nin\n{table}"
        );
    }
    // A header, a rule and the 12 rows of the base run; the sizes: a header, a rule, a row.
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("| ")).count(),
        2 + 12 + 3
    );

    // One run: a plain `ratchetbox` column.
    let single = markdown(&[base()]);
    assert!(single.contains(
        "| group | operation | ratchetbox | vodozemac | floor | rb/floor | vz/rb | target | met |"
    ));
}

#[test]
fn splice_replaces_only_the_text_between_the_markers() {
    let doc = format!(
        "# Title\n\nintro\n\n{}\n\nold table\n\n{}\n\nrest\n",
        table::BEGIN,
        table::END
    );
    let out = splice(&doc, "| new |\n").expect("markers present");
    assert_eq!(
        out,
        format!(
            "# Title\n\nintro\n\n{}\n\n| new |\n\n{}\n\nrest\n",
            table::BEGIN,
            table::END
        )
    );
    // Splicing again gives the same document.
    assert_eq!(splice(&out, "| new |\n").expect("markers"), out);
    assert!(splice("no markers", "x").is_err());
    assert!(splice(table::BEGIN, "x").is_err());
}

#[test]
fn a_saved_run_reads_back_and_the_format_is_stable() {
    let dir = temp_dir("save");
    let path = dir.join("nested").join("run.json");
    let run = fast();
    run.save(&path).expect("save");
    assert_eq!(Run::load(&path).expect("load"), run);

    // A file written by hand in the documented format.
    let text = r#"{
      "format": 1, "commit": null, "features": ["fast-aes"], "cpu": "c", "rounds": 3,
      "start": {"utc": "2026-12-02 07:40 UTC", "load_average": [1.0, 2.0, 3.0]},
      "end": {"utc": "2026-12-02 07:41 UTC", "load_average": null},
      "rows": [{"group": "large", "op": "encrypt 1 MiB", "unit": {"throughput": {"bytes": 1048576}},
                "ratchetbox_ns": 500000.0, "vodozemac_ns": null, "floor_ns": 250000.0,
                "target": "", "met": ""},
               {"group": "ping-pong", "op": "x", "unit": {"latency": {"per": 2}},
                "ratchetbox_ns": 3000.0, "vodozemac_ns": null, "floor_ns": null,
                "target": "", "met": ""}],
      "sizes": []
    }"#;
    let manual = dir.join("manual.json");
    std::fs::write(&manual, text).expect("write");
    let run = Run::load(&manual).expect("load");
    assert_eq!(run.label(), "fast-aes");
    assert_eq!(run.commit, None);
    assert_eq!(run.start.load_average, Some([1.0, 2.0, 3.0]));
    assert_eq!(run.rows[0].mib_per_s(Column::Ratchetbox), Some(2000.0));
    assert_eq!(run.rows[0].mib_per_s(Column::Floor), Some(4000.0));
    assert_eq!(run.rows[1].op_ns(Column::Ratchetbox), Some(1500.0));

    std::fs::write(&manual, text.replace("\"format\": 1", "\"format\": 2")).expect("write");
    assert!(
        Run::load(&manual)
            .expect_err("format 2")
            .contains("format 2")
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn message_ops_are_read_from_the_tools_operation_names() {
    assert_eq!(message_op("encrypt 100 B"), Some((Direction::Encrypt, 100)));
    assert_eq!(
        message_op("decrypt 64 KiB"),
        Some((Direction::Decrypt, 65_536))
    );
    assert_eq!(
        message_op("encrypt 1 MiB"),
        Some((Direction::Encrypt, 1_048_576))
    );
    assert_eq!(message_op("decrypt 100 B in order, 0 keys stored"), None);
    assert_eq!(
        message_op("encrypt 100 B after 1000000 messages in the chain"),
        None
    );
    assert_eq!(message_op("seal session, fresh"), None);
    assert_eq!(message_op("encrypt 1 GiB"), None);
    assert_eq!(size_name(100), "100 B");
    assert_eq!(size_name(1536), "1536 B");
    assert_eq!(size_name(65_536), "64 KiB");
    assert_eq!(size_name(1 << 20), "1 MiB");
}

#[test]
fn utc_minutes_match_the_calendar() {
    // Checked against `date -u -d @SECONDS '+%Y-%m-%d %H:%M'`.
    assert_eq!(utc_minute(0), "1970-01-01 00:00 UTC");
    assert_eq!(utc_minute(951_782_400), "2000-02-29 00:00 UTC");
    assert_eq!(utc_minute(1_764_000_000), "2025-11-24 16:00 UTC");
    assert_eq!(utc_minute(4_107_542_399), "2100-02-28 23:59 UTC");
}

#[test]
fn the_benchmarks_document_has_the_table_markers_and_links_the_charts() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/BENCHMARKS.md");
    let doc = std::fs::read_to_string(&path).expect("docs/BENCHMARKS.md");
    assert!(splice(&doc, "| table |").is_ok());
    for chart in [OPERATIONS, THROUGHPUT] {
        assert!(doc.contains(&format!("]({chart})")), "no link to {chart}");
    }
}
