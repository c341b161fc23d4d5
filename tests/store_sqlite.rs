//! What only the SQLite store does: one file shared by processes, the schema check, corrupt rows,
//! linear growth. (The shared behaviour is in store_conformance.rs.)
//!
//! `cargo test --release --no-default-features --test store_sqlite -- --ignored --nocapture` prints
//! the cost of one append.

use std::path::Path;
use std::time::Instant;

mod common;

use batten::store::{
    self, RunRecord, SqliteStore, StepEvent, Store, StoreError,
    SQLITE_SCHEMA_VERSION as SCHEMA_VERSION,
};
use common::TempDir;
use serde_json::json;

fn run(run_id: &str) -> RunRecord {
    common::run_record(run_id, "wf", 1_700_000_000.0)
}

fn completed(step_id: &str, output: serde_json::Value) -> StepEvent {
    let mut event = StepEvent::new(step_id, "COMPLETED", 1, 1_700_000_000.5);
    event.duration_ms = Some(0.25);
    event.output = Some(output);
    event
}

/// An event's row id in the events table: its run's key in the high 32 bits, its seq in the low.
fn event_id(dir: &TempDir, run_id: &str, seq: i64) -> i64 {
    let key: i64 = raw(&dir.db())
        .query_row("SELECT key FROM runs WHERE run_id = ?1", [run_id], |r| {
            r.get(0)
        })
        .unwrap();
    (key << 32) | seq
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[test]
fn everything_written_is_there_after_reopening() {
    let dir = TempDir::new();
    {
        let store = SqliteStore::open(dir.db()).unwrap();
        store.create_run(&run("r1")).unwrap();
        store
            .append("r1", &[completed("a", json!(1)), completed("b", json!(2))])
            .unwrap();
    }
    let store = SqliteStore::open(dir.db()).unwrap();
    assert_eq!(store.get_run("r1").unwrap(), run("r1"));
    assert_eq!(store.events("r1", 0).unwrap().len(), 2);
    assert_eq!(
        store.append("r1", &[completed("c", json!(3))]).unwrap(),
        [3]
    );
}

#[test]
fn open_creates_missing_parent_directories() {
    let dir = TempDir::new();
    let path = dir.0.join("a").join("b").join("runs.db");
    SqliteStore::open(&path).unwrap();
    assert!(path.is_file());
}

#[test]
fn a_four_slash_url_is_an_absolute_path() {
    let dir = TempDir::new();
    let absolute = dir.db();
    assert!(absolute.is_absolute());
    let url = format!("sqlite:///{}", absolute.display());
    assert!(url.starts_with("sqlite:////"), "{url}");
    let store = store::open(&url).unwrap();
    assert_eq!(store.url(), url);
    store.create_run(&run("r1")).unwrap();
    assert!(absolute.is_file());
}

#[test]
fn the_database_is_in_wal_mode() {
    let dir = TempDir::new();
    let _store = SqliteStore::open(dir.db()).unwrap();
    let mode: String = raw(&dir.db())
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn two_stores_on_one_file_interleaving_appends_get_distinct_increasing_seqs() {
    // Two connections to one file behave as two processes do: neither caches the run's last seq.
    let dir = TempDir::new();
    let one = SqliteStore::open(dir.db()).unwrap();
    let two = SqliteStore::open(dir.db()).unwrap();
    one.create_run(&run("shared")).unwrap();
    assert_eq!(
        two.append("shared", &[completed("a", json!(1))]).unwrap(),
        [1]
    );
    assert_eq!(
        one.append("shared", &[completed("b", json!(2))]).unwrap(),
        [2]
    );

    let per_store: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = [&one, &two]
            .into_iter()
            .map(|store| {
                scope.spawn(move || {
                    let mut seqs = Vec::new();
                    for i in 0..100 {
                        seqs.extend(
                            store
                                .append("shared", &[completed(&format!("s{i}"), json!(i))])
                                .unwrap(),
                        );
                    }
                    seqs
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for seqs in &per_store {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "each store sees its seqs increase: {seqs:?}"
        );
    }
    let mut all: Vec<u64> = per_store.concat();
    all.sort_unstable();
    assert_eq!(all, (3..=202).collect::<Vec<u64>>());
    assert_eq!(one.events("shared", 0).unwrap().len(), 202);
}

#[test]
fn a_different_schema_version_is_refused_and_left_alone() {
    let dir = TempDir::new();
    drop(SqliteStore::open(dir.db()).unwrap());
    raw(&dir.db())
        .execute(
            "UPDATE meta SET value = '999' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
    let err = SqliteStore::open(dir.db()).unwrap_err();
    assert_eq!(
        err,
        StoreError::SchemaVersion {
            found: "999".to_string(),
            expected: SCHEMA_VERSION
        }
    );
    assert_eq!(
        err.to_string(),
        format!("the store was written with schema version 999; this batten reads version {SCHEMA_VERSION}")
    );
    let kept: String = raw(&dir.db())
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, "999");
}

#[test]
fn a_schema_version_that_is_not_a_number_is_refused() {
    let dir = TempDir::new();
    drop(SqliteStore::open(dir.db()).unwrap());
    raw(&dir.db())
        .execute(
            "UPDATE meta SET value = 'one' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
    assert!(matches!(
        SqliteStore::open(dir.db()),
        Err(StoreError::SchemaVersion { found, .. }) if found == "one"
    ));
}

#[test]
fn an_event_whose_json_is_corrupt_is_reported_with_its_run_and_seq() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.db()).unwrap();
    store.create_run(&run("r1")).unwrap();
    store
        .append("r1", &[completed("a", json!(1)), completed("b", json!(2))])
        .unwrap();
    raw(&dir.db())
        .execute(
            &format!(
                "UPDATE events SET output = '{{\"half\": ' WHERE id = {}",
                event_id(&dir, "r1", 2)
            ),
            [],
        )
        .unwrap();
    let err = store.events("r1", 0).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { what, .. } if what == "run 'r1' event 2"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("corrupt record in the store: run 'r1' event 2: invalid JSON"),
        "{err}"
    );
    assert_eq!(store.events("r1", 0).unwrap_err(), err);
    assert_eq!(store.events("r1", 2).unwrap(), []);
}

#[test]
fn an_event_column_of_the_wrong_type_is_corrupt() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.db()).unwrap();
    store.create_run(&run("r1")).unwrap();
    store.append("r1", &[completed("a", json!(1))]).unwrap();
    raw(&dir.db())
        .execute(
            &format!(
                "UPDATE events SET attempt = 'many' WHERE id = {}",
                event_id(&dir, "r1", 1)
            ),
            [],
        )
        .unwrap();
    let err = store.events("r1", 0).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { what, detail } if what == "run 'r1' event 1" && detail.contains("attempt")),
        "{err:?}"
    );
}

