//! What only the PostgreSQL store does: failing fast on an unreachable server, bounded statements,
//! URL errors, the schema check, calls from inside a tokio runtime, reconnecting after the server
//! closed the connection. (The shared behaviour is in store_conformance.rs.)
//!
//! The tests that need a server are `#[ignore]`d, so a `cargo test` without one reports them as
//! ignored instead of passing them untested; `tests/cargo_test.sh` starts a PostgreSQL server
//! (`tests/pg_server.py`: initdb + pg_ctl in a temp directory) or uses `BATTEN_TEST_POSTGRES_URL`
//! and runs them with `--include-ignored`. Run without a server, they fail.
//! `cargo test --release --no-default-features --test store_postgres -- --ignored --nocapture
//! measure` prints the cost of one append.

use std::time::{Duration, Instant};

mod common;

use batten::store::{self, PostgresStore, RunRecord, StepEvent, Store, StoreError, SCHEMA_VERSION};
use common::unique;
use serde_json::json;

/// The test server's URL (its `postgres` database). A test that needs one fails without it.
fn server_url() -> String {
    std::env::var("BATTEN_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "no PostgreSQL server: set BATTEN_TEST_POSTGRES_URL (e.g. \
             postgresql://batten@127.0.0.1:5432/postgres), or run tests/cargo_test.sh, which \
             starts one"
        )
    })
}

/// Runs SQL on the server through a plain tokio-postgres connection (outside the store).
fn sql(url: &str, statements: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        let task = tokio::spawn(connection);
        client.batch_execute(statements).await.unwrap();
        drop(client);
        let _ = task.await;
    });
}

/// A fresh database on the test server; its URL.
fn fresh_database() -> String {
    let url = server_url();
    let name = unique("db").replace('-', "_");
    sql(&url, &format!("CREATE DATABASE {name}"));
    let base = url.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

fn run(run_id: &str) -> RunRecord {
    common::run_record(run_id, "wf", 1_700_000_000.0)
}

fn completed(step_id: &str) -> StepEvent {
    let mut event = StepEvent::new(step_id, "COMPLETED", 1, 1_700_000_000.5);
    event.output = Some(json!({"counter": 1}));
    event
}

#[test]
fn an_unreachable_server_fails_fast_naming_the_url() {
    let start = Instant::now();
    let err = store::open("postgresql://u:secret@127.0.0.1:1/db?connect_timeout=1").unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        matches!(&err, StoreError::Unreachable(m) if m.contains("postgresql://u:***@127.0.0.1:1/db")),
        "{err:?}"
    );
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[test]
fn an_unroutable_server_is_unreachable_within_the_connect_timeout() {
    // 10.255.255.1: a private address that does not answer, so the TCP connect hangs.
    let start = Instant::now();
    let err = store::open("postgres://u@10.255.255.1:5432/db?connect_timeout=1").unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "took {:?}",
        start.elapsed()
    );
    assert!(matches!(err, StoreError::Unreachable(_)), "{err:?}");
}

#[test]
fn malformed_postgres_urls_are_url_errors() {
    for url in [
        "postgresql://h:notaport/db",
        "postgresql://h/db?statement_timeout=soon",
        "postgresql://h/db?connect_timeout=0",
        "postgresql://h/db?no_such_option=1",
    ] {
        let err = store::open(url).unwrap_err();
        assert!(matches!(err, StoreError::Url(_)), "{url}: {err:?}");
    }
}

#[test]
#[ignore = "needs a PostgreSQL server: tests/cargo_test.sh runs it"]
fn an_empty_database_gets_the_schema_and_its_version() {
    let url = fresh_database();
    let store = PostgresStore::open(&url).unwrap();
    let run_id = unique("run");
    store.create_run(&run(&run_id)).unwrap();
    drop(store);
    // Opened again: the version is checked, the data kept.
    let again = PostgresStore::open(&url).unwrap();
    assert_eq!(again.get_run(&run_id).unwrap().run_id, run_id);
}

