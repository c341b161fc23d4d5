//! The behaviour every checkpoint store shares, written once against `&dyn Store` and run against
//! each backend: `memory::*`, `sqlite::*`, `redis::*` and `postgres::*`. The last two need a server named by
//! `BATTEN_TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6379/0`) or `BATTEN_TEST_POSTGRES_URL` (e.g.
//! `postgresql://batten@127.0.0.1:5432/postgres`; the tests use unique ids, so they can share it): they are `#[ignore]`d, so a plain `cargo test` reports them as ignored rather than
//! passed, and `tests/cargo_test.sh` starts a server and runs them with `--include-ignored`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

mod common;

use batten::store::{
    self, Claim, Control, Decision, Lease, LeaseOwner, RunRecord, StepEvent, Store, StoreError,
};
use common::{unique, TempDir};
use serde_json::json;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn run(run_id: &str, workflow_id: &str, created_at: f64) -> RunRecord {
    common::run_record(run_id, workflow_id, created_at)
}

fn new_run(store: &dyn Store) -> String {
    let run_id = unique("run");
    store
        .create_run(&run(&run_id, &unique("wf"), now()))
        .unwrap();
    run_id
}

fn event(step_id: &str, status: &str) -> StepEvent {
    StepEvent::new(step_id, status, 1, 1_700_000_000.25)
}

/// `list_runs`, every listed record expected to be readable.
fn listed_runs(
    store: &dyn Store,
    status: Option<&str>,
    workflow_id: Option<&str>,
    limit: usize,
) -> Vec<RunRecord> {
    store
        .list_runs(status, workflow_id, limit)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect()
}

/// `levels` arrays nested in one another around `"leaf"`.
fn nested(levels: usize) -> serde_json::Value {
    (0..levels).fold(json!("leaf"), |inner, _| json!([inner]))
}

// --- runs ---

fn a_created_run_reads_back_unchanged(store: &dyn Store) {
    let run_id = unique("run");
    let mut record = run(&run_id, "wf", 1_700_000_000.125);
    record.error = Some("earlier failure".to_string());
    record.result = Some(json!({"partial": true}));
    store.create_run(&record).unwrap();
    assert_eq!(store.get_run(&run_id).unwrap(), record);
}

fn creating_a_run_twice_is_run_exists_and_keeps_the_first(store: &dyn Store) {
    let run_id = unique("run");
    let first = run(&run_id, "wf", now());
    store.create_run(&first).unwrap();
    let mut second = first.clone();
    second.name = "other".to_string();
    let err = store.create_run(&second).unwrap_err();
    assert_eq!(err, StoreError::RunExists(run_id.clone()));
    assert_eq!(store.get_run(&run_id).unwrap(), first);
}

fn every_per_run_method_on_an_unknown_run_is_run_not_found(store: &dyn Store) {
    let missing = unique("missing");
    let not_found = StoreError::RunNotFound(missing.clone());
    let decision = Decision {
        step_id: "approve".to_string(),
        approved: true,
        by: None,
        comment: None,
        at: now(),
    };
    assert_eq!(store.get_run(&missing).unwrap_err(), not_found);
    assert_eq!(
        store
            .finish_status(&missing, "FAILED", now(), None, None)
            .unwrap_err(),
        not_found
    );
    assert_eq!(
        store
            .append(&missing, &[event("a", "RUNNING")])
            .unwrap_err(),
        not_found
    );
    assert_eq!(store.append(&missing, &[]).unwrap_err(), not_found);
    assert_eq!(store.events(&missing, 0).unwrap_err(), not_found);
    assert_eq!(
        store
            .set_control(&missing, Some(Control::Pause))
            .unwrap_err(),
        not_found
    );
    assert_eq!(store.control(&missing).unwrap_err(), not_found);
    assert_eq!(store.decide(&missing, &decision).unwrap_err(), not_found);
    assert_eq!(store.decisions(&missing).unwrap_err(), not_found);
    assert_eq!(
        not_found.to_string(),
        format!("run '{missing}' not found in the store")
    );
}

fn finish_status_sets_status_and_time_and_keeps_what_is_not_given(store: &dyn Store) {
    let run_id = new_run(store);
    store
        .finish_status(&run_id, "WAITING_APPROVAL", 10.5, None, None)
        .unwrap();
    let waiting = store.get_run(&run_id).unwrap();
    assert_eq!(
        (waiting.status.as_str(), waiting.updated_at),
        ("WAITING_APPROVAL", 10.5)
    );
    assert_eq!((waiting.error, waiting.result), (None, None));

    store
        .finish_status(
            &run_id,
            "FAILED",
            11.0,
            Some("ValueError: bad"),
            Some(&json!({"done": 2})),
        )
        .unwrap();
    store
        .finish_status(&run_id, "FAILED", 12.0, None, None)
        .unwrap();
    let failed = store.get_run(&run_id).unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.updated_at),
        ("FAILED", 12.0)
    );
    assert_eq!(failed.error.as_deref(), Some("ValueError: bad"));
    assert_eq!(failed.result, Some(json!({"done": 2})));
    assert_eq!(failed.created_at, waiting.created_at);
}