#[test]
fn a_run_whose_input_is_corrupt_is_reported_by_name() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.db()).unwrap();
    store.create_run(&run("r1")).unwrap();
    raw(&dir.db())
        .execute("UPDATE runs SET input = 'nope' WHERE run_id = 'r1'", [])
        .unwrap();
    assert!(matches!(
        store.get_run("r1"),
        Err(StoreError::Corrupt { what, .. }) if what == "run 'r1' input"
    ));
}

#[test]
fn a_corrupt_run_is_listed_as_its_error_in_its_place_among_the_others() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.db()).unwrap();
    for (i, run_id) in ["old", "bad", "new"].into_iter().enumerate() {
        let mut record = run(run_id);
        record.created_at += i as f64;
        store.create_run(&record).unwrap();
    }
    // What serde_json refuses to read back: 128 nested arrays.
    let too_deep = format!("{}{}", "[".repeat(128), "]".repeat(128));
    raw(&dir.db())
        .execute(
            "UPDATE runs SET result = ?1 WHERE run_id = 'bad'",
            [&too_deep],
        )
        .unwrap();
    let listed = store.list_runs(None, None, 10).unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed[0].as_ref().unwrap().run_id, "new");
    assert!(
        matches!(&listed[1], Err(StoreError::Corrupt { what, .. }) if what == "run 'bad' result"),
        "{:?}",
        listed[1]
    );
    assert_eq!(listed[2].as_ref().unwrap().run_id, "old");
    assert_eq!(
        store.get_run("bad").unwrap_err(),
        *listed[1].as_ref().unwrap_err()
    );
}

