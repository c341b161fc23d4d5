//! The run's step state machine: which steps are ready, which hold a concurrency slot, and what a
//! success, skip, failure or cancellation does to the rest of the DAG.
//!
//! It is pure bookkeeping (no clocks, no threads, no Python): the binding layer owns one per run
//! behind a lock and drives it from whichever thread just finished a step, so a chain of steps
//! never pays a thread hop to learn what runs next (DESIGN §3: a hop costs 30–70 µs, a lookup here
//! well under 1 µs).
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::graph::Graph;

/// The lifecycle of one step within one run (DESIGN §4 "Statuses").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepState {
    /// Waiting for its dependencies.
    Pending,
    /// An attempt is in flight.
    Running,
    /// An attempt failed and another one is scheduled after a backoff delay.
    Retrying,
    /// Finished with an output.
    Completed,
    /// Failed after its last attempt (or with a non-retryable error).
    Failed,
    /// Its last attempt ran past its timeout.
    Timeout,
    /// A condition was false; dependents still run.
    Skipped,
    /// A (transitive) dependency failed, so it never ran.
    Blocked,
    /// The run was cancelled or timed out before the step finished.
    Cancelled,
    /// A human approval step waiting for its decision (a durable run ended
    /// `WAITING_APPROVAL`). The scheduler never produces it: the durable layer reports it for
    /// the step that asked for approval.
    WaitingApproval,
}

impl StepState {
    /// The lower-case name used by the Python `StepStatus` enum.
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Pending => "pending",
            StepState::Running => "running",
            StepState::Retrying => "retrying",
            StepState::Completed => "completed",
            StepState::Failed => "failed",
            StepState::Timeout => "timeout",
            StepState::Skipped => "skipped",
            StepState::Blocked => "blocked",
            StepState::Cancelled => "cancelled",
            StepState::WaitingApproval => "waiting_approval",
        }
    }

    /// Every state, in declaration order.
    pub const ALL: [StepState; 10] = [
        StepState::Pending,
        StepState::Running,
        StepState::Retrying,
        StepState::Completed,
        StepState::Failed,
        StepState::Timeout,
        StepState::Skipped,
        StepState::Blocked,
        StepState::Cancelled,
        StepState::WaitingApproval,
    ];

    /// The state named `text` (an [`as_str`](Self::as_str) name, exactly), or `None`: a store
    /// record with any other status is corrupt.
    pub fn parse(text: &str) -> Option<StepState> {
        StepState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// True once the step can no longer change state.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            StepState::Pending | StepState::Running | StepState::Retrying
        )
    }

    /// True for the states that make the run fail.
    pub fn is_failure(self) -> bool {
        matches!(self, StepState::Failed | StepState::Timeout)
    }
}

/// How a run ended, derived from its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// Every step completed or was skipped.
    Completed,
    /// At least one step failed or timed out (or the run timed out).
    Failed,
    /// The run was cancelled.
    Cancelled,
    /// The run was paused: running steps finished, the rest never started (see
    /// `Scheduler::pause`); a durable run resumes from here.
    Paused,
}

impl RunEnd {
    /// The run status's value (`batten.WorkflowStatus`): `"completed"`, `"failed"`,
    /// `"cancelled"` or `"paused"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunEnd::Completed => "completed",
            RunEnd::Failed => "failed",
            RunEnd::Cancelled => "cancelled",
            RunEnd::Paused => "paused",
        }
    }
}

/// How a run reacts to its steps' outcomes: the failure policies of JAF's `ParallelStep`
/// (`fail_fast`, `continue_on_partial_failure` with a minimum success count, `wait_for_all=False`)
/// and seed 002's workflow-level `continue_on_error`. The default is DESIGN §4's contract: a
/// failure blocks only its dependents and fails the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunPolicy {
    /// The first failure ends the run: running and pending steps are cancelled ("fail_fast").
    pub settle_on_failure: bool,
    /// The first success ends the run: the others are cancelled (`wait_for_all=False`).
    pub settle_on_success: bool,
    /// The run completes when at least this many steps completed, whatever else failed
    /// ("continue_on_partial_failure"); `None`: every step must complete or be skipped.
    pub min_success: Option<usize>,
    /// A failed step releases its dependents (they run without its output) instead of blocking
    /// them, and failures do not fail the run (seed 002's `continue_on_error`).
    pub continue_on_error: bool,
}

