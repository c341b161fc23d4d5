//! A sync step attempt as a job for the worker pool (`threads::pool`), which knows nothing
//! about runs: a worker runs the attempt and then, inline, each sync step it readies.
use super::*;
use crate::py::threads::pool::{self, CallId, Pool, SyncJob, Worker};

/// One sync step attempt to run.
pub(super) struct Job {
    run: Arc<RunInner>,
    dispatch: Dispatch,
}

impl SyncJob for Job {
    fn run(self, py: Python<'_>, worker: &Worker) {
        self.run.run_sync_job(py, self.dispatch, worker);
    }
}

/// The pool every run's sync steps share.
/// NOTE: a pool of this concrete job (monomorphised) and one of boxed closures
/// (`Box<dyn FnOnce(Python) + Send>`, an allocation and an indirect call per queued job) measured
/// the same, release builds, 8 alternating rounds, medians (min): W1 2.09 (1.91) vs 1.99 (1.93)
/// µs/step, W3 0.757 (0.690) vs 0.757 (0.746) ms. A W1 chain queues one job per run (the worker
/// runs the rest inline) and W3 ~one per ready step, so neither can tell; the concrete job is
/// kept because it allocates nothing per job.
static POOL: Pool<Job> = Pool::new();

/// Abandons a sync call that is still running (see `Pool::abandon`): `Some((running, total))`
/// abandoned calls in the process if it was, `None` if it had already returned.
pub(super) fn abandon(call: &CallId) -> Option<(u64, u64)> {
    POOL.abandon(call)
}

/// `(running, total)` abandoned sync calls in this process (see `pool::abandoned_calls`).
pub fn abandoned_calls() -> (u64, u64) {
    pool::abandoned_calls()
}

impl RunInner {
    /// Queues sync attempt `d` on the worker pool. Its deadline starts now, so a step's timeout
    /// covers its wait for a worker (a call still queued at its deadline times out unstarted).
    pub(super) fn submit(self: &Arc<Self>, py: Python<'_>, d: Dispatch) {
        self.arm_sync_deadline(py, d);
        POOL.submit(Job {
            run: Arc::clone(self),
            dispatch: d,
        });
    }

    fn arm_sync_deadline(self: &Arc<Self>, py: Python<'_>, d: Dispatch) {
        if let Some(t) = self.plan.steps[d.step].timeout {
            let run = Arc::clone(self);
            let armed = timer::after(t, move || Python::attach(|py| run.sync_deadline(py, d)));
            if let Some(h) = armed {
                let old = self.lock(py).recs[d.step].timer.replace(Timer::Native(h));
                if let Some(old) = old {
                    old.cancel(py);
                }
            }
        }
    }

    /// A pool worker runs `d` and then, inline, each sync step it makes ready.
    fn run_sync_job(self: &Arc<Self>, py: Python<'_>, d: Dispatch, worker: &Worker) {
        let mut next = Some(d);
        let mut queued = true; // `d`'s deadline was armed by `submit`
        while let Some(d) = next.take() {
            let call = {
                // Under the run's lock: the deadline either finds the call started (and may
                // abandon it) or not started (and the call never starts).
                let mut st = self.lock(py);
                if !st.sched.is_live(d) {
                    break;
                }
                let call = POOL.begin_call(worker);
                st.recs[d.step].call = Some(call.clone());
                call
            };
            if !queued {
                self.arm_sync_deadline(py, d);
            }
            queued = false;
            let inline = &self.plan.steps[d.step].inline;
            let result = if inline.timed() {
                let started = Instant::now();
                let result = self.invoke(py, d.step);
                inline.measured(started.elapsed());
                result
            } else {
                self.invoke(py, d.step)
            };
            let abandoned = POOL.end_call(py, worker);
            {
                // Only this call's id: an abandoned attempt may return after a retry started.
                let mut st = self.lock(py);
                let rec = &mut st.recs[d.step];
                if rec.call.as_ref().is_some_and(|c| c.is(&call)) {
                    rec.call = None;
                }
            }
            let outcome = self.sync_outcome(py, d, result);
            self.record(py, d, outcome, Where::Worker);
            next = self.pump(py, Where::Worker);
            if abandoned {
                // This thread exits now (see `Pool::worker`): the next step goes to the pool.
                if let Some(n) = next.take() {
                    self.submit(py, n);
                }
            }
        }
    }
}