#[test]
fn a_file_that_is_not_a_database_is_unreachable_naming_it() {
    let dir = TempDir::new();
    std::fs::write(
        dir.db(),
        "this is a text file, not SQLite, and it is long enough to have a header",
    )
    .unwrap();
    let err = SqliteStore::open(dir.db()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Unreachable(m) if m.contains(&dir.db().display().to_string())),
        "{err:?}"
    );
}

#[test]
fn a_database_of_something_else_is_refused_untouched() {
    let dir = TempDir::new();
    raw(&dir.db())
        .execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
        .unwrap();
    assert!(matches!(
        SqliteStore::open(dir.db()),
        Err(StoreError::SchemaVersion { found, .. }) if found == "(none)"
    ));
    let tables: i64 = raw(&dir.db())
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 1);
}

#[test]
fn the_run_events_view_shows_each_event_with_its_run_id_and_seq() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.db()).unwrap();
    store.create_run(&run("r1")).unwrap();
    store.create_run(&run("r2")).unwrap();
    store.append("r2", &[completed("x", json!(0))]).unwrap();
    store
        .append("r1", &[completed("a", json!(1)), completed("b", json!(2))])
        .unwrap();
    let rows: Vec<(String, i64, String)> = raw(&dir.db())
        .prepare("SELECT run_id, seq, step_id FROM run_events ORDER BY run_id, seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected = [("r1", 1, "a"), ("r1", 2, "b"), ("r2", 1, "x")];
    assert_eq!(
        rows,
        expected.map(|(r, s, t)| (r.to_string(), s, t.to_string()))
    );
}

#[test]
fn a_background_thread_checkpoints_the_wal_into_the_database() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.db()).unwrap();
    store.create_run(&run("r1")).unwrap();
    let before = std::fs::metadata(dir.db()).unwrap().len();
    // Each commit adds at least one page to the WAL; 1,000 pages wake the checkpointer.
    for i in 0..1_100 {
        store
            .append("r1", &[completed(&format!("s{i}"), json!(i))])
            .unwrap();
    }
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::metadata(dir.db()).unwrap().len() < before + 64 * 1024 {
        assert!(
            Instant::now() < deadline,
            "no checkpoint copied the WAL into the database"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn the_file_grows_linearly_with_events() {
    const EVENTS: u64 = 1_000;
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.db()).unwrap();
    store
        .create_run(&run("3f2c9a4e-5b1d-4c7a-9e8f-0123456789ab"))
        .unwrap();
    for i in 0..EVENTS {
        let event = completed(&format!("step_{i}"), json!({"value": i, "ok": true}));
        store
            .append("3f2c9a4e-5b1d-4c7a-9e8f-0123456789ab", &[event])
            .unwrap();
    }
    // Closing the last connection checkpoints the WAL into the file and deletes it.
    drop(store);
    assert!(!dir.0.join("runs.db-wal").exists());
    let size = std::fs::metadata(dir.db()).unwrap().len();
    let bound = EVENTS * 400 + 64 * 1024;
    eprintln!(
        "{EVENTS} events: {size} bytes ({} per event)",
        size / EVENTS
    );
    assert!(
        size < bound,
        "{size} bytes for {EVENTS} events (bound {bound})"
    );
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn measure_append_cost() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.db()).unwrap();
    store.create_run(&run("bench")).unwrap();
    let event = completed("step", json!({"counter": 1}));
    for _ in 0..1_000 {
        store.append("bench", std::slice::from_ref(&event)).unwrap();
    }
    const N: u32 = 20_000;
    let start = Instant::now();
    for _ in 0..N {
        store.append("bench", std::slice::from_ref(&event)).unwrap();
    }
    let per_append = start.elapsed() / N;
    let pair = [event.clone(), event.clone()];
    let start = Instant::now();
    for _ in 0..N {
        store.append("bench", &pair).unwrap();
    }
    let per_pair = start.elapsed() / N;
    let batch: Vec<StepEvent> = (0..100).map(|_| event.clone()).collect();
    let start = Instant::now();
    for _ in 0..100 {
        store.append("bench", &batch).unwrap();
    }
    let per_batched_event = start.elapsed() / (100 * 100);
    let last = 1_000 + 3 * u64::from(N) + 100 * 100;
    let start = Instant::now();
    for _ in 0..N {
        assert_eq!(store.events("bench", last - 1).unwrap().len(), 1);
    }
    let per_tail_read = start.elapsed() / N;
    let start = Instant::now();
    for _ in 0..N {
        store.control("bench").unwrap();
    }
    let per_control = start.elapsed() / N;
    let owner = store::LeaseOwner {
        host: "h".to_string(),
        pid: 1,
        id: "bench".to_string(),
        started: None,
    };
    let token = match store.claim("bench", &owner, 0.0, 1e12, None).unwrap() {
        store::Claim::Won(lease) => lease.token,
        store::Claim::Held(lease) => panic!("held: {lease:?}"),
    };
    let start = Instant::now();
    for _ in 0..N {
        store
            .append_fenced("bench", std::slice::from_ref(&event), token)
            .unwrap();
    }
    let per_fenced = start.elapsed() / N;
    let start = Instant::now();
    for _ in 0..N {
        store.renew("bench", token, 1.0, 1e12).unwrap();
    }
    let per_renew = start.elapsed() / N;
    eprintln!(
        "SQLite: {per_append:?} per single-event append, {per_fenced:?} fenced, {per_pair:?} per \
         two-event append, {per_batched_event:?} per event in batches of 100, {per_tail_read:?} \
         per events(after) of the last one, {per_control:?} per control(), {per_renew:?} per \
         lease renewal"
    );
}

