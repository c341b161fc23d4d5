//! What only the Redis store does: failing fast on an unreachable server, the schema check, corrupt
//! values, calls from inside a tokio runtime, reconnecting. (The shared behaviour is in
//! store_conformance.rs.)
//!
//! The tests that need a server are `#[ignore]`d, so a `cargo test` without one reports them as
//! ignored instead of passing them untested; `tests/cargo_test.sh` starts a redis-server (or uses
//! `BATTEN_TEST_REDIS_URL`, e.g. `redis://127.0.0.1:6379/0`) and runs them with
//! `--include-ignored`. Run without a server, they fail. They use unique ids, and databases 13-15
//! of that server for the tests that need one to themselves. `cargo test --release
//! --no-default-features --test store_redis -- --ignored --nocapture measure` prints the cost of
//! one append.

use std::time::{Duration, Instant};

mod common;

use batten::store::{self, RedisStore, RunRecord, StepEvent, Store, StoreError, SCHEMA_VERSION};
use common::unique;
use serde_json::json;

/// The test server's URL. A test that needs one fails without it: it was asked to run (it is
/// ignored unless `--include-ignored` or `--ignored`), so passing it untested would be a lie.
fn server_url() -> String {
    std::env::var("BATTEN_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "no Redis server: set BATTEN_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0), or run \
             tests/cargo_test.sh, which starts one"
        )
    })
}

/// The test server's URL with another database index (the path of a redis:// URL).
fn with_db(url: &str, db: u32) -> String {
    let host_start = url.find("://").map_or(0, |i| i + 3);
    let host_end = url[host_start..]
        .find('/')
        .map_or(url.len(), |i| host_start + i);
    format!("{}/{db}", &url[..host_end])
}

fn raw(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
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
    let err = store::open("redis://127.0.0.1:1/0").unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        matches!(&err, StoreError::Unreachable(m) if m.contains("redis://127.0.0.1:1/0")),
        "{err:?}"
    );
}

#[test]
fn the_password_is_not_in_the_url_or_the_messages() {
    let err = store::open("redis://:hunter2@127.0.0.1:1/0").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(
        err.to_string().contains("redis://:***@127.0.0.1:1/0"),
        "{err}"
    );
}

#[test]
fn a_malformed_redis_url_is_a_url_error() {
    assert!(matches!(
        store::open("redis://host:notaport/0"),
        Err(StoreError::Url(_))
    ));
}

#[test]
fn with_db_replaces_or_adds_the_database_index() {
    assert_eq!(with_db("redis://h:6379/0", 15), "redis://h:6379/15");
    assert_eq!(with_db("redis://h:6379", 15), "redis://h:6379/15");
    assert_eq!(with_db("redis://h:6379/", 15), "redis://h:6379/15");
}

#[test]
#[ignore = "needs a Redis server: tests/cargo_test.sh runs it"]
fn a_different_schema_version_is_refused_and_left_alone() {
    let url = server_url();
    let url = with_db(&url, 15);
    let mut conn = raw(&url);
    redis::cmd("SET")
        .arg("batten:schema")
        .arg("999")
        .exec(&mut conn)
        .unwrap();
    let err = RedisStore::open(&url).unwrap_err();
    let kept: String = redis::cmd("GET")
        .arg("batten:schema")
        .query(&mut conn)
        .unwrap();
    redis::cmd("DEL")
        .arg("batten:schema")
        .exec(&mut conn)
        .unwrap();
    assert_eq!(
        err,
        StoreError::SchemaVersion {
            found: "999".to_string(),
            expected: SCHEMA_VERSION
        }
    );
    assert_eq!(kept, "999");
}

#[test]
#[ignore = "needs a Redis server: tests/cargo_test.sh runs it"]
fn an_empty_database_gets_the_schema_version() {
    let url = server_url();
    let store = RedisStore::open(&url).unwrap();
    let version: String = redis::cmd("GET")
        .arg("batten:schema")
        .query(&mut raw(&url))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION.to_string());
    drop(store);
}

#[test]
#[ignore = "needs a Redis server: tests/cargo_test.sh runs it"]
fn an_event_whose_json_is_corrupt_is_reported_with_its_run_and_seq() {
    let url = server_url();
    // Database 13 holds the corrupt records, so listing runs elsewhere never meets them.
    let url = with_db(&url, 13);
    let store = RedisStore::open(&url).unwrap();
    let run_id = unique("run");
    store.create_run(&run(&run_id)).unwrap();
    store
        .append(&run_id, &[completed("a"), completed("b")])
        .unwrap();
    redis::cmd("LSET")
        .arg(format!("batten:run:{run_id}:events"))
        .arg(1)
        .arg("{\"step_id\": ")
        .exec(&mut raw(&url))
        .unwrap();
    let err = store.events(&run_id, 0).unwrap_err();
    let what = format!("run '{run_id}' event 2");
    assert!(
        matches!(&err, StoreError::Corrupt { what: w, .. } if *w == what),
        "{err:?}"
    );
    assert_eq!(store.events(&run_id, 0).unwrap_err(), err);
    assert_eq!(store.events(&run_id, 1).unwrap_err(), err);
    assert_eq!(store.events(&run_id, 2).unwrap(), []);
}