/// One attempt to start: the step index and its 1-based attempt number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dispatch {
    /// Declaration index of the step.
    pub step: usize,
    /// 1-based attempt number; callbacks carry it so a late answer from an abandoned attempt is
    /// recognised as stale.
    pub attempt: u32,
}

/// Per-run scheduling state. See the module docs.
pub struct Scheduler {
    graph: Arc<Graph>,
    state: Vec<StepState>,
    attempts: Vec<u32>,
    unfinished_deps: Vec<u32>,
    ready: VecDeque<usize>,
    in_flight: usize,
    limit: usize,
    terminal: usize,
    order: Vec<usize>,
    cancelled: bool,
    timed_out: bool,
    settled: bool,
    /// `pause` ran: nothing new starts; once nothing is in flight the rest ends `Cancelled`.
    paused: bool,
    /// Steps that `pause` ended without running them.
    paused_unrun: usize,
    policy: RunPolicy,
    /// Per step, with a finite `limit` only: when it became ready and `saturated` then (see
    /// `slot_wait`). Empty when the run is unbounded, so nothing is timed.
    ready_since: Vec<Option<(Instant, u64)>>,
    /// Per step, with a finite `limit` only: when it became ready, if `next_ready` took it
    /// after the limit held it back (until `slot_wait` reports it).
    slot_waited: Vec<Option<Instant>>,
    /// How often `next_ready` held a ready step back because every slot was taken.
    saturated: u64,
}

impl Scheduler {
    /// A scheduler with every root ready. `limit` bounds the steps holding a slot (running or
    /// waiting to retry); `None` means unbounded.
    pub fn new(graph: Arc<Graph>, limit: Option<usize>) -> Self {
        Self::with_policy(graph, limit, RunPolicy::default())
    }

    /// As `new`, under `policy` (see `RunPolicy`).
    pub fn with_policy(graph: Arc<Graph>, limit: Option<usize>, policy: RunPolicy) -> Self {
        let n = graph.len();
        let unfinished_deps: Vec<u32> = (0..n).map(|i| graph.deps(i).len() as u32).collect();
        let ready: VecDeque<usize> = graph.roots().iter().copied().collect();
        let limit = limit.unwrap_or(usize::MAX).max(1);
        let mut ready_since = Vec::new();
        let mut slot_waited = Vec::new();
        if limit != usize::MAX {
            ready_since = vec![None; n];
            slot_waited = vec![None; n];
            let now = Instant::now();
            for &r in &ready {
                ready_since[r] = Some((now, 0));
            }
        }
        Scheduler {
            state: vec![StepState::Pending; n],
            attempts: vec![0; n],
            unfinished_deps,
            ready,
            in_flight: 0,
            limit,
            terminal: 0,
            order: Vec::with_capacity(n),
            cancelled: false,
            timed_out: false,
            settled: false,
            paused: false,
            paused_unrun: 0,
            policy,
            graph,
            ready_since,
            slot_waited,
            saturated: 0,
        }
    }

    /// The graph this run follows.
    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    /// Takes the next ready step if a concurrency slot is free, marking it running.
    pub fn next_ready(&mut self) -> Option<Dispatch> {
        if self.paused {
            if self.in_flight == 0 && !self.is_done() {
                let before = self.terminal;
                self.end_unfinished(StepState::Cancelled);
                self.paused_unrun += self.terminal - before;
            }
            return None;
        }
        if self.cancelled || self.timed_out || self.settled {
            return None;
        }
        if self.in_flight >= self.limit {
            if !self.ready.is_empty() {
                self.saturated += 1;
            }
            return None;
        }
        let step = self.ready.pop_front()?;
        if let Some(Some((since, seen))) = self.ready_since.get_mut(step).map(Option::take) {
            if self.saturated > seen {
                self.slot_waited[step] = Some(since);
            }
        }
        self.in_flight += 1;
        self.state[step] = StepState::Running;
        self.attempts[step] = 1;
        Some(Dispatch { step, attempt: 1 })
    }

    /// Marks `steps` completed without running them: they finished in an earlier process and a
    /// resumed run restores their outputs from its checkpoint store. Call before the first
    /// `next_ready`; dependents whose every dependency is restored become ready. A step that is
    /// not pending is left alone.
    pub fn restore(&mut self, steps: &[usize]) {
        let mut any = false;
        for &step in steps {
            if self.state[step] == StepState::Pending {
                self.finish(step, StepState::Completed);
                self.release_dependents(step);
                any = true;
            }
        }
        if any {
            let state = &self.state;
            self.ready.retain(|&s| state[s] == StepState::Pending);
        }
    }