/// The runs table as schema version 1 (before leases) wrote it, with one run left RUNNING.
const VERSION_1: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE runs (
    key INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL UNIQUE, workflow_id TEXT NOT NULL,
    name TEXT NOT NULL, version TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, input TEXT NOT NULL, error TEXT, result TEXT
);
CREATE INDEX runs_by_created ON runs (created_at);
CREATE INDEX runs_by_workflow ON runs (workflow_id, created_at);
CREATE TABLE events (
    id INTEGER PRIMARY KEY, step_id TEXT NOT NULL, status TEXT NOT NULL, attempt INTEGER NOT NULL,
    at REAL NOT NULL, duration_ms REAL, error_type TEXT, error TEXT, output TEXT, delta TEXT,
    detail TEXT
);
CREATE VIEW run_events AS
    SELECT runs.run_id AS run_id, events.id & 0xFFFFFFFF AS seq, events.*
    FROM events JOIN runs ON runs.key = events.id >> 32;
CREATE TABLE controls (run_id TEXT PRIMARY KEY NOT NULL, control TEXT NOT NULL);
CREATE TABLE decisions (
    run_id TEXT NOT NULL, step_id TEXT NOT NULL, approved INTEGER NOT NULL, decided_by TEXT,
    comment TEXT, at REAL NOT NULL, PRIMARY KEY (run_id, step_id)
);
CREATE TABLE cache (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE workflows (workflow_id TEXT PRIMARY KEY NOT NULL, definition TEXT NOT NULL);
INSERT INTO runs (run_id, workflow_id, name, version, status, created_at, updated_at, input)
    VALUES ('old', 'wf', 'review', '1', 'RUNNING', 1700000000.0, 1700000000.0, '{}');
INSERT INTO events (id, step_id, status, attempt, at, output) VALUES (4294967297, 'a', 'completed', 1, 1700000000.5, '1');
";

#[test]
fn a_version_1_file_is_upgraded_in_place_keeping_its_runs_without_a_lease() {
    let dir = TempDir::new();
    raw(&dir.db()).execute_batch(VERSION_1).unwrap();
    let store = SqliteStore::open(dir.db()).unwrap();
    let old = store.get_run("old").unwrap();
    assert_eq!(old.status, "RUNNING");
    assert_eq!(old.lease, None);
    assert_eq!(store.events("old", 0).unwrap().len(), 1);
    let owner = store::LeaseOwner {
        host: "h".to_string(),
        pid: 1,
        id: "x".to_string(),
        started: None,
    };
    let claim = store.claim("old", &owner, 1.0, 30.0, None).unwrap();
    assert!(
        matches!(claim, store::Claim::Won(ref l) if l.token == 1),
        "{claim:?}"
    );
    drop(store);
    let version: String = raw(&dir.db())
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION.to_string());
    // Reopening the upgraded file is a plain open.
    assert!(SqliteStore::open(dir.db())
        .unwrap()
        .get_run("old")
        .unwrap()
        .lease
        .is_some());
}