fn a_null_result_is_kept_apart_from_no_result(store: &dyn Store) {
    let run_id = new_run(store);
    store
        .finish_status(&run_id, "COMPLETED", now(), None, Some(&json!(null)))
        .unwrap();
    assert_eq!(store.get_run(&run_id).unwrap().result, Some(json!(null)));
}

fn list_runs_is_newest_first_filtered_and_limited(store: &dyn Store) {
    let workflow = unique("wf");
    let other_workflow = unique("wf");
    let base = now();
    let ids: Vec<String> = (0..4).map(|_| unique("run")).collect();
    // Created out of order: the listing orders by created_at, not by insertion.
    for (i, offset) in [(0, 2.0), (1, 0.0), (2, 3.0), (3, 1.0)] {
        store
            .create_run(&run(&ids[i], &workflow, base + offset))
            .unwrap();
    }
    store
        .create_run(&run(&unique("run"), &other_workflow, base + 5.0))
        .unwrap();
    store
        .finish_status(&ids[0], "COMPLETED", base + 4.0, None, None)
        .unwrap();
    store
        .finish_status(&ids[3], "COMPLETED", base + 4.0, None, None)
        .unwrap();

    let listed = |status: Option<&str>, limit: usize| -> Vec<String> {
        let runs = listed_runs(store, status, Some(&workflow), limit);
        runs.into_iter().map(|r| r.run_id).collect()
    };
    assert_eq!(listed(None, 10), [&*ids[2], &ids[0], &ids[3], &ids[1]]);
    assert_eq!(listed(None, 2), [&*ids[2], &ids[0]]);
    assert_eq!(listed(Some("COMPLETED"), 10), [&*ids[0], &ids[3]]);
    assert_eq!(listed(Some("RUNNING"), 1), [&*ids[2]]);
    assert_eq!(listed(Some("CANCELLED"), 10), Vec::<String>::new());
    assert_eq!(listed(None, 0), Vec::<String>::new());

    let all = listed_runs(store, None, None, 3);
    assert_eq!(all.len(), 3);
    assert!(
        all.windows(2).all(|w| w[0].created_at >= w[1].created_at),
        "{all:?}"
    );
    let completed = listed_runs(store, Some("COMPLETED"), None, 1000);
    assert!(completed.iter().all(|r| r.status == "COMPLETED"));
    assert!(completed.iter().any(|r| r.run_id == ids[3]));
}

/// The binding refuses values deeper than `MAX_JSON_DEPTH`; everything up to it must come back
/// from every kind of record, whatever envelope the backend wraps it in.
fn a_value_nested_max_json_depth_levels_reads_back_from_every_record(store: &dyn Store) {
    let deepest = nested(store::MAX_JSON_DEPTH);
    let run_id = unique("run");
    let mut record = run(&run_id, &unique("wf"), now());
    record.input = deepest.clone();
    store.create_run(&record).unwrap();
    store
        .finish_status(&run_id, "COMPLETED", now(), None, Some(&deepest))
        .unwrap();
    let mut e = event("a", "COMPLETED");
    e.output = Some(deepest.clone());
    e.delta = Some(deepest.clone());
    e.detail = Some(deepest.clone());
    store.append(&run_id, &[e]).unwrap();
    let key = unique("cache");
    store.cache_put(&key, &deepest, f64::INFINITY).unwrap();
    let workflow = unique("wf");
    store.put_workflow(&workflow, &deepest).unwrap();

    let read = store.get_run(&run_id).unwrap();
    assert_eq!(
        (read.input, read.result),
        (deepest.clone(), Some(deepest.clone()))
    );
    let events = store.events(&run_id, 0).unwrap();
    assert_eq!(events[0].output.as_ref(), Some(&deepest));
    assert_eq!(events[0].delta.as_ref(), Some(&deepest));
    assert_eq!(events[0].detail.as_ref(), Some(&deepest));
    assert_eq!(store.cache_get(&key, now()).unwrap(), Some(deepest.clone()));
    assert_eq!(
        store.get_workflow(&workflow).unwrap(),
        Some(deepest.clone())
    );
    let listed = store.list_runs(Some("COMPLETED"), None, 1000).unwrap();
    assert!(listed
        .iter()
        .any(|r| matches!(r, Ok(r) if r.run_id == run_id)));
}

