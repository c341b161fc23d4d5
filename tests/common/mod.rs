//! Helpers shared by the store test binaries (store_conformance, store_sqlite, store_redis).
// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use batten::store::RunRecord;
use serde_json::json;

/// An id no other test (or earlier run against the same Redis) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}

/// A run record of `workflow_id` created at `created_at` (unix seconds).
pub fn run_record(run_id: &str, workflow_id: &str, created_at: f64) -> RunRecord {
    RunRecord {
        run_id: run_id.to_string(),
        workflow_id: workflow_id.to_string(),
        name: "review".to_string(),
        version: "1.2".to_string(),
        status: "RUNNING".to_string(),
        created_at,
        updated_at: created_at,
        input: json!({"topic": "stores", "n": 3, "tags": ["a", "b"]}),
        error: None,
        result: None,
        lease: None,
    }
}

/// A fresh directory under the system's temp dir, deleted on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("batten-store-test"));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// `runs.db` inside it.
    pub fn db(&self) -> PathBuf {
        self.0.join("runs.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