/// Schema version 2 as batten 0.x wrote it (runs with AUTOINCREMENT and two created_at indexes),
/// with three runs: one finished, one left RUNNING under a lease, one the largest key.
const VERSION_2: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '2');
CREATE TABLE runs (
    key INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL UNIQUE, workflow_id TEXT NOT NULL,
    name TEXT NOT NULL, version TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, input TEXT NOT NULL, error TEXT, result TEXT,
    lease_token INTEGER NOT NULL DEFAULT 0, lease_owner TEXT, lease_heartbeat REAL,
    lease_expires REAL
);
CREATE INDEX runs_by_created ON runs (created_at);
CREATE INDEX runs_by_workflow ON runs (workflow_id, created_at);
CREATE TABLE events (
    id INTEGER PRIMARY KEY, step_id TEXT NOT NULL, status TEXT NOT NULL, attempt INTEGER NOT NULL,
    at REAL NOT NULL, duration_ms REAL, error_type TEXT, error TEXT, output TEXT, delta TEXT,
    detail TEXT
);
CREATE VIEW run_events AS
    SELECT runs.run_id AS run_id, events.id & 0xFFFFFFFF AS seq, events.*
    FROM events JOIN runs ON runs.key = events.id >> 32;
CREATE TABLE controls (run_id TEXT PRIMARY KEY NOT NULL, control TEXT NOT NULL);
CREATE TABLE decisions (
    run_id TEXT NOT NULL, step_id TEXT NOT NULL, approved INTEGER NOT NULL, decided_by TEXT,
    comment TEXT, at REAL NOT NULL, PRIMARY KEY (run_id, step_id)
);
CREATE TABLE cache (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE workflows (workflow_id TEXT PRIMARY KEY NOT NULL, definition TEXT NOT NULL);
INSERT INTO runs (run_id, workflow_id, name, version, status, created_at, updated_at, input, result)
    VALUES ('done', 'wf', 'review', '1', 'COMPLETED', 1700000000.0, 1700000001.0, '{\"a\":1}', '3');
INSERT INTO runs (run_id, workflow_id, name, version, status, created_at, updated_at, input,
                  lease_token, lease_owner, lease_heartbeat, lease_expires)
    VALUES ('held', 'wf', 'review', '1', 'RUNNING', 1700000002.0, 1700000002.0, '{}', 4,
            '{\"host\":\"h\",\"pid\":7,\"id\":\"x\",\"started\":null}', 1700000002.0, 1700000032.0);
INSERT INTO runs (run_id, workflow_id, name, version, status, created_at, updated_at, input)
    VALUES ('last', 'other', 'review', '1', 'FAILED', 1700000003.0, 1700000003.0, '{}');
INSERT INTO events (id, step_id, status, attempt, at, output) VALUES
    (4294967297, 'a', 'completed', 1, 1700000000.5, '1'),
    (4294967298, 'b', 'completed', 1, 1700000000.6, '2'),
    (8589934593, 'a', 'completed', 1, 1700000002.5, '{\"x\":[1,2]}'),
    (12884901889, 'a', 'failed', 1, 1700000003.5, NULL);
INSERT INTO controls VALUES ('held', 'pause');
";

#[test]
fn a_version_2_file_is_upgraded_in_place_keeping_every_run_event_and_lease() {
    let dir = TempDir::new();
    raw(&dir.db()).execute_batch(VERSION_2).unwrap();
    let store = SqliteStore::open(dir.db()).unwrap();
    let done = store.get_run("done").unwrap();
    assert_eq!(
        (done.status.as_str(), done.result.clone()),
        ("COMPLETED", Some(json!(3)))
    );
    assert_eq!(done.input, json!({"a": 1}));
    let held = store.get_run("held").unwrap();
    let lease = held.lease.clone().expect("the lease survives the upgrade");
    assert_eq!((lease.token, lease.owner.pid), (4, 7));
    let outputs = |run_id: &str| -> Vec<(u64, String, Option<serde_json::Value>)> {
        store
            .events(run_id, 0)
            .unwrap()
            .into_iter()
            .map(|e| (e.seq, e.step_id, e.output))
            .collect()
    };
    assert_eq!(
        outputs("done"),
        [
            (1, "a".to_string(), Some(json!(1))),
            (2, "b".to_string(), Some(json!(2)))
        ]
    );
    assert_eq!(
        outputs("held"),
        [(1, "a".to_string(), Some(json!({"x": [1, 2]})))]
    );
    assert_eq!(outputs("last"), [(1, "a".to_string(), None)]);
    assert_eq!(store.control("held").unwrap(), Some(store::Control::Pause));
    let listed: Vec<String> = store
        .list_runs(None, None, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap().run_id)
        .collect();
    assert_eq!(listed, ["last", "held", "done"]);
    // It works: a renewal with the held token, appends after the old events, a new run.
    store.renew("held", 4, 1_700_000_010.0, 30.0).unwrap();
    assert_eq!(
        store.append("held", &[completed("b", json!(5))]).unwrap(),
        [2]
    );
    store.create_run(&run("new")).unwrap();
    assert_eq!(store.events("new", 0).unwrap(), []);
    assert_eq!(event_id(&dir, "new", 0) >> 32, 4);
    drop(store);

    let conn = raw(&dir.db());
    let version: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION.to_string());
    let runs_sql: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'runs'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!runs_sql.contains("AUTOINCREMENT"), "{runs_sql}");
    let indexes: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs' AND sql IS NOT NULL")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(indexes, ["runs_by_created"]);
    let view_rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM run_events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(view_rows, 5);
    drop(conn);
    // Reopening the upgraded file is a plain open.
    assert_eq!(
        SqliteStore::open(dir.db())
            .unwrap()
            .events("held", 0)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_fresh_file_and_an_upgraded_one_have_the_same_schema() {
    let fresh = TempDir::new();
    drop(SqliteStore::open(fresh.db()).unwrap());
    let upgraded = TempDir::new();
    raw(&upgraded.db()).execute_batch(VERSION_1).unwrap();
    drop(SqliteStore::open(upgraded.db()).unwrap());
    let schema = |dir: &TempDir| -> Vec<(String, String)> {
        raw(&dir.db())
            .prepare(
                "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' \
                 ORDER BY type, name",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(schema(&upgraded), schema(&fresh));
}

#[test]
fn a_deleted_runs_key_reused_by_a_new_run_brings_none_of_its_events() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.db()).unwrap();
    store.create_run(&run("gone")).unwrap();
    store
        .append(
            "gone",
            &[completed("a", json!(1)), completed("b", json!(2))],
        )
        .unwrap();
    let key = event_id(&dir, "gone", 0) >> 32;
    // batten never deletes a run; someone with the file may.
    raw(&dir.db())
        .execute("DELETE FROM runs WHERE run_id = 'gone'", [])
        .unwrap();
    store.create_run(&run("next")).unwrap();
    assert_eq!(
        event_id(&dir, "next", 0) >> 32,
        key,
        "SQLite reused the key"
    );
    assert_eq!(store.events("next", 0).unwrap(), []);
    assert_eq!(
        store.append("next", &[completed("c", json!(3))]).unwrap(),
        [1]
    );
}

#[test]
fn the_wal_starts_over_under_a_steady_stream_of_writes() {
    // Before the writer's own checkpoint, the background checkpoint never finished before the
    // next write began, so the WAL never rewound: 20,000 appends left a WAL file of ~80 MB here.
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.db()).unwrap();
    store.create_run(&run("r1")).unwrap();
    for i in 0..20_000 {
        store
            .append("r1", &[completed(&format!("s{i}"), json!(i))])
            .unwrap();
    }
    // The file keeps its largest size when the WAL rewinds, so it bounds every WAL seen.
    let wal = std::fs::metadata(dir.0.join("runs.db-wal")).unwrap().len();
    eprintln!("WAL file {wal} bytes after 20,000 appends");
    // RESTART_PAGES is 4,000 pages of 4 KiB; a few busy checkpoints may let it run a little past.
    assert!(wal < 8_000 * 4_200, "the WAL file is {wal} bytes");
}
