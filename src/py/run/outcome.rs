//! What a finished run hands back to Python: its status, step results and final context.
use super::*;
use crate::py::results::RunOutcome;
use pyo3::types::PyString;

impl RunInner {
    pub(super) fn outcome(&self, py: Python<'_>) -> PyResult<RunOutcome> {
        let st = self.lock(py);
        let sched = &st.sched;
        let order = sched.completion_order();
        let ran = |s: &usize| sched.attempts(*s) > 0 && sched.state(*s) != StepState::Skipped;
        let steps = PyList::empty(py);
        for &s in order
            .iter()
            .filter(|s| ran(s))
            .chain(order.iter().filter(|s| !ran(s)))
        {
            steps.append(self.step_result(py, &st, s)?)?;
        }
        let status = crate::py::results::workflow_status_member(py, sched.outcome().as_str())?;
        let graph = &self.plan.graph;
        let final_output = graph
            .sinks()
            .iter()
            .rev()
            .find_map(|&s| st.recs[s].output.as_ref())
            .map_or_else(|| py.None(), |v| v.clone_ref(py));
        let error = match st.end.stop {
            Some(Stop::TimedOut(t)) => Some(format!("the workflow timed out after {t}s")),
            Some(Stop::Cancelled) => Some("the workflow run was cancelled".to_string()),
            None => order
                .iter()
                .find(|&&s| sched.state(s).is_failure())
                .and_then(|&s| {
                    let e = st.recs[s].error.as_ref()?;
                    Some(format!("{}: {}: {}", graph.id(s), e.type_name, e.message))
                }),
        };
        let end = st.timing.ended.unwrap_or_else(Instant::now);
        let elapsed_ms = end.duration_since(self.started).as_secs_f64() * 1000.0;
        let fin = st.views.final_view();
        let context = WorkflowContext {
            workflow_id: Arc::clone(&self.workflow_id),
            user_context: self.user_context.clone_ref(py),
            metadata: self.metadata.clone_ref(py),
            vars: owned_copy(py, &fin.vars),
            results: owned_copy(py, &fin.results),
            run_id: Some(Arc::clone(&self.run_id)),
            step_id: None,
            scope: None,
            owns_values: true,
        };
        Ok(RunOutcome {
            run_id: PyString::new(py, &self.run_id).unbind(),
            status,
            steps: steps.unbind(),
            final_output,
            error,
            elapsed_ms,
            context: Py::new(py, context)?,
        })
    }

    pub(super) fn step_result(
        &self,
        py: Python<'_>,
        st: &RunState,
        s: usize,
    ) -> PyResult<StepResult> {
        let rec = &st.recs[s];
        let state = st.sched.state(s);
        let traceback = match state {
            StepState::Completed => None,
            _ => rec.error.as_ref().and_then(|e| e.traceback.as_ref()),
        };
        // NOTE: most results have no metadata: theirs is made when first read (see
        // `StepResult::metadata`), not here (an empty dict made and freed per step).
        let metadata = std::sync::OnceLock::new();
        if rec.extra.is_some()
            || rec.abandoned
            || rec.killed
            || rec.cancel_ignored
            || traceback.is_some()
        {
            let m = match &rec.extra {
                Some(extra) => extra.bind(py).copy()?,
                None => PyDict::new(py),
            };
            if rec.abandoned {
                m.set_item("abandoned", true)?;
            }
            if rec.killed {
                m.set_item("killed", true)?;
            }
            if rec.cancel_ignored {
                m.set_item("cancel_ignored", true)?;
            }
            if let Some(tb) = traceback {
                m.set_item("traceback", tb)?;
            }
            let _ = metadata.set(m.unbind());
        }
        let ms = match (rec.first_start, rec.end) {
            (Some(a), Some(b)) => b.duration_since(a).as_secs_f64() * 1000.0,
            _ => 0.0,
        };
        let err = if state == StepState::Completed {
            None
        } else {
            rec.error.as_ref()
        };
        Ok(StepResult {
            step_id: self.plan.steps[s].pyid.clone_ref(py),
            status: status_member(py, state)?,
            output: rec
                .output
                .as_ref()
                .map_or_else(|| py.None(), |v| v.clone_ref(py)),
            error: err.map(|e| e.message.clone()),
            error_type: err.map(|e| e.type_name.clone()),
            exception: err.map(|e| e.exception.clone_ref(py)),
            attempts: match rec.attempts {
                Some(n) => n,
                None if state == StepState::Skipped => 0,
                None => st.sched.attempts(s),
            },
            execution_time_ms: ms,
            metadata,
            children: rec.children.as_ref().map(|c| c.clone_ref(py)),
            state,
        })
    }
}