    /// Pauses the run: nothing new starts (not even a retry), running steps finish, and once
    /// none is in flight every step that has not run ends `Cancelled` and the run's outcome is
    /// `Paused` (seed 001's `pause`). Steps waiting to retry end `Cancelled` now and are
    /// returned, so the caller can drop their timers.
    pub fn pause(&mut self) -> Vec<usize> {
        if self.paused || self.cancelled || self.timed_out || self.settled {
            return Vec::new();
        }
        self.paused = true;
        let retrying: Vec<usize> = (0..self.state.len())
            .filter(|&s| self.state[s] == StepState::Retrying)
            .collect();
        for &s in &retrying {
            self.finish(s, StepState::Cancelled);
            self.paused_unrun += 1;
        }
        retrying
    }

    /// True once `pause` ran.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// True when `d` is still the live attempt of a running step (not abandoned, not stale).
    pub fn is_live(&self, d: Dispatch) -> bool {
        self.state[d.step] == StepState::Running && self.attempts[d.step] == d.attempt
    }

    /// Marks a running step as waiting for its next attempt; it keeps its slot.
    pub fn retrying(&mut self, step: usize) {
        debug_assert_eq!(self.state[step], StepState::Running);
        self.state[step] = StepState::Retrying;
    }

    /// Starts the next attempt of a retrying step; `None` when the run was cancelled meanwhile.
    pub fn start_retry(&mut self, step: usize) -> Option<Dispatch> {
        if self.state[step] != StepState::Retrying {
            return None;
        }
        self.state[step] = StepState::Running;
        self.attempts[step] += 1;
        Some(Dispatch {
            step,
            attempt: self.attempts[step],
        })
    }

    fn finish(&mut self, step: usize, state: StepState) {
        debug_assert!(state.is_terminal());
        if matches!(self.state[step], StepState::Running | StepState::Retrying) {
            self.in_flight -= 1;
        }
        self.state[step] = state;
        self.terminal += 1;
        self.order.push(step);
    }

    fn release_dependents(&mut self, step: usize) {
        let graph = Arc::clone(&self.graph);
        for &d in graph.dependents(step) {
            self.unfinished_deps[d] -= 1;
            if self.unfinished_deps[d] == 0 && self.state[d] == StepState::Pending {
                self.ready.push_back(d);
                if let Some(slot) = self.ready_since.get_mut(d) {
                    *slot = Some((Instant::now(), self.saturated));
                }
            }
        }
    }

    /// How long step `step`, just taken by `next_ready`, waited for a concurrency slot: from
    /// becoming ready to now, when the run's `limit` held it back at least once; `None` when it
    /// never waited for a slot (or the run is unbounded). Asking again gives `None`.
    pub fn slot_wait(&mut self, step: usize, now: Instant) -> Option<Duration> {
        let since = self.slot_waited.get_mut(step)?.take()?;
        Some(now.saturating_duration_since(since))
    }

    /// Records a success; dependents whose last dependency this was become ready.
    pub fn succeed(&mut self, step: usize) {
        self.finish(step, StepState::Completed);
        self.release_dependents(step);
    }

    /// Records a skip (a false condition); dependents proceed as after a success.
    pub fn skip(&mut self, step: usize) {
        self.finish(step, StepState::Skipped);
        self.release_dependents(step);
    }

    /// Records a failure (`Failed` or `Timeout`); every pending descendant becomes `Blocked`
    /// and is returned. Independent steps are untouched. Under `continue_on_error` the
    /// dependents proceed as after a skip and nothing is blocked.
    pub fn fail(&mut self, step: usize, state: StepState) -> Vec<usize> {
        debug_assert!(state.is_failure());
        self.finish(step, state);
        if self.policy.continue_on_error {
            self.release_dependents(step);
            return Vec::new();
        }
        let mut blocked = Vec::new();
        for d in self.graph.descendants(step) {
            if self.state[d] == StepState::Pending {
                self.finish(d, StepState::Blocked);
                blocked.push(d);
            }
        }
        blocked
    }

    /// Stops the run: every step not yet terminal ends as `running_to` if it had started
    /// (`Cancelled` or `Timeout`) or `Cancelled` if not. Returns the steps that were running or
    /// retrying, so the caller can stop their work.
    pub fn stop(&mut self, running_to: StepState, timed_out: bool) -> Vec<usize> {
        if timed_out {
            self.timed_out = true;
        } else {
            self.cancelled = true;
        }
        self.end_unfinished(running_to)
    }

