//! Tests that run in several processes: the test binary runs itself again as a child that
//! plays a role on a shared database file (the SQLite store's tests and the device's).
//!
//! Include it with `#[path = "common/processes.rs"] mod processes;`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

/// A directory under the system's temporary directory, deleted when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory named after the process and `test`.
    pub fn new(test: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ratchetbox-test-{}-{test}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        Self(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Set in a child process of a multi-process test: the role it plays.
const CHILD_ROLE: &str = "RATCHETBOX_TEST_ROLE";
/// Set in a child process of a multi-process test: the database file.
const CHILD_DB: &str = "RATCHETBOX_TEST_DB";

/// Runs this test binary again, as a child process that runs only the test `test` (its
/// full name, as `cargo test` prints it) and, in it, plays `role` on the file `db`. The
/// test checks [`child_role`] first thing.
pub fn spawn_child(test: &str, role: &str, db: &Path) -> Child {
    Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([
            test,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(CHILD_ROLE, role)
        .env(CHILD_DB, db)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn a child test process")
}

/// In a child process: the role it plays and its database file. `None` in the parent.
pub fn child_role() -> Option<(String, PathBuf)> {
    let role = std::env::var(CHILD_ROLE).ok()?;
    let db = std::env::var_os(CHILD_DB).expect("a child process is given its database");
    Some((role, PathBuf::from(db)))
}

/// Waits for every child. As soon as one fails, kills the others (which may be waiting
/// for it) and panics.
pub fn wait_for_all(children: Vec<Child>) -> Vec<Output> {
    let mut running: Vec<Option<Child>> = children.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<Output>> = running.iter().map(|_| None).collect();
    loop {
        let mut failed = None;
        for (i, slot) in running.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if let Some(status) = child.try_wait().expect("poll a child") {
                let child = slot.take().expect("running");
                outputs[i] = Some(child.wait_with_output().expect("a child's output"));
                if !status.success() {
                    failed = Some((i, status));
                }
            }
        }
        if let Some((i, status)) = failed {
            for child in running.iter_mut().flatten() {
                let _ = child.kill();
                let _ = child.wait();
            }
            panic!("child {i} failed: {status}");
        }
        if running.iter().all(Option::is_none) {
            return outputs
                .into_iter()
                .map(|o| o.expect("every child exited"))
                .collect();
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The lines a child printed that start with `prefix`, without it.
pub fn child_lines(output: &Output, prefix: &str) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix(prefix).map(str::to_string))
        .collect()
}
