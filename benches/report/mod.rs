//! The throughput tool's measurements, saved and read back: what `--save FILE` writes (one
//! run: the build's features, when and on what load it ran, every row's medians) and what the
//! chart step (`--charts DIR FILE..`) turns into the results table and the SVG charts of
//! docs/BENCHMARKS.md. The two builds compared (with and without `fast-aes`) are separate
//! runs, so each saves a file and one chart step reads them all: the table and the charts come
//! from the same measurements.
//!
//! Nothing here times anything; the measuring stays in `examples/throughput.rs`.

pub mod charts;
mod table;
#[cfg(test)]
mod tests;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use table::{markdown, splice};

/// The file format's version, written into every saved run.
pub const FORMAT: u32 = 1;

/// One run of the throughput tool, as `--save` writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// [`FORMAT`] when written.
    pub format: u32,
    /// The commit measured (`git describe --always --dirty` where the tool ran), if known.
    pub commit: Option<String>,
    /// The `ratchetbox-bench` features the tool was built with (`fast-aes`, `parallel`), and
    /// `avx512` for a build with curve25519-dalek's AVX-512 backend compiled in.
    pub features: Vec<String>,
    /// The CPU, as the tool prints it.
    pub cpu: String,
    /// Rounds per operation (each figure is the median of this many).
    pub rounds: usize,
    /// When the measurements started, with the load average then.
    pub start: Moment,
    /// When they ended, with the load average then.
    pub end: Moment,
    /// Every measured row, in the tool's order.
    pub rows: Vec<Row>,
    /// Serialized session sizes: label, ratchetbox bytes, vodozemac bytes.
    pub sizes: Vec<Size>,
}

impl Run {
    /// The run's name in tables and legends: its features joined by `+`, or `default`.
    pub fn label(&self) -> String {
        if self.features.is_empty() {
            "default".into()
        } else {
            self.features.join("+")
        }
    }

    /// Writes the run as JSON, creating the file's directory if needed.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Reads a run that [`Run::save`] wrote.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let run: Run =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if run.format != FORMAT {
            return Err(format!(
                "{}: format {} (this tool reads {FORMAT})",
                path.display(),
                run.format
            ));
        }
        Ok(run)
    }
}

/// The commit of the checkout the tool runs in (`git describe --always --dirty`), if it runs
/// in one and git is installed.
pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// The `ratchetbox-bench` features this build has (the tools and this library are built
/// with the same ones).
pub fn build_features() -> Vec<String> {
    let mut features = Vec::new();
    if cfg!(feature = "fast-aes") {
        features.push("fast-aes".to_string());
    }
    if cfg!(feature = "parallel") {
        features.push("parallel".to_string());
    }
    // Not a cargo feature: curve25519-dalek compiles its AVX-512 IFMA backend only when the
    // build passes this cfg (it reaches every crate of the build, this one too).
    if cfg!(curve25519_dalek_backend = "avx512") {
        features.push("avx512".to_string());
    }
    features
}

/// A moment of the run: the UTC time and the machine's load average.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Moment {
    /// `YYYY-MM-DD HH:MM UTC`.
    pub utc: String,
    /// The 1, 5 and 15 minute load averages (Linux's /proc/loadavg), if known.
    pub load_average: Option<[f64; 3]>,
}

impl Moment {
    /// The clock and the load average now.
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            utc: utc_minute(secs),
            load_average: load_average(),
        }
    }
}