    /// Ends every step not yet terminal: running or retrying ones as `running_to`, pending ones
    /// as `Cancelled`. Returns the ones that were running or retrying.
    fn end_unfinished(&mut self, running_to: StepState) -> Vec<usize> {
        self.ready.clear();
        let mut running = Vec::new();
        for step in 0..self.state.len() {
            match self.state[step] {
                StepState::Running | StepState::Retrying => {
                    running.push(step);
                    self.finish(step, running_to);
                }
                StepState::Pending => self.finish(step, StepState::Cancelled),
                _ => {}
            }
        }
        running
    }

    /// The policy this run follows.
    pub fn policy(&self) -> RunPolicy {
        self.policy
    }

    /// True when `state` (the step just finished) settles the run under its policy: a failure
    /// under `settle_on_failure`, a success under `settle_on_success`.
    pub fn settles(&self, state: StepState) -> bool {
        !self.settled
            && ((state.is_failure() && self.policy.settle_on_failure)
                || (state == StepState::Completed && self.policy.settle_on_success))
    }

    /// Ends the run early because its policy is satisfied (see `settles`): nothing new starts,
    /// and every step not yet terminal ends `Cancelled`. Returns the steps that were running or
    /// retrying, so the caller can stop their work. The outcome still follows the policy.
    pub fn settle(&mut self) -> Vec<usize> {
        self.settled = true;
        self.end_unfinished(StepState::Cancelled)
    }

    /// True once `settle` ran.
    pub fn is_settled(&self) -> bool {
        self.settled
    }

    /// The state of one step.
    pub fn state(&self, step: usize) -> StepState {
        self.state[step]
    }

    /// Attempts started so far for one step.
    pub fn attempts(&self, step: usize) -> u32 {
        self.attempts[step]
    }

    /// Steps in the order they reached a terminal state.
    pub fn completion_order(&self) -> &[usize] {
        &self.order
    }

    /// True once every step is terminal.
    pub fn is_done(&self) -> bool {
        self.terminal == self.state.len()
    }