// --- events ---

fn append_numbers_events_from_one_consecutively_ignoring_the_given_seq(store: &dyn Store) {
    let run_id = new_run(store);
    let mut first = event("a", "RUNNING");
    first.seq = 99;
    assert_eq!(store.append(&run_id, &[first]).unwrap(), [1]);
    let batch = [
        event("a", "COMPLETED"),
        event("b", "RUNNING"),
        event("c", "RUNNING"),
    ];
    assert_eq!(store.append(&run_id, &batch).unwrap(), [2, 3, 4]);
    assert_eq!(store.append(&run_id, &[event("b", "FAILED")]).unwrap(), [5]);
    let seqs: Vec<u64> = store
        .events(&run_id, 0)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
}

fn appending_no_events_assigns_no_seqs(store: &dyn Store) {
    let run_id = new_run(store);
    assert_eq!(store.append(&run_id, &[]).unwrap(), Vec::<u64>::new());
    assert_eq!(
        store.append(&run_id, &[event("a", "RUNNING")]).unwrap(),
        [1]
    );
}

fn every_event_field_reads_back_unchanged(store: &dyn Store) {
    let run_id = new_run(store);
    let full = StepEvent {
        seq: 0,
        step_id: "parent/child".to_string(),
        status: "FAILED".to_string(),
        attempt: 3,
        at: 1_700_000_123.456_789,
        duration_ms: Some(12.5),
        error_type: Some("TimeoutError".to_string()),
        error: Some("took 'too' long: \"30 s\"\n".to_string()),
        output: Some(json!({"text": "héllo ☃", "n": [1, 2.5, null]})),
        delta: Some(json!({"counter": 4})),
        detail: Some(json!("a prompt")),
    };
    let mut returned_nothing = event("b", "COMPLETED");
    returned_nothing.output = Some(json!(null));
    store
        .append(&run_id, &[full.clone(), returned_nothing.clone()])
        .unwrap();
    let events = store.events(&run_id, 0).unwrap();
    assert_eq!(events[0], StepEvent { seq: 1, ..full });
    assert_eq!(
        events[1],
        StepEvent {
            seq: 2,
            ..returned_nothing
        }
    );
    assert_eq!(events[1].delta, None);
}

fn events_after_a_seq_are_only_the_later_ones_in_order(store: &dyn Store) {
    let run_id = new_run(store);
    let steps: Vec<StepEvent> = (0..6)
        .map(|i| event(&format!("s{i}"), "COMPLETED"))
        .collect();
    store.append(&run_id, &steps).unwrap();
    let after_four: Vec<(u64, String)> = store
        .events(&run_id, 4)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.step_id))
        .collect();
    assert_eq!(after_four, [(5, "s4".to_string()), (6, "s5".to_string())]);
    assert!(store.events(&run_id, 6).unwrap().is_empty());
    assert!(store.events(&run_id, u64::MAX).unwrap().is_empty());
}

fn each_run_numbers_its_own_events(store: &dyn Store) {
    let one = new_run(store);
    let two = new_run(store);
    store
        .append(&one, &[event("a", "RUNNING"), event("a", "COMPLETED")])
        .unwrap();
    assert_eq!(store.append(&two, &[event("x", "RUNNING")]).unwrap(), [1]);
    assert_eq!(store.events(&two, 0).unwrap().len(), 1);
    assert!(store.events(&new_run(store), 0).unwrap().is_empty());
}

fn run_ids_with_separators_do_not_collide(store: &dyn Store) {
    let base = unique("run");
    let ids = [
        base.clone(),
        format!("{base}:events"),
        format!("{base}%3Aevents"),
        format!("{base}/x"),
    ];
    for id in &ids {
        store.create_run(&run(id, "wf", now())).unwrap();
    }
    store.append(&ids[0], &[event("a", "RUNNING")]).unwrap();
    store.set_control(&ids[0], Some(Control::Cancel)).unwrap();
    for id in &ids[1..] {
        assert_eq!(store.get_run(id).unwrap().run_id, *id);
        assert_eq!(store.events(id, 0).unwrap(), []);
        assert_eq!(store.control(id).unwrap(), None);
    }
    assert_eq!(store.events(&ids[0], 0).unwrap().len(), 1);
}

