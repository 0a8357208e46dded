//! The results table of docs/BENCHMARKS.md, in Markdown, from saved runs.

use std::fmt::Write;

use super::{Column, Row, Run, Unit};

/// The line before the generated table in docs/BENCHMARKS.md.
pub const BEGIN: &str = "<!-- results: written by the throughput tool's chart step (--charts ... --doc); edit the tool, not this table -->";
/// The line after it.
pub const END: &str = "<!-- end of results -->";

/// A row's figure for one column, formatted as the tool prints it: `1.06 µs`, `849 ns`,
/// `264 µs`, `2199 MiB/s`, or `-` when the column did not run.
pub fn figure(row: &Row, column: Column) -> String {
    let Some(ns) = row.call_ns(column) else {
        return "-".into();
    };
    match row.unit {
        Unit::Latency { per } => latency(ns / per.max(1) as f64),
        Unit::Throughput { bytes } => {
            format!(
                "{:.0} MiB/s",
                bytes as f64 / (ns * 1e-9) / f64::from(1 << 20)
            )
        }
    }
}

/// Nanoseconds as the tool prints them.
pub fn latency(ns: f64) -> String {
    if ns >= 100_000.0 {
        format!("{:.0} µs", ns / 1e3)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// The ratio of two columns' times in one row (`a / b`), as `1.25x`, or `-`.
fn ratio(row: &Row, a: Column, b: Column) -> String {
    match (row.call_ns(a), row.call_ns(b)) {
        (Some(a), Some(b)) => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

/// One line describing a run: its features, when it ran, the load and the rounds.
fn describe(run: &Run) -> String {
    let load = |m: &super::Moment| {
        m.load_average
            .map_or("unknown".into(), |[one, _, _]| format!("{one:.2}"))
    };
    format!(
        "`{}` (commit {}, bench features: {}): {} to {}, load average (1 min) {} at the \
         start and {} at the end, {} rounds per operation; CPU: {}",
        run.label(),
        run.commit.as_deref().unwrap_or("unknown"),
        if run.features.is_empty() {
            "none".into()
        } else {
            run.features.join(", ")
        },
        run.start.utc,
        run.end.utc,
        load(&run.start),
        load(&run.end),
        run.rounds,
        run.cpu
    )
}

/// The results table: every row of the first run (the base) with its three columns and
/// ratios, plus one ratchetbox column per further run (rows matched by group and
/// operation); then the serialized sizes of the base run. Ratios are only ever taken
/// within one run.
pub fn markdown(runs: &[Run]) -> String {
    let mut out = String::new();
    let Some(base) = runs.first() else {
        return out;
    };
    out.push_str(
        "Runs (each figure is the median of its run's rounds; ratios are within one run):\n\n",
    );
    for run in runs {
        let _ = writeln!(out, "- {}", describe(run));
    }
    out.push('\n');

    let mut header = vec!["group".to_string(), "operation".to_string()];
    let mut align = vec!["---", "---"];
    for (i, run) in runs.iter().enumerate() {
        header.push(if runs.len() == 1 {
            "ratchetbox".into()
        } else {
            format!("ratchetbox (`{}`)", run.label())
        });
        align.push("---:");
        if i == 0 {
            for h in ["vodozemac", "floor", "rb/floor", "vz/rb"] {
                header.push(h.into());
                align.push("---:");
            }
        }
    }
    header.push("target".into());
    header.push("met".into());
    align.extend(["---", "---"]);
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "| {} |", align.join(" | "));
    for row in &base.rows {
        let mut cells = vec![row.group.clone(), row.op.trim().to_string()];
        cells.push(figure(row, Column::Ratchetbox));
        cells.push(figure(row, Column::Vodozemac));
        cells.push(figure(row, Column::Floor));
        cells.push(ratio(row, Column::Ratchetbox, Column::Floor));
        cells.push(ratio(row, Column::Vodozemac, Column::Ratchetbox));
        for run in &runs[1..] {
            let same = run
                .rows
                .iter()
                .find(|r| r.group == row.group && r.op == row.op);
            cells.push(same.map_or("-".into(), |r| figure(r, Column::Ratchetbox)));
        }
        cells.push(row.target.clone());
        cells.push(row.met.clone());
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    if !base.sizes.is_empty() {
        let _ = writeln!(
            out,
            "\nSerialized session size (`{}` run):\n\n| state | ratchetbox | vodozemac (pickle JSON / encrypted pickle) |\n| --- | ---: | ---: |",
            base.label()
        );
        for s in &base.sizes {
            let _ = writeln!(
                out,
                "| {} | {} B | {} B |",
                s.label, s.ratchetbox, s.vodozemac
            );
        }
    }
    out
}

/// `doc` with the text between the [`BEGIN`] and [`END`] lines replaced by `table`.
pub fn splice(doc: &str, table: &str) -> Result<String, String> {
    let begin = doc
        .find(BEGIN)
        .ok_or_else(|| format!("no line `{BEGIN}`"))?;
    let after_begin = begin + BEGIN.len();
    let end = doc[after_begin..]
        .find(END)
        .map(|i| after_begin + i)
        .ok_or_else(|| format!("no line `{END}` after the first marker"))?;
    let mut out = String::with_capacity(doc.len() + table.len());
    out.push_str(&doc[..after_begin]);
    out.push_str("\n\n");
    out.push_str(table.trim_end());
    out.push_str("\n\n");
    out.push_str(&doc[end..]);
    Ok(out)
}