    /// Steps currently holding a concurrency slot.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The run's outcome so far (meaningful once `is_done`).
    pub fn outcome(&self) -> RunEnd {
        if self.cancelled {
            return RunEnd::Cancelled;
        }
        if self.timed_out {
            return RunEnd::Failed;
        }
        if self.paused_unrun > 0 {
            return RunEnd::Paused;
        }
        let ok = match self.policy.min_success {
            Some(k) => {
                self.state
                    .iter()
                    .filter(|s| **s == StepState::Completed)
                    .count()
                    >= k
            }
            None if self.policy.settle_on_success => self.state.contains(&StepState::Completed),
            None => self.policy.continue_on_error || !self.state.iter().any(|s| s.is_failure()),
        };
        if ok {
            RunEnd::Completed
        } else {
            RunEnd::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::graph::StepDecl;

    fn graph(edges: &[(&str, &[&str])]) -> Arc<Graph> {
        let decls = edges
            .iter()
            .map(|(id, deps)| StepDecl {
                id: id.to_string(),
                deps: deps.iter().map(|d| d.to_string()).collect(),
                refs: vec![],
            })
            .collect();
        Arc::new(Graph::build(decls).unwrap())
    }

    fn drain(s: &mut Scheduler) -> Vec<usize> {
        std::iter::from_fn(|| s.next_ready())
            .map(|d| d.step)
            .collect()
    }

    #[test]
    fn slot_wait_is_reported_only_for_steps_the_limit_held_back() {
        let g = graph(&[("a", &[]), ("b", &[]), ("c", &[])]);
        let mut s = Scheduler::new(Arc::clone(&g), Some(1));
        let a = s.next_ready().unwrap();
        assert_eq!(s.next_ready(), None, "one slot, taken by a");
        let later = Instant::now() + Duration::from_millis(5);
        assert_eq!(s.slot_wait(a.step, later), None, "a never waited");
        s.succeed(a.step);
        let b = s.next_ready().unwrap();
        let waited = s.slot_wait(b.step, later).expect("b waited for a's slot");
        assert!(waited >= Duration::from_millis(5));
        assert_eq!(s.slot_wait(b.step, later), None, "reported once");
        let mut free = Scheduler::new(g, None);
        let d = free.next_ready().unwrap();
        assert_eq!(
            free.slot_wait(d.step, later),
            None,
            "unbounded runs time nothing"
        );
    }

    #[test]
    fn a_state_parses_from_its_name_and_nothing_else_does() {
        for state in StepState::ALL {
            assert_eq!(StepState::parse(state.as_str()), Some(state));
        }
        for text in ["bogus", "COMPLETED", "", " completed"] {
            assert_eq!(StepState::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn roots_are_ready_and_dependents_wait() {
        let mut s = Scheduler::new(graph(&[("a", &[]), ("b", &[]), ("c", &["a", "b"])]), None);
        assert_eq!(drain(&mut s), vec![0, 1]);
        s.succeed(0);
        assert_eq!(drain(&mut s), Vec::<usize>::new());
        s.succeed(1);
        assert_eq!(drain(&mut s), vec![2]);
        s.succeed(2);
        assert!(s.is_done());
        assert_eq!(s.outcome(), RunEnd::Completed);
        assert_eq!(s.completion_order(), &[0, 1, 2]);
    }

    #[test]
    fn failed_step_blocks_only_its_dependents() {
        let mut s = Scheduler::new(
            graph(&[
                ("a", &[]),
                ("b", &["a"]),
                ("c", &["b"]),
                ("x", &[]),
                ("y", &["x"]),
            ]),
            None,
        );
        assert_eq!(drain(&mut s), vec![0, 3]);
        assert_eq!(s.fail(0, StepState::Failed), vec![1, 2]);
        s.succeed(3);
        assert_eq!(drain(&mut s), vec![4]);
        s.succeed(4);
        assert!(s.is_done());
        assert_eq!(s.state(2), StepState::Blocked);
        assert_eq!(s.outcome(), RunEnd::Failed);
    }

    #[test]
    fn skipped_step_releases_its_dependents() {
        let mut s = Scheduler::new(graph(&[("a", &[]), ("b", &["a"])]), None);
        drain(&mut s);
        s.skip(0);
        assert_eq!(drain(&mut s), vec![1]);
    }

    #[test]
    fn limit_bounds_steps_in_flight_including_retrying() {
        let mut s = Scheduler::new(graph(&[("a", &[]), ("b", &[]), ("c", &[])]), Some(2));
        assert_eq!(drain(&mut s), vec![0, 1]);
        s.retrying(0);
        assert_eq!(drain(&mut s), Vec::<usize>::new());
        assert_eq!(
            s.start_retry(0),
            Some(Dispatch {
                step: 0,
                attempt: 2
            })
        );
        s.succeed(0);
        assert_eq!(drain(&mut s), vec![2]);
        assert_eq!(s.in_flight(), 2);
    }

    #[test]
    fn stale_attempts_are_not_live() {
        let mut s = Scheduler::new(graph(&[("a", &[])]), None);
        let first = s.next_ready().unwrap();
        s.retrying(0);
        let second = s.start_retry(0).unwrap();
        assert!(!s.is_live(first));
        assert!(s.is_live(second));
    }

    #[test]
    fn stop_cancels_pending_and_reports_running() {
        let mut s = Scheduler::new(graph(&[("a", &[]), ("b", &["a"]), ("c", &[])]), Some(1));
        drain(&mut s);
        assert_eq!(s.stop(StepState::Cancelled, false), vec![0]);
        assert!(s.is_done());
        assert_eq!(s.state(1), StepState::Cancelled);
        assert_eq!(s.state(2), StepState::Cancelled);
        assert_eq!(s.outcome(), RunEnd::Cancelled);
        assert_eq!(s.start_retry(0), None);
    }

    #[test]
    fn run_timeout_marks_running_steps_timeout_and_run_failed() {
        let mut s = Scheduler::new(graph(&[("a", &[]), ("b", &["a"])]), None);
        drain(&mut s);
        s.stop(StepState::Timeout, true);
        assert_eq!(s.state(0), StepState::Timeout);
        assert_eq!(s.state(1), StepState::Cancelled);
        assert_eq!(s.outcome(), RunEnd::Failed);
    }

    fn policy(f: impl FnOnce(&mut RunPolicy)) -> RunPolicy {
        let mut p = RunPolicy::default();
        f(&mut p);
        p
    }

    #[test]
    fn fail_fast_settles_on_the_first_failure() {
        let g = graph(&[("a", &[]), ("b", &[]), ("c", &["a"])]);
        let mut s = Scheduler::with_policy(g, None, policy(|p| p.settle_on_failure = true));
        assert_eq!(drain(&mut s), vec![0, 1]);
        s.fail(1, StepState::Failed);
        assert!(s.settles(StepState::Failed));
        assert!(!s.settles(StepState::Completed));
        assert_eq!(s.settle(), vec![0]);
        assert!(s.is_done());
        assert_eq!(s.state(0), StepState::Cancelled);
        assert_eq!(s.state(2), StepState::Cancelled);
        assert_eq!(drain(&mut s), Vec::<usize>::new());
        assert_eq!(s.outcome(), RunEnd::Failed);
        assert!(!s.settles(StepState::Failed), "settles once");
    }

    #[test]
    fn first_success_settles_and_completes() {
        let g = graph(&[("a", &[]), ("b", &[]), ("c", &[])]);
        let mut s = Scheduler::with_policy(g, None, policy(|p| p.settle_on_success = true));
        drain(&mut s);
        s.fail(0, StepState::Failed);
        assert!(!s.settles(StepState::Failed));
        s.succeed(2);
        assert!(s.settles(StepState::Completed));
        assert_eq!(s.settle(), vec![1]);
        assert_eq!(s.outcome(), RunEnd::Completed);
    }

    #[test]
    fn first_success_with_no_success_fails() {
        let g = graph(&[("a", &[]), ("b", &[])]);
        let mut s = Scheduler::with_policy(g, None, policy(|p| p.settle_on_success = true));
        drain(&mut s);
        s.fail(0, StepState::Failed);
        s.fail(1, StepState::Timeout);
        assert!(s.is_done());
        assert_eq!(s.outcome(), RunEnd::Failed);
    }

    #[test]
    fn minimum_success_count_decides_the_outcome() {
        for (k, want) in [(2, RunEnd::Completed), (3, RunEnd::Failed)] {
            let g = graph(&[("a", &[]), ("b", &[]), ("c", &[])]);
            let mut s = Scheduler::with_policy(g, None, policy(|p| p.min_success = Some(k)));
            drain(&mut s);
            s.succeed(0);
            s.fail(1, StepState::Failed);
            s.succeed(2);
            assert_eq!(s.outcome(), want, "min_success {k}");
        }
    }

    #[test]
    fn continue_on_error_releases_dependents_and_completes() {
        let g = graph(&[("a", &[]), ("b", &["a"])]);
        let mut s = Scheduler::with_policy(g, None, policy(|p| p.continue_on_error = true));
        assert_eq!(drain(&mut s), vec![0]);
        assert_eq!(s.fail(0, StepState::Failed), Vec::<usize>::new());
        assert_eq!(drain(&mut s), vec![1]);
        s.succeed(1);
        assert_eq!(s.outcome(), RunEnd::Completed);
    }

    #[test]
    fn restored_steps_do_not_run_and_release_their_dependents() {
        let g = graph(&[("a", &[]), ("b", &["a"]), ("c", &[]), ("d", &["b", "c"])]);
        let mut s = Scheduler::new(g, None);
        s.restore(&[0, 1]);
        assert_eq!(s.state(1), StepState::Completed);
        assert_eq!(drain(&mut s), vec![2]);
        s.succeed(2);
        assert_eq!(drain(&mut s), vec![3]);
        s.succeed(3);
        assert!(s.is_done());
        assert_eq!(s.outcome(), RunEnd::Completed);
        assert_eq!(s.attempts(0), 0, "a restored step never started here");
    }

    #[test]
    fn pause_lets_running_steps_finish_and_starts_nothing_new() {
        let g = graph(&[("a", &[]), ("b", &[]), ("c", &["a"]), ("d", &["b"])]);
        let mut s = Scheduler::new(g, None);
        assert_eq!(drain(&mut s), vec![0, 1]);
        s.retrying(1);
        assert_eq!(s.pause(), vec![1], "a step waiting to retry ends now");
        assert_eq!(s.start_retry(1), None);
        s.succeed(0);
        assert_eq!(s.next_ready(), None, "c is ready but the run is paused");
        assert!(s.is_done(), "nothing in flight: the rest ended");
        assert_eq!(s.state(2), StepState::Cancelled);
        assert_eq!(s.state(0), StepState::Completed);
        assert_eq!(s.outcome(), RunEnd::Paused);
    }

    #[test]
    fn a_pause_after_everything_ran_still_completes() {
        let g = graph(&[("a", &[])]);
        let mut s = Scheduler::new(g, None);
        assert_eq!(drain(&mut s), vec![0]);
        s.pause();
        s.succeed(0);
        assert_eq!(s.next_ready(), None);
        assert_eq!(s.outcome(), RunEnd::Completed);
    }
}