fn concurrent_appends_get_distinct_consecutive_seqs(store: &dyn Store) {
    let run_id = new_run(store);
    let mut seqs: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let run_id = &run_id;
                scope.spawn(move || {
                    let mut seqs = Vec::new();
                    for i in 0..25 {
                        let batch = [
                            event(&format!("t{t}-{i}"), "RUNNING"),
                            event(&format!("t{t}-{i}"), "COMPLETED"),
                        ];
                        let got = store.append(run_id, &batch).unwrap();
                        assert_eq!(got[1], got[0] + 1, "a batch is consecutive");
                        seqs.extend(got);
                    }
                    seqs
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
    let events = store.events(&run_id, 0).unwrap();
    assert_eq!(events.len(), 200);
    // A batch's two events are adjacent in the history.
    for pair in events.chunks(2) {
        assert_eq!(pair[0].step_id, pair[1].step_id);
    }
}

// --- controls and decisions ---

fn a_control_is_set_replaced_and_cleared(store: &dyn Store) {
    let run_id = new_run(store);
    assert_eq!(store.control(&run_id).unwrap(), None);
    store.set_control(&run_id, Some(Control::Pause)).unwrap();
    assert_eq!(store.control(&run_id).unwrap(), Some(Control::Pause));
    store.set_control(&run_id, Some(Control::Cancel)).unwrap();
    assert_eq!(store.control(&run_id).unwrap(), Some(Control::Cancel));
    store.set_control(&run_id, None).unwrap();
    assert_eq!(store.control(&run_id).unwrap(), None);
    store.set_control(&run_id, None).unwrap();
}

fn a_step_is_decided_once(store: &dyn Store) {
    let run_id = new_run(store);
    let approve = Decision {
        step_id: "review/approve".to_string(),
        approved: true,
        by: Some("ana".to_string()),
        comment: Some("looks good".to_string()),
        at: 20.0,
    };
    let reject = Decision {
        approved: false,
        by: None,
        comment: None,
        at: 21.0,
        ..approve.clone()
    };
    let other = Decision {
        step_id: "publish".to_string(),
        approved: false,
        by: None,
        comment: None,
        at: 10.0,
    };
    assert_eq!(store.decisions(&run_id).unwrap(), []);
    store.decide(&run_id, &approve).unwrap();
    let err = store.decide(&run_id, &reject).unwrap_err();
    assert_eq!(
        err,
        StoreError::AlreadyDecided {
            run_id: run_id.clone(),
            step_id: "review/approve".to_string()
        }
    );
    store.decide(&run_id, &other).unwrap();
    assert_eq!(store.decisions(&run_id).unwrap(), [other, approve]);
}

fn of_concurrent_decisions_on_one_step_exactly_one_wins(store: &dyn Store) {
    let run_id = new_run(store);
    let outcomes: Vec<Result<(), StoreError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let run_id = &run_id;
                scope.spawn(move || {
                    let decision = Decision {
                        step_id: "gate".to_string(),
                        approved: i % 2 == 0,
                        by: Some(format!("user{i}")),
                        comment: None,
                        at: now(),
                    };
                    store.decide(run_id, &decision)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    assert!(outcomes
        .iter()
        .filter_map(|o| o.as_ref().err())
        .all(|e| matches!(e, StoreError::AlreadyDecided { .. })));
    assert_eq!(store.decisions(&run_id).unwrap().len(), 1);
}

// --- leases ---

fn owner(name: &str) -> LeaseOwner {
    LeaseOwner {
        host: "host-a".to_string(),
        pid: 4242,
        id: name.to_string(),
        started: Some(123_456),
    }
}

fn won(claim: Claim) -> Lease {
    match claim {
        Claim::Won(lease) => lease,
        Claim::Held(lease) => panic!("expected to win, held by {lease:?}"),
    }
}

fn a_free_run_is_claimed_with_token_one_and_its_record_shows_the_lease(store: &dyn Store) {
    let run_id = new_run(store);
    assert_eq!(store.get_run(&run_id).unwrap().lease, None);
    let t = now();
    let lease = won(store.claim(&run_id, &owner("a"), t, 30.0, None).unwrap());
    assert_eq!(lease.token, 1);
    assert_eq!(lease.owner, owner("a"));
    assert_eq!(lease.heartbeat_at, t);
    assert_eq!(lease.expires_at, t + 30.0);
    assert_eq!(store.get_run(&run_id).unwrap().lease, Some(lease.clone()));
    let listed = store.list_runs(None, None, 1000).unwrap();
    let mine = listed
        .into_iter()
        .map(Result::unwrap)
        .find(|r| r.run_id == run_id)
        .unwrap();
    assert_eq!(mine.lease, Some(lease));
}

fn a_live_lease_refuses_a_second_claim_and_names_its_owner(store: &dyn Store) {
    let run_id = new_run(store);
    let t = now();
    let first = won(store.claim(&run_id, &owner("a"), t, 30.0, None).unwrap());
    let second = store
        .claim(&run_id, &owner("b"), t + 29.0, 30.0, None)
        .unwrap();
    assert_eq!(second, Claim::Held(first.clone()));
    assert_eq!(store.get_run(&run_id).unwrap().lease, Some(first));
}

fn an_expired_lease_is_taken_over_with_a_higher_token(store: &dyn Store) {
    let run_id = new_run(store);
    let t = now();
    let first = won(store.claim(&run_id, &owner("a"), t, 1.0, None).unwrap());
    let second = won(store
        .claim(&run_id, &owner("b"), t + 1.0, 30.0, None)
        .unwrap());
    assert!(second.token > first.token, "{first:?} {second:?}");
    assert_eq!(second.owner, owner("b"));
    // The old owner's heartbeat is refused now.
    let err = store
        .renew(&run_id, first.token, t + 2.0, 30.0)
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::LeaseLost {
            run_id: run_id.clone(),
            token: first.token,
            current: second.token
        }
    );
}

fn take_over_of_the_named_token_wins_a_live_lease_and_only_that_one(store: &dyn Store) {
    let run_id = new_run(store);
    let t = now();
    let first = won(store.claim(&run_id, &owner("a"), t, 30.0, None).unwrap());
    let stale = store
        .claim(&run_id, &owner("b"), t, 30.0, Some(first.token + 7))
        .unwrap();
    assert!(matches!(stale, Claim::Held(_)), "{stale:?}");
    let second = won(store
        .claim(&run_id, &owner("b"), t, 30.0, Some(first.token))
        .unwrap());
    assert_eq!(second.token, first.token + 1);
}

fn a_heartbeat_extends_the_lease(store: &dyn Store) {
    let run_id = new_run(store);
    let t = now();
    let lease = won(store.claim(&run_id, &owner("a"), t, 5.0, None).unwrap());
    let renewed = store.renew(&run_id, lease.token, t + 4.0, 5.0).unwrap();
    assert_eq!(renewed.heartbeat_at, t + 4.0);
    assert_eq!(renewed.expires_at, t + 9.0);
    assert_eq!(renewed.token, lease.token);
    assert_eq!(store.get_run(&run_id).unwrap().lease, Some(renewed));
    // Still live at t + 8: a claim is refused.
    let held = store
        .claim(&run_id, &owner("b"), t + 8.0, 5.0, None)
        .unwrap();
    assert!(matches!(held, Claim::Held(_)), "{held:?}");
}

fn a_write_with_a_stale_token_is_refused_and_changes_nothing(store: &dyn Store) {
    let run_id = new_run(store);
    let t = now();
    let first = won(store.claim(&run_id, &owner("a"), t, 1.0, None).unwrap());
    store
        .append_fenced(&run_id, &[event("a", "completed")], first.token)
        .unwrap();
    let second = won(store
        .claim(&run_id, &owner("b"), t + 2.0, 30.0, None)
        .unwrap());
    store
        .append_fenced(&run_id, &[event("b", "running")], second.token)
        .unwrap();
    let before_events = store.events(&run_id, 0).unwrap();
    let before_run = store.get_run(&run_id).unwrap();
    let lost = StoreError::LeaseLost {
        run_id: run_id.clone(),
        token: first.token,
        current: second.token,
    };
    assert_eq!(
        store
            .append_fenced(&run_id, &[event("z", "completed")], first.token)
            .unwrap_err(),
        lost
    );
    assert_eq!(
        store
            .finish_status_fenced(&run_id, "COMPLETED", t + 3.0, None, None, first.token)
            .unwrap_err(),
        lost
    );
    assert!(!store.release(&run_id, first.token).unwrap());
    assert_eq!(store.events(&run_id, 0).unwrap(), before_events);
    assert_eq!(store.get_run(&run_id).unwrap(), before_run);
    // The holder's own fenced status write goes through.
    store
        .finish_status_fenced(&run_id, "COMPLETED", t + 3.0, None, None, second.token)
        .unwrap();
    assert_eq!(store.get_run(&run_id).unwrap().status, "COMPLETED");
}

fn a_released_lease_frees_the_run_and_fences_its_old_holder(store: &dyn Store) {
    let run_id = new_run(store);
    let t = now();
    let lease = won(store.claim(&run_id, &owner("a"), t, 30.0, None).unwrap());
    assert!(store.release(&run_id, lease.token).unwrap());
    assert_eq!(store.get_run(&run_id).unwrap().lease, None);
    assert!(!store.release(&run_id, lease.token).unwrap());
    // Released: the old token writes nothing and heartbeats nothing.
    assert!(matches!(
        store.append_fenced(&run_id, &[event("a", "running")], lease.token),
        Err(StoreError::LeaseLost { .. })
    ));
    assert!(matches!(
        store.renew(&run_id, lease.token, t, 30.0),
        Err(StoreError::LeaseLost { .. })
    ));
    // Anyone may claim it at once; the token still grows.
    let next = won(store
        .claim(&run_id, &owner("b"), t + 1.0, 30.0, None)
        .unwrap());
    assert_eq!(next.token, lease.token + 1);
    // Unfenced writes (decisions, an outside cancel) are not affected by leases.
    store
        .append(&run_id, &[event("gate", "waiting_approval")])
        .unwrap();
}

fn lease_methods_on_an_unknown_run_are_run_not_found(store: &dyn Store) {
    let missing = unique("missing");
    let not_found = StoreError::RunNotFound(missing.clone());
    assert_eq!(
        store
            .claim(&missing, &owner("a"), now(), 30.0, None)
            .unwrap_err(),
        not_found
    );
    assert_eq!(
        store.renew(&missing, 1, now(), 30.0).unwrap_err(),
        not_found
    );
    assert_eq!(store.release(&missing, 1).unwrap_err(), not_found);
    assert_eq!(
        store.append_fenced(&missing, &[], 1).unwrap_err(),
        not_found
    );
}

fn of_concurrent_claimants_exactly_one_wins(store: &dyn Store) {
    let run_id = new_run(store);
    let t = now();
    let outcomes: Vec<Claim> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let run_id = &run_id;
                scope.spawn(move || {
                    store
                        .claim(run_id, &owner(&format!("c{i}")), t, 30.0, None)
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<&Lease> = outcomes
        .iter()
        .filter_map(|c| match c {
            Claim::Won(lease) => Some(lease),
            Claim::Held(_) => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    let winner = winners[0].clone();
    assert_eq!(winner.token, 1);
    for c in &outcomes {
        if let Claim::Held(lease) = c {
            assert_eq!(lease, &winner);
        }
    }
    assert_eq!(store.get_run(&run_id).unwrap().lease, Some(winner));
}

// --- cache and workflows ---

fn a_cache_entry_is_returned_until_it_expires(store: &dyn Store) {
    let key = unique("cache");
    let t = now();
    assert_eq!(store.cache_get(&key, t).unwrap(), None);
    store
        .cache_put(&key, &json!({"answer": 42}), t + 60.0)
        .unwrap();
    assert_eq!(
        store.cache_get(&key, t).unwrap(),
        Some(json!({"answer": 42}))
    );
    assert_eq!(
        store.cache_get(&key, t + 59.9).unwrap(),
        Some(json!({"answer": 42}))
    );
    assert_eq!(
        store.cache_get(&key, t + 60.0).unwrap(),
        None,
        "expires_at <= now is expired"
    );
    store.cache_put(&key, &json!("newer"), t + 120.0).unwrap();
    assert_eq!(
        store.cache_get(&key, t + 90.0).unwrap(),
        Some(json!("newer"))
    );
}

fn a_cache_entry_already_expired_is_not_returned(store: &dyn Store) {
    let key = unique("cache");
    store.cache_put(&key, &json!(1), now() - 1.0).unwrap();
    assert_eq!(store.cache_get(&key, now()).unwrap(), None);
}

fn a_cache_entry_without_expiry_never_expires(store: &dyn Store) {
    let key = unique("cache");
    store
        .cache_put(&key, &json!([1, 2]), f64::INFINITY)
        .unwrap();
    assert_eq!(
        store.cache_get(&key, now() + 1e9).unwrap(),
        Some(json!([1, 2]))
    );
}

fn a_workflow_definition_is_upserted(store: &dyn Store) {
    let id = unique("wf");
    assert_eq!(store.get_workflow(&id).unwrap(), None);
    store.put_workflow(&id, &json!({"steps": ["a"]})).unwrap();
    assert_eq!(
        store.get_workflow(&id).unwrap(),
        Some(json!({"steps": ["a"]}))
    );
    store
        .put_workflow(&id, &json!({"steps": ["a", "b"]}))
        .unwrap();
    assert_eq!(
        store.get_workflow(&id).unwrap(),
        Some(json!({"steps": ["a", "b"]}))
    );
}

fn a_run_created_claimed_holds_token_one_and_reads_back_as_created_then_claimed(store: &dyn Store) {
    let run_id = unique("run");
    let t = now();
    let rec = run(&run_id, &unique("wf"), t);
    let lease = won(store
        .create_run_claimed(&rec, &owner("a"), t, 30.0)
        .unwrap());
    assert_eq!(lease.token, 1);
    assert_eq!(lease.owner, owner("a"));
    assert_eq!(lease.heartbeat_at, t);
    assert_eq!(lease.expires_at, t + 30.0);
    let stored = store.get_run(&run_id).unwrap();
    assert_eq!(stored.lease, Some(lease.clone()));
    assert_eq!(
        RunRecord {
            lease: None,
            ..stored
        },
        rec
    );
    // Held: a second claimant is refused, the holder's fenced writes go through.
    assert!(matches!(
        store.claim(&run_id, &owner("b"), t + 1.0, 30.0, None).unwrap(),
        Claim::Held(held) if held == lease
    ));
    store
        .append_fenced(&run_id, &[event("a", "completed")], lease.token)
        .unwrap();
    // The id is taken: refused, and the first run and its lease are unchanged.
    assert_eq!(
        store
            .create_run_claimed(&run(&run_id, "other", t + 2.0), &owner("b"), t + 2.0, 30.0)
            .unwrap_err(),
        StoreError::RunExists(run_id.clone())
    );
    assert_eq!(store.get_run(&run_id).unwrap().lease, Some(lease));
    assert_eq!(store.get_run(&run_id).unwrap().workflow_id, rec.workflow_id);
}

fn finishing_a_run_fenced_appends_sets_status_clears_control_and_releases(store: &dyn Store) {
    let run_id = new_run(store);
    let t = now();
    let lease = won(store.claim(&run_id, &owner("a"), t, 30.0, None).unwrap());
    store
        .append_fenced(&run_id, &[event("a", "running")], lease.token)
        .unwrap();
    store.set_control(&run_id, Some(Control::Cancel)).unwrap();
    let result = json!({"counter": 3});
    let released = store
        .finish_run_fenced(
            &run_id,
            &[event("a", "completed"), event("b", "completed")],
            "completed",
            t + 1.0,
            Some("why"),
            Some(&result),
            true,
            lease.token,
        )
        .unwrap();
    assert!(released);
    let events = store.events(&run_id, 0).unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(events[2].step_id, "b");
    let stored = store.get_run(&run_id).unwrap();
    assert_eq!(stored.status, "completed");
    assert_eq!(stored.updated_at, t + 1.0);
    assert_eq!(stored.error.as_deref(), Some("why"));
    assert_eq!(stored.result, Some(result));
    assert_eq!(stored.lease, None);
    assert_eq!(store.control(&run_id).unwrap(), None);
    // Released: the token fences nothing any more, and the run is free to claim.
    assert!(matches!(
        store.append_fenced(&run_id, &[event("z", "running")], lease.token),
        Err(StoreError::LeaseLost { .. })
    ));
    let next = won(store
        .claim(&run_id, &owner("b"), t + 2.0, 30.0, None)
        .unwrap());
    assert_eq!(next.token, lease.token + 1);
    // Without clear_control (a paused run), the control stays; no events, no result: kept.
    store.set_control(&run_id, Some(Control::Pause)).unwrap();
    assert!(store
        .finish_run_fenced(
            &run_id,
            &[],
            "paused",
            t + 3.0,
            None,
            None,
            false,
            next.token
        )
        .unwrap());
    let stored = store.get_run(&run_id).unwrap();
    assert_eq!(stored.status, "paused");
    assert_eq!(stored.result, Some(json!({"counter": 3})));
    assert_eq!(store.control(&run_id).unwrap(), Some(Control::Pause));
    assert_eq!(store.events(&run_id, 0).unwrap().len(), 3);
}

fn finishing_a_run_with_a_stale_token_is_refused_and_changes_nothing(store: &dyn Store) {
    let run_id = new_run(store);
    let t = now();
    let first = won(store.claim(&run_id, &owner("a"), t, 1.0, None).unwrap());
    let second = won(store
        .claim(&run_id, &owner("b"), t + 2.0, 30.0, None)
        .unwrap());
    store.set_control(&run_id, Some(Control::Pause)).unwrap();
    let before_events = store.events(&run_id, 0).unwrap();
    let before_run = store.get_run(&run_id).unwrap();
    assert_eq!(
        store
            .finish_run_fenced(
                &run_id,
                &[event("z", "completed")],
                "completed",
                t + 3.0,
                None,
                None,
                true,
                first.token,
            )
            .unwrap_err(),
        StoreError::LeaseLost {
            run_id: run_id.clone(),
            token: first.token,
            current: second.token,
        }
    );
    assert_eq!(store.events(&run_id, 0).unwrap(), before_events);
    assert_eq!(store.get_run(&run_id).unwrap(), before_run);
    assert_eq!(store.control(&run_id).unwrap(), Some(Control::Pause));
    assert!(matches!(
        store.finish_run_fenced("no-such-run", &[], "completed", t, None, None, true, 1),
        Err(StoreError::RunNotFound(_))
    ));
}

// --- the backends ---

/// A store, and the directory to delete once the test is done with it.
type Opened = (Arc<dyn Store>, Option<TempDir>);

/// The server's store. Its tests are ignored unless asked for, and asked for without a server
/// they fail: passing untested would be a lie.
fn redis_store() -> Opened {
    let url = std::env::var("BATTEN_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!(
            "no Redis server: set BATTEN_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0), or run \
             tests/cargo_test.sh, which starts one"
        )
    });
    (store::open(&url).unwrap(), None)
}

/// The PostgreSQL server's store (`BATTEN_TEST_POSTGRES_URL`), as [`redis_store`].
fn postgres_store() -> Opened {
    let url = std::env::var("BATTEN_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "no PostgreSQL server: set BATTEN_TEST_POSTGRES_URL (e.g. \
             postgresql://batten@127.0.0.1:5432/postgres), or run tests/cargo_test.sh, which starts one"
        )
    });
    (store::open(&url).unwrap(), None)
}

fn memory_store() -> Opened {
    (store::open("memory://").unwrap(), None)
}

fn sqlite_store() -> Opened {
    let dir = TempDir::new();
    let url = format!("sqlite:///{}", dir.0.join("runs.db").display());
    (store::open(&url).unwrap(), Some(dir))
}

macro_rules! conformance {
    ($($behaviour:ident),* $(,)?) => {
        mod memory { $( #[test] fn $behaviour() { super::check(super::memory_store, super::$behaviour) } )* }
        mod sqlite { $( #[test] fn $behaviour() { super::check(super::sqlite_store, super::$behaviour) } )* }
        mod redis { $(
            #[test]
            #[ignore = "needs a Redis server: tests/cargo_test.sh runs it"]
            fn $behaviour() { super::check(super::redis_store, super::$behaviour) }
        )* }
        mod postgres { $(
            #[test]
            #[ignore = "needs a PostgreSQL server: tests/cargo_test.sh runs it"]
            fn $behaviour() { super::check(super::postgres_store, super::$behaviour) }
        )* }
    };
}

fn check(open: fn() -> Opened, behaviour: fn(&dyn Store)) {
    let (store, _dir) = open();
    behaviour(&*store);
}

conformance!(
    a_created_run_reads_back_unchanged,
    creating_a_run_twice_is_run_exists_and_keeps_the_first,
    every_per_run_method_on_an_unknown_run_is_run_not_found,
    finish_status_sets_status_and_time_and_keeps_what_is_not_given,
    a_null_result_is_kept_apart_from_no_result,
    list_runs_is_newest_first_filtered_and_limited,
    a_value_nested_max_json_depth_levels_reads_back_from_every_record,
    append_numbers_events_from_one_consecutively_ignoring_the_given_seq,
    appending_no_events_assigns_no_seqs,
    every_event_field_reads_back_unchanged,
    events_after_a_seq_are_only_the_later_ones_in_order,
    each_run_numbers_its_own_events,
    run_ids_with_separators_do_not_collide,
    concurrent_appends_get_distinct_consecutive_seqs,
    a_control_is_set_replaced_and_cleared,
    a_step_is_decided_once,
    of_concurrent_decisions_on_one_step_exactly_one_wins,
    a_cache_entry_is_returned_until_it_expires,
    a_cache_entry_already_expired_is_not_returned,
    a_cache_entry_without_expiry_never_expires,
    a_workflow_definition_is_upserted,
    a_free_run_is_claimed_with_token_one_and_its_record_shows_the_lease,
    a_live_lease_refuses_a_second_claim_and_names_its_owner,
    an_expired_lease_is_taken_over_with_a_higher_token,
    take_over_of_the_named_token_wins_a_live_lease_and_only_that_one,
    a_heartbeat_extends_the_lease,
    a_write_with_a_stale_token_is_refused_and_changes_nothing,
    a_released_lease_frees_the_run_and_fences_its_old_holder,
    lease_methods_on_an_unknown_run_are_run_not_found,
    of_concurrent_claimants_exactly_one_wins,
    a_run_created_claimed_holds_token_one_and_reads_back_as_created_then_claimed,
    finishing_a_run_fenced_appends_sets_status_clears_control_and_releases,
    finishing_a_run_with_a_stale_token_is_refused_and_changes_nothing,
);