#[test]
#[ignore = "needs a PostgreSQL server: tests/cargo_test.sh runs it"]
fn a_different_schema_version_is_refused_and_left_alone() {
    let url = fresh_database();
    drop(PostgresStore::open(&url).unwrap());
    sql(
        &url,
        "UPDATE batten.meta SET value = '999' WHERE key = 'schema_version'",
    );
    let err = PostgresStore::open(&url).unwrap_err();
    assert_eq!(
        err,
        StoreError::SchemaVersion {
            found: "999".to_string(),
            expected: SCHEMA_VERSION
        }
    );
}

#[test]
#[ignore = "needs a PostgreSQL server: tests/cargo_test.sh runs it"]
fn tables_in_the_batten_schema_without_a_version_are_refused() {
    let url = fresh_database();
    sql(
        &url,
        "CREATE SCHEMA batten; CREATE TABLE batten.runs (x int)",
    );
    let err = PostgresStore::open(&url).unwrap_err();
    assert!(
        matches!(&err, StoreError::SchemaVersion { found, .. } if found == "(none)"),
        "{err:?}"
    );
}

#[test]
#[ignore = "needs a PostgreSQL server: tests/cargo_test.sh runs it"]
fn concurrent_first_opens_create_the_schema_once() {
    let url = fresh_database();
    let opened: Vec<Result<PostgresStore, StoreError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| PostgresStore::open(&url)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for store in opened {
        store.unwrap();
    }
}

#[test]
#[ignore = "needs a PostgreSQL server: tests/cargo_test.sh runs it"]
fn the_store_works_and_drops_inside_another_tokio_runtime() {
    let url = server_url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = PostgresStore::open(&url).unwrap();
        let run_id = unique("run");
        store.create_run(&run(&run_id)).unwrap();
        assert_eq!(store.append(&run_id, &[completed("a")]).unwrap(), [1]);
        drop(store);
    });
}

#[test]
#[ignore = "needs a PostgreSQL server: tests/cargo_test.sh runs it"]
fn a_write_stuck_behind_a_lock_is_unreachable_within_the_statement_timeout() {
    let url = server_url();
    let store = PostgresStore::open(&format!("{url}?statement_timeout=1")).unwrap();
    let run_id = unique("run");
    store.create_run(&run(&run_id)).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let tx = client.transaction().await.unwrap();
        tx.execute(
            "SELECT 1 FROM batten.runs WHERE run_id = $1 FOR UPDATE",
            &[&run_id],
        )
        .await
        .unwrap();
        let started = Instant::now();
        // A blocking call on this thread: the lock is held by the server, not by this runtime.
        let err = store.append(&run_id, &[completed("a")]).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
        assert!(matches!(err, StoreError::Unreachable(_)), "{err:?}");
        tx.rollback().await.unwrap();
    });
    // Nothing was written; the store works on.
    assert_eq!(store.events(&run_id, 0).unwrap(), []);
    assert_eq!(store.append(&run_id, &[completed("a")]).unwrap(), [1]);
}

#[test]
#[ignore = "needs a PostgreSQL server: tests/cargo_test.sh runs it"]
fn a_connection_the_server_closed_fails_at_most_one_call_then_reconnects() {
    let url = server_url();
    let app = unique("app").replace('-', "_");
    let store = PostgresStore::open(&format!("{url}?application_name={app}")).unwrap();
    let run_id = unique("run");
    store.create_run(&run(&run_id)).unwrap();
    sql(
        &url,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{app}'"
        ),
    );
    if let Err(err) = store.get_run(&run_id) {
        assert!(matches!(err, StoreError::Unreachable(_)), "{err:?}");
    }
    assert_eq!(store.get_run(&run_id).unwrap().run_id, run_id);
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn measure_append_cost() {
    let store = PostgresStore::open(&server_url()).unwrap();
    let run_id = unique("bench");
    store.create_run(&run(&run_id)).unwrap();
    let event = completed("step");
    for _ in 0..500 {
        store.append(&run_id, std::slice::from_ref(&event)).unwrap();
    }
    const N: u32 = 5_000;
    let start = Instant::now();
    for _ in 0..N {
        store.append(&run_id, std::slice::from_ref(&event)).unwrap();
    }
    let per_append = start.elapsed() / N;
    let start = Instant::now();
    for _ in 0..N {
        store.control(&run_id).unwrap();
    }
    let per_control = start.elapsed() / N;
    eprintln!(
        "PostgreSQL: {per_append:?} per single-event append, {per_control:?} per control() read"
    );
}