/// The load averages in /proc/loadavg, if it exists and reads as expected.
fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM UTC` (proleptic Gregorian calendar;
/// the days-to-date step is Howard Hinnant's `civil_from_days`).
pub fn utc_minute(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let minute_of_day = (secs % 86_400) / 60;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minute_of_day / 60,
        minute_of_day % 60
    )
}

/// What a row's figures measure.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Time per operation; one measured call does `per` operations.
    Latency {
        /// Operations per call.
        per: u64,
    },
    /// Throughput over `bytes` bytes per call.
    Throughput {
        /// Bytes per call.
        bytes: u64,
    },
}

/// The three columns of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// ratchetbox itself.
    Ratchetbox,
    /// vodozemac (Olm), the peer.
    Vodozemac,
    /// The primitives alone, doing the same cryptographic work.
    Floor,
}

impl Column {
    /// All three, in the tool's order.
    pub const ALL: [Column; 3] = [Column::Ratchetbox, Column::Vodozemac, Column::Floor];

    /// The column's name in tables and legends.
    pub fn name(self) -> &'static str {
        match self {
            Column::Ratchetbox => "ratchetbox",
            Column::Vodozemac => "vodozemac",
            Column::Floor => "floor",
        }
    }
}

/// One measured operation: the median time of one call for each column that ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The tool's group (`setup`, `steady`, `ping-pong`, `large`, `growth`, `state`,
    /// `floor`, ...).
    pub group: String,
    /// The operation, as the tool prints it.
    pub op: String,
    /// What the times measure.
    pub unit: Unit,
    /// ratchetbox's median nanoseconds per call, if measured.
    pub ratchetbox_ns: Option<f64>,
    /// vodozemac's median nanoseconds per call, if measured.
    pub vodozemac_ns: Option<f64>,
    /// The floor's median nanoseconds per call, if measured.
    pub floor_ns: Option<f64>,
    /// The target, as the tool prints it (empty if none).
    pub target: String,
    /// Whether the target was met in this run (`yes`, `NO`, or empty).
    pub met: String,
}

impl Row {
    /// A column's median nanoseconds per call.
    pub fn call_ns(&self, column: Column) -> Option<f64> {
        match column {
            Column::Ratchetbox => self.ratchetbox_ns,
            Column::Vodozemac => self.vodozemac_ns,
            Column::Floor => self.floor_ns,
        }
    }

    /// A column's nanoseconds per operation (per call for throughput rows).
    pub fn op_ns(&self, column: Column) -> Option<f64> {
        let ns = self.call_ns(column)?;
        match self.unit {
            Unit::Latency { per } => Some(ns / per.max(1) as f64),
            Unit::Throughput { .. } => Some(ns),
        }
    }

    /// A column's throughput in MiB/s, for a throughput row or for a message of a known
    /// size ([`message_op`]) timed per operation.
    pub fn mib_per_s(&self, column: Column) -> Option<f64> {
        let bytes = match self.unit {
            Unit::Throughput { bytes } => bytes,
            Unit::Latency { .. } => message_op(&self.op)?.1,
        };
        let ns = self.op_ns(column)?;
        Some(bytes as f64 / (ns * 1e-9) / f64::from(1 << 20))
    }
}

/// A serialized-size line of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Size {
    /// What was serialized.
    pub label: String,
    /// ratchetbox's bytes.
    pub ratchetbox: usize,
    /// vodozemac's bytes.
    pub vodozemac: usize,
}

/// Encrypting or decrypting one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `encrypt N B`.
    Encrypt,
    /// `decrypt N B`.
    Decrypt,
}

/// The direction and size of a row that encrypts or decrypts one message of a stated size:
/// the tool's `encrypt 100 B`, `decrypt 64 KiB`, `encrypt 1 MiB`; `None` for any other
/// operation.
pub fn message_op(op: &str) -> Option<(Direction, u64)> {
    let mut words = op.split(' ');
    let direction = match words.next()? {
        "encrypt" => Direction::Encrypt,
        "decrypt" => Direction::Decrypt,
        _ => return None,
    };
    let n: u64 = words.next()?.parse().ok()?;
    let scale = match words.next()? {
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        _ => return None,
    };
    if words.next().is_some() {
        return None;
    }
    Some((direction, n.checked_mul(scale)?))
}

/// A size in bytes as the tool names it: `100 B`, `64 KiB`, `1 MiB`.
pub fn size_name(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

/// The chart step: reads the saved runs (the first is the base: its rows and columns make
/// the table and the per-operation chart; the others add a ratchetbox column and
/// throughput lines), writes the SVG charts into `dir`, prints the Markdown table and, if
/// `doc` is given, replaces the table between its markers ([`splice`]).
pub fn chart_step(dir: &Path, doc: Option<&Path>, inputs: &[String]) -> Result<(), String> {
    if inputs.is_empty() {
        return Err("--charts needs one or more saved runs (files written by --save)".into());
    }
    let runs = inputs
        .iter()
        .map(|p| Run::load(Path::new(p)))
        .collect::<Result<Vec<_>, _>>()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for written in charts::write_all(&runs, dir)? {
        eprintln!("wrote {}", written.display());
    }
    let table = markdown(&runs);
    if let Some(doc) = doc {
        let text = std::fs::read_to_string(doc).map_err(|e| format!("{}: {e}", doc.display()))?;
        let spliced = splice(&text, &table).map_err(|e| format!("{}: {e}", doc.display()))?;
        std::fs::write(doc, spliced).map_err(|e| format!("{}: {e}", doc.display()))?;
        eprintln!("updated the results table in {}", doc.display());
    }
    print!("{table}");
    Ok(())
}