#[test]
#[ignore = "needs a Redis server: tests/cargo_test.sh runs it"]
fn a_run_missing_a_field_is_corrupt() {
    let url = server_url();
    let url = with_db(&url, 13);
    let store = RedisStore::open(&url).unwrap();
    let run_id = unique("run");
    store.create_run(&run(&run_id)).unwrap();
    redis::cmd("HDEL")
        .arg(format!("batten:run:{run_id}"))
        .arg("status")
        .exec(&mut raw(&url))
        .unwrap();
    let err = store.get_run(&run_id).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { what, detail } if *what == format!("run '{run_id}'") && detail.contains("status")),
        "{err:?}"
    );
}

#[test]
#[ignore = "needs a Redis server: tests/cargo_test.sh runs it"]
fn a_corrupt_run_is_listed_as_its_error_in_its_place_among_the_others() {
    let url = with_db(&server_url(), 13);
    let store = RedisStore::open(&url).unwrap();
    let workflow = unique("wf");
    let ids: Vec<String> = (0..3).map(|_| unique("run")).collect();
    for (i, run_id) in ids.iter().enumerate() {
        let record = common::run_record(run_id, &workflow, 1_700_000_000.0 + i as f64);
        store.create_run(&record).unwrap();
    }
    redis::cmd("HSET")
        .arg(format!("batten:run:{}", ids[1]))
        .arg("input")
        .arg("{\"half\": ")
        .exec(&mut raw(&url))
        .unwrap();
    let listed = store.list_runs(None, Some(&workflow), 10).unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed[0].as_ref().unwrap().run_id, ids[2]);
    let what = format!("run '{}' input", ids[1]);
    assert!(
        matches!(&listed[1], Err(StoreError::Corrupt { what: w, .. }) if *w == what),
        "{:?}",
        listed[1]
    );
    assert_eq!(listed[2].as_ref().unwrap().run_id, ids[0]);
    let running = store
        .list_runs(Some("RUNNING"), Some(&workflow), 10)
        .unwrap();
    assert_eq!(
        running.len(),
        3,
        "a corrupt run is filtered on its raw status"
    );
}

#[test]
#[ignore = "needs a Redis server: tests/cargo_test.sh runs it"]
fn the_store_works_and_drops_inside_another_tokio_runtime() {
    let url = server_url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = RedisStore::open(&url).unwrap();
        let run_id = unique("run");
        store.create_run(&run(&run_id)).unwrap();
        assert_eq!(store.append(&run_id, &[completed("a")]).unwrap(), [1]);
        drop(store);
    });
}

#[test]
#[ignore = "needs a Redis server: tests/cargo_test.sh runs it"]
fn two_stores_interleaving_appends_get_distinct_increasing_seqs() {
    let url = server_url();
    let one = RedisStore::open(&url).unwrap();
    let two = RedisStore::open(&url).unwrap();
    let run_id = unique("run");
    one.create_run(&run(&run_id)).unwrap();
    let per_store: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = [&one, &two]
            .into_iter()
            .map(|store| {
                let run_id = &run_id;
                scope.spawn(move || {
                    (0..100)
                        .flat_map(|i| {
                            store
                                .append(run_id, &[completed(&format!("s{i}"))])
                                .unwrap()
                        })
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for seqs in &per_store {
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    }
    let mut all = per_store.concat();
    all.sort_unstable();
    assert_eq!(all, (1..=200).collect::<Vec<u64>>());
}

#[test]
#[ignore = "needs a Redis server: tests/cargo_test.sh runs it"]
fn a_dropped_connection_fails_one_call_then_reconnects() {
    let url = server_url();
    // Database 14 is this test's alone, so killing its clients disturbs no other test.
    let url = with_db(&url, 14);
    let store = RedisStore::open(&url).unwrap();
    let run_id = unique("run");
    store.create_run(&run(&run_id)).unwrap();

    let mut admin = raw(&url);
    let me: i64 = redis::cmd("CLIENT").arg("ID").query(&mut admin).unwrap();
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    for line in clients.lines().filter(|l| l.contains(" db=14 ")) {
        let id: i64 = line
            .split(' ')
            .find_map(|f| f.strip_prefix("id="))
            .unwrap()
            .parse()
            .unwrap();
        if id != me {
            redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .exec(&mut admin)
                .unwrap();
        }
    }

    // The first call may or may not notice the dead connection; either way, the next one works.
    if let Err(err) = store.get_run(&run_id) {
        assert!(matches!(err, StoreError::Unreachable(_)), "{err:?}");
    }
    assert_eq!(store.get_run(&run_id).unwrap().run_id, run_id);
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn measure_append_cost() {
    let url = server_url();
    let store = RedisStore::open(&url).unwrap();
    let run_id = unique("bench");
    store.create_run(&run(&run_id)).unwrap();
    let event = completed("step");
    for _ in 0..1_000 {
        store.append(&run_id, std::slice::from_ref(&event)).unwrap();
    }
    const N: u32 = 10_000;
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
    eprintln!("Redis: {per_append:?} per single-event append, {per_control:?} per control() read");
}

#[test]
#[ignore = "needs a Redis server: tests/cargo_test.sh runs it"]
fn a_version_1_database_is_upgraded_to_the_current_version() {
    let url = with_db(&server_url(), 14);
    let mut conn = raw(&url);
    redis::cmd("SET")
        .arg("batten:schema")
        .arg("1")
        .exec(&mut conn)
        .unwrap();
    let opened = RedisStore::open(&url);
    let version: String = redis::cmd("GET")
        .arg("batten:schema")
        .query(&mut conn)
        .unwrap();
    redis::cmd("DEL")
        .arg("batten:schema")
        .exec(&mut conn)
        .unwrap();
    opened.unwrap();
    assert_eq!(version, SCHEMA_VERSION.to_string());
}
