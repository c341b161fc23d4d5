//! `Plan`: a validated, compiled workflow (graph + per-step call specs), built once and started
//! any number of times.
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::engine::error::DefinitionError;
use crate::engine::graph::{Graph, StepDecl};
use crate::engine::retry::RetryPolicy;
use crate::engine::scheduler::RunPolicy;
use crate::py::args;
use crate::py::errors::definition_error;
use crate::py::traffic::{Controls, PyBreaker, PyRateLimiter};

/// A step's `(rate_limiters, breakers)` from Python.
type ControlPair<'py> = (Vec<Bound<'py, PyRateLimiter>>, Vec<Bound<'py, PyBreaker>>);

/// The traffic controls `controls` (`{step_id: (rate_limiters, breakers)}`) gives step `id`.
/// Looked up per step rather than extracted as a map of `String` keys up front, so a step id
/// that is not valid UTF-8 is reported by `SpecArgs::read` naming it, not by pyo3.
fn controls_of(controls: Option<&Bound<'_, PyDict>>, id: &str) -> PyResult<Controls> {
    let Some(found) = controls.map(|c| c.get_item(id)).transpose()?.flatten() else {
        return Ok(Controls::default());
    };
    let (limiters, breakers): ControlPair<'_> = found.extract().map_err(|_| {
        crate::py::errors::WorkflowDefinitionError::new_err(format!(
            "step '{id}': traffic controls must be (rate limiters, circuit breakers), got {}",
            args::shown(&found)
        ))
    })?;
    Ok(Controls::from_py(limiters, breakers))
}

/// How to call one step, decided once in Python at step creation.
pub struct StepSpec {
    pub id: Arc<str>,
    /// `id` as a Python str, made once per plan: every `StepResult` of every run shares it.
    pub pyid: Py<pyo3::types::PyString>,
    /// `invoke()` or `invoke(context=ctx)`: returns the output, or a coroutine for async steps.
    pub invoke: Py<PyAny>,
    /// A fan-out item, passed to `invoke` as its one positional argument (`Plan.fan_out`).
    pub arg: Option<Py<PyAny>>,
    pub is_async: bool,
    pub wants_ctx: bool,
    pub timeout: Option<Duration>,
    pub policy: RetryPolicy,
    pub retry_on: Option<Py<PyTuple>>,
    pub non_retryable: Option<Py<PyTuple>>,
    pub conditions: Vec<Py<PyAny>>,
    /// Rate limits and circuit breakers checked before each attempt starts.
    pub controls: Controls,
    /// Whether a sync step may run on the event loop's thread (see `Inline`), shared by every
    /// run of this plan.
    pub inline: Inline,
}

impl StepSpec {
    /// Conditions and context-taking steps need a `WorkflowContext` built for them.
    pub fn needs_context(&self) -> bool {
        self.wants_ctx || !self.conditions.is_empty()
    }
}

/// Where a sync step's call may run, learnt across the runs of one plan (a workflow's cached
/// plan keeps it): the adaptive rule of issue 18.
///
/// A sync step starts `MEASURING`: its calls go to the worker pool, which times each one (wall
/// time). After `MEASURED_CALLS` calls in a row that each returned within `INLINE_BOUND`, it
/// turns `INLINE`: the loop thread calls it itself, with no hop to a worker and back (~35 µs
/// each way on 2 cores, more than a trivial step costs). An inline call over the bound is a
/// strike: the step goes back to `MEASURING` (the pool) and must earn its place again; at
/// `MAX_STRIKES` it stays on the pool for good (`POOL`). `with_inline(True)` is `FORCED` (always
/// the loop thread, never demoted); `with_inline(False)`, a timeout (only a worker's call can be
/// abandoned at its deadline) and fan-out items (meant to overlap) are `POOL` from the start.
/// NOTE: a strike is a call that blocked the loop for its whole length: the rule cannot know a
/// call is slow before it returns. So a step that turns slow blocks the loop at most
/// `MAX_STRIKES` times, each after `MEASURED_CALLS` fast calls; `FORGIVE_AFTER` fast calls on
/// the loop forgive one strike, so a step slow less often than that keeps coming back (and
/// blocks the loop once per slow call). Strikes rather than "once slow,
/// pool for good": a single pause of the whole process (a GC pass, the machine preempting the
/// thread) would otherwise send a trivial step to the pool for the rest of a service's life.
pub struct Inline {
    mode: AtomicU8,
    fast_calls: AtomicU32,
    strikes: AtomicU32,
}

const MEASURING: u8 = 0;
const INLINE: u8 = 1;
const POOL: u8 = 2;
const FORCED: u8 = 3;

/// The longest call that still counts as fast (wall time, on whichever thread made it).
pub const INLINE_BOUND: Duration = Duration::from_millis(1);
/// Fast calls, in a row, before a step runs on the loop thread.
pub const MEASURED_CALLS: u32 = 8;
/// Slow calls on the loop thread after which a step stays on the pool for good.
pub const MAX_STRIKES: u32 = 3;
/// Fast calls on the loop thread that forgive one strike.
/// NOTE: without it, on the 2-core benchmark machine under a load of ~8, three preemptions of
/// the loop thread in the middle of a 2 µs call (each > 1 ms of wall time) over a W5 run of
/// ~30,000 calls sent its steps to the pool for good (medians 2-3x the warm ones).
pub const FORGIVE_AFTER: u32 = 1000;

impl Inline {
    /// `forced`: the step's `with_inline` (`None`: adaptive); `pool`: the step can never
    /// run on the loop thread (async, a timeout, a fan-out item).
    pub fn new(forced: Option<bool>, pool: bool) -> Self {
        let mode = match forced {
            _ if pool => POOL,
            Some(false) => POOL,
            Some(true) => FORCED,
            None => MEASURING,
        };
        Inline {
            mode: AtomicU8::new(mode),
            fast_calls: AtomicU32::new(0),
            strikes: AtomicU32::new(0),
        }
    }

    /// Whether the loop thread calls the step itself.
    pub fn on_loop(&self) -> bool {
        matches!(self.mode.load(Ordering::Relaxed), INLINE | FORCED)
    }

    /// Whether the step's `with_inline(True)` puts it on the loop thread whatever it costs.
    pub fn forced(&self) -> bool {
        self.mode.load(Ordering::Relaxed) == FORCED
    }

    /// Whether calls still need timing (`MEASURING` or `INLINE`).
    pub fn timed(&self) -> bool {
        matches!(self.mode.load(Ordering::Relaxed), MEASURING | INLINE)
    }

    /// One more fast call while `MEASURING`: the `MEASURED_CALLS`th in a row turns it `INLINE`.
    fn fast_while_measuring(&self) {
        if self.fast_calls.fetch_add(1, Ordering::Relaxed) + 1 >= MEASURED_CALLS {
            // Only MEASURING turns INLINE (not over a concurrent demotion).
            let _ =
                self.mode
                    .compare_exchange(MEASURING, INLINE, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Notes one call's wall time (measured on a worker or on the loop thread).
    pub fn measured(&self, took: Duration) {
        let fast = took <= INLINE_BOUND;
        match self.mode.load(Ordering::Relaxed) {
            MEASURING if fast => self.fast_while_measuring(),
            MEASURING => self.fast_calls.store(0, Ordering::Relaxed),
            // A slow call while INLINE (made on the loop, or on a worker that readied it).
            INLINE if !fast => {
                self.fast_calls.store(0, Ordering::Relaxed);
                let strikes = self.strikes.fetch_add(1, Ordering::Relaxed) + 1;
                let to = if strikes >= MAX_STRIKES {
                    POOL
                } else {
                    MEASURING
                };
                self.mode.store(to, Ordering::Relaxed);
            }
            INLINE => {
                // `fast_calls` went past MEASURED_CALLS while measuring; counts on from there.
                let n = self.fast_calls.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= FORGIVE_AFTER {
                    self.fast_calls.store(MEASURED_CALLS, Ordering::Relaxed);
                    let _ = self
                        .strikes
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| s.checked_sub(1));
                }
            }
            _ => {}
        }
    }
}

pub struct PlanInner {
    pub workflow_id: String,
    pub graph: Arc<Graph>,
    pub steps: Vec<StepSpec>,
    pub max_parallel: Option<usize>,
    pub policy: RunPolicy,
    /// Retries allowed across the whole run (seed 002's `max_total_retries`); `None`: no budget.
    pub max_total_retries: Option<u32>,
}

/// One step from Python: a `batten._internal.spec.StepSpec` (any object with its fields as
/// attributes), read by field name; `retry_policy` is a `batten.RetryPolicy`.
struct SpecArgs<'py> {
    id: String,
    /// The spec's `step_id` object itself when it is exactly a `str` (the step's own, as
    /// `Step.step_id` holds it): the plan keeps it as the step's `pyid` rather than making a
    /// copy (~54 bytes a step, 0.5 MB of benchmark M's 10,000-step fan-out).
    pyid: Option<Py<pyo3::types::PyString>>,
    deps: Vec<String>,
    refs: Vec<String>,
    invoke: Py<PyAny>,
    is_async: bool,
    wants_ctx: bool,
    timeout: Option<Duration>,
    policy: Bound<'py, PyAny>,
    conditions: Vec<Py<PyAny>>,
    /// `with_inline`: `None` adaptive (also when the spec has no `inline` field).
    inline: Option<bool>,
}

impl<'py> SpecArgs<'py> {
    /// Reads spec `index`; whatever is wrong is a `WorkflowDefinitionError` naming the step (or,
    /// for an unusable id, its repr), never pyo3's "failed to extract field".
    fn read(index: usize, spec: &Bound<'py, PyAny>) -> PyResult<Self> {
        let py = spec.py();
        let bad = |what: String| crate::py::errors::WorkflowDefinitionError::new_err(what);
        let Ok(Some(id)) = spec.getattr_opt(intern!(py, "step_id")) else {
            return Err(bad(format!(
                "step #{index}: the engine takes a StepSpec per step, got {}",
                args::shown(spec)
            )));
        };
        let pyid = id
            .cast_exact::<pyo3::types::PyString>()
            .ok()
            .map(|s| s.clone().unbind());
        let id = args::text(&id, || "step id".to_string())?;
        let field = |name: &str| format!("step '{id}': {name}");
        let get = |name: &Bound<'py, pyo3::types::PyString>| -> PyResult<Bound<'py, PyAny>> {
            spec.getattr_opt(name)?.ok_or_else(|| {
                bad(format!(
                    "{} is missing from its StepSpec",
                    field(&name.to_string())
                ))
            })
        };
        let flag = |name: &Bound<'py, pyo3::types::PyString>| -> PyResult<bool> {
            get(name)?
                .extract::<bool>()
                .map_err(|_| bad(format!("{} must be a bool", field(&name.to_string()))))
        };
        let timeout = match args::number(Some(&get(intern!(py, "timeout"))?), || field("timeout"))?
        {
            None => None,
            Some(t) => Some(step_timeout(&id, t)?),
        };
        let inline = match spec.getattr_opt(intern!(py, "inline"))? {
            None => None,
            Some(v) if v.is_none() => None,
            Some(v) => Some(
                v.extract::<bool>()
                    .map_err(|_| bad(format!("{} must be a bool or None", field("inline"))))?,
            ),
        };
        Ok(SpecArgs {
            inline,
            deps: args::texts(&get(intern!(py, "depends_on"))?, || {
                field("depends_on entry")
            })?,
            refs: args::texts(&get(intern!(py, "refs"))?, || field("template reference"))?,
            invoke: get(intern!(py, "invoke"))?.unbind(),
            is_async: flag(intern!(py, "is_async"))?,
            wants_ctx: flag(intern!(py, "wants_context"))?,
            timeout,
            policy: get(intern!(py, "retry_policy"))?,
            conditions: get(intern!(py, "conditions"))?
                .extract::<Vec<Py<PyAny>>>()
                .map_err(|_| {
                    bad(format!(
                        "{} must be a list of callables",
                        field("conditions")
                    ))
                })?,
            id,
            pyid,
        })
    }
}

/// The engine's policy (via pythonize/serde, so a wrong type names its field) and the policy's
/// `retry_on` / `non_retryable` exception tuples.
fn policy_from_py(
    step: &str,
    obj: &Bound<'_, PyAny>,
) -> PyResult<(RetryPolicy, Py<PyTuple>, Py<PyTuple>)> {
    let invalid = |reason: String| {
        definition_error(DefinitionError::InvalidPolicy {
            step: step.to_string(),
            reason,
        })
    };
    let fields = obj.call_method0(pyo3::intern!(obj.py(), "_engine_fields"))?;
    let policy: RetryPolicy =
        pythonize::depythonize(&fields).map_err(|e| invalid(e.to_string()))?;
    policy.validate().map_err(invalid)?;
    let classes = |name: &str| -> PyResult<Py<PyTuple>> {
        Ok(obj.getattr(name)?.cast_into::<PyTuple>()?.unbind())
    };
    Ok((policy, classes("retry_on")?, classes("non_retryable")?))
}

/// A step's per-attempt timeout in seconds, checked: positive, finite and within a
/// `Duration`'s range (a larger one would panic converting).
fn step_timeout(step: &str, timeout: f64) -> PyResult<Duration> {
    match args::duration(timeout, 0.0) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(definition_error(DefinitionError::InvalidTimeout {
            step: step.to_string(),
            timeout,
        })),
    }
}

/// `max_parallel` (at most this many steps in flight) of plan `plan_id`, checked.
fn max_parallel(plan_id: &str, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    args::count(obj, 1, || {
        format!("'{plan_id}': max_parallel (the most steps in flight at once)")
    })
}

/// `min_success` (branches that must complete) of plan `plan_id`, checked.
fn min_success(plan_id: &str, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    args::count(obj, 0, || {
        format!("'{plan_id}': min_success (the branches that must complete)")
    })
}

/// A policy as the engine holds it, with its `retry_on` / `non_retryable` tuples.
type Converted = (RetryPolicy, Py<PyTuple>, Py<PyTuple>);

impl Plan {
    fn assemble(
        py: Python<'_>,
        workflow_id: String,
        decls: Vec<StepDecl>,
        steps: Vec<StepSpec>,
        max_parallel: Option<usize>,
        policy: RunPolicy,
        max_total_retries: Option<u32>,
    ) -> PyResult<Self> {
        let graph = Graph::build(decls).map_err(definition_error)?;
        let mut steps = steps;
        for (i, step) in steps.iter_mut().enumerate() {
            step.id = Arc::clone(graph.shared_id(i)); // one allocation per id (see `Graph`)
            if step.pyid.bind(py).is_empty()? {
                // The placeholder (a step id is never empty): made here, once per step.
                step.pyid = pyo3::types::PyString::new(py, &step.id).unbind();
            }
        }
        Ok(Plan {
            inner: Some(Arc::new(PlanInner {
                workflow_id,
                graph: Arc::new(graph),
                steps,
                max_parallel,
                policy,
                max_total_retries,
            })),
        })
    }
}

fn non_empty(py: Python<'_>, t: Py<PyTuple>) -> Option<Py<PyTuple>> {
    (!t.bind(py).is_empty()).then_some(t)
}

/// A compiled workflow. Private: built by `batten.Workflow`.
#[pyclass(module = "batten._core", name = "Plan")]
pub struct Plan {
    inner: Option<Arc<PlanInner>>,
}

impl Plan {
    /// The compiled plan, shared with the runs started from it.
    pub fn inner(&self) -> PyResult<Arc<PlanInner>> {
        self.inner
            .clone()
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("Plan was cleared"))
    }
}

#[pymethods]
impl Plan {
    /// Validates and compiles `specs`, an iterable of `batten._internal.spec.StepSpec`s (see
    /// `SpecArgs`), read once in order.
    ///
    /// `fail_fast`, `first_success`, `min_success` and `continue_on_error` set the run's
    /// `RunPolicy`; `max_total_retries` bounds retries across the run; `controls` maps step ids
    /// to their `(rate_limiters, breakers)`. Specs sharing one
    /// `RetryPolicy` object (a `MapStep`'s items) convert it once.
    ///
    /// Raises:
    ///     WorkflowDefinitionError: duplicate ids, unknown dependencies, a cycle, a template
    ///         reference to a non-ancestor, a bad timeout or retry policy.
    #[new]
    #[pyo3(signature = (workflow_id, specs, max_parallel=None, *, fail_fast=false, first_success=false, min_success=None, continue_on_error=false, max_total_retries=None, controls=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        workflow_id: &Bound<'_, PyAny>,
        specs: &Bound<'_, PyAny>,
        max_parallel: Option<Bound<'_, PyAny>>,
        fail_fast: bool,
        first_success: bool,
        min_success: Option<Bound<'_, PyAny>>,
        continue_on_error: bool,
        max_total_retries: Option<Bound<'_, PyAny>>,
        controls: Option<Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let workflow_id = args::text(workflow_id, || "workflow id".to_string())?;
        let max_parallel = self::max_parallel(&workflow_id, max_parallel.as_ref())?;
        let min_success = self::min_success(&workflow_id, min_success.as_ref())?;
        let max_total_retries = args::count32(max_total_retries.as_ref(), 0, || {
            format!("workflow '{workflow_id}': max_total_retries")
        })?;
        let hint = specs.len().unwrap_or(0);
        let mut decls = Vec::with_capacity(hint);
        let mut steps = Vec::with_capacity(hint);
        let mut last_policy: Option<(Py<PyAny>, Converted)> = None;
        // Every spec's id is a placeholder until `assemble` shares the graph's.
        let unset: Arc<str> = Arc::from("");
        let unset_py = pyo3::types::PyString::new(py, "").unbind();
        // Each spec is read, then dropped before the next is asked for: the compiler hands a
        // generator, so no list of 10,000 specs outlives its reading (see `_runtime.compile`).
        for (index, s) in specs.try_iter()?.enumerate() {
            let s = s?;
            let SpecArgs {
                id,
                pyid,
                deps,
                refs,
                invoke,
                is_async,
                wants_ctx,
                timeout,
                policy,
                conditions,
                inline,
            } = SpecArgs::read(index, &s)?;
            let (policy, retry_on, non_retryable) = match &last_policy {
                Some((obj, (p, r, n))) if obj.is(&policy) => (*p, r.clone_ref(py), n.clone_ref(py)),
                _ => {
                    let (p, r, n) = policy_from_py(&id, &policy)?;
                    last_policy = Some((policy.unbind(), (p, r.clone_ref(py), n.clone_ref(py))));
                    (p, r, n)
                }
            };
            steps.push(StepSpec {
                id: Arc::clone(&unset),
                pyid: pyid.unwrap_or_else(|| unset_py.clone_ref(py)),
                invoke,
                arg: None,
                is_async,
                wants_ctx,
                timeout,
                policy,
                retry_on: non_empty(py, retry_on),
                non_retryable: non_empty(py, non_retryable),
                conditions,
                controls: controls_of(controls.as_ref(), &id)?,
                inline: Inline::new(inline, is_async || timeout.is_some()),
            });
            decls.push(StepDecl { id, deps, refs });
        }
        let policy = RunPolicy {
            settle_on_failure: fail_fast,
            settle_on_success: first_success,
            min_success,
            continue_on_error,
        };
        Plan::assemble(
            py,
            workflow_id,
            decls,
            steps,
            max_parallel,
            policy,
            max_total_retries,
        )
    }

    /// A fan-out plan (`MapStep`): one independent step per item, `"{step_id}[{i}]"`, each
    /// calling `invoke(item)` (plus `context=` when `wants_context`). Built here rather than
    /// from per-item Python tuples: at 10,000 items those cost more than running them.
    ///
    /// Raises:
    ///     WorkflowDefinitionError: a bad timeout or retry policy.
    #[staticmethod]
    /// `limiters` / `breakers` apply to every item.
    #[pyo3(signature = (plan_id, step_id, invoke, items, is_async, wants_context, timeout, retry_policy, conditions, max_parallel=None, *, fail_fast=false, first_success=false, min_success=None, limiters=None, breakers=None))]
    #[allow(clippy::too_many_arguments)]
    fn fan_out(
        py: Python<'_>,
        plan_id: &Bound<'_, PyAny>,
        step_id: &Bound<'_, PyAny>,
        invoke: Py<PyAny>,
        items: Vec<Py<PyAny>>,
        is_async: bool,
        wants_context: bool,
        timeout: Option<Bound<'_, PyAny>>,
        retry_policy: Bound<'_, PyAny>,
        conditions: Vec<Py<PyAny>>,
        max_parallel: Option<Bound<'_, PyAny>>,
        fail_fast: bool,
        first_success: bool,
        min_success: Option<Bound<'_, PyAny>>,
        limiters: Option<Vec<Bound<'_, PyRateLimiter>>>,
        breakers: Option<Vec<Bound<'_, PyBreaker>>>,
    ) -> PyResult<Self> {
        let plan_id = args::text(plan_id, || "workflow id".to_string())?;
        let step_id = args::text(step_id, || "step id".to_string())?;
        let max_parallel = args::count(max_parallel.as_ref(), 1, || {
            format!("step '{step_id}': max_concurrency (the most items in flight at once)")
        })?;
        let min_success = args::count(min_success.as_ref(), 0, || {
            format!("step '{step_id}': minimum_success_count")
        })?;
        let controls =
            Controls::from_py(limiters.unwrap_or_default(), breakers.unwrap_or_default());
        let timeout = match args::number(timeout.as_ref(), || format!("step '{step_id}': timeout"))?
        {
            None => None,
            Some(t) => Some(step_timeout(&step_id, t)?),
        };
        let (policy, retry_on, non_retryable) = policy_from_py(&step_id, &retry_policy)?;
        let retry_on = non_empty(py, retry_on);
        let non_retryable = non_empty(py, non_retryable);
        let mut decls = Vec::with_capacity(items.len());
        let mut steps = Vec::with_capacity(items.len());
        let unset: Arc<str> = Arc::from(""); // replaced by the graph's id in `assemble`
        let unset_py = pyo3::types::PyString::new(py, "").unbind();
        for (i, item) in items.into_iter().enumerate() {
            let id = format!("{step_id}[{i}]");
            steps.push(StepSpec {
                id: Arc::clone(&unset),
                pyid: unset_py.clone_ref(py),
                invoke: invoke.clone_ref(py),
                arg: Some(item),
                is_async,
                wants_ctx: wants_context,
                timeout,
                policy,
                retry_on: retry_on.as_ref().map(|t| t.clone_ref(py)),
                non_retryable: non_retryable.as_ref().map(|t| t.clone_ref(py)),
                conditions: conditions.iter().map(|c| c.clone_ref(py)).collect(),
                controls: controls.clone(),
                inline: Inline::new(Some(false), true),
            });
            decls.push(StepDecl {
                id,
                deps: Vec::new(),
                refs: Vec::new(),
            });
        }
        let run_policy = RunPolicy {
            settle_on_failure: fail_fast,
            settle_on_success: first_success,
            min_success,
            continue_on_error: false,
        };
        Plan::assemble(py, plan_id, decls, steps, max_parallel, run_policy, None)
    }

    /// The id of the workflow this plan was compiled from.
    #[getter]
    fn workflow_id(&self) -> &str {
        self.inner.as_ref().map_or("", |p| p.workflow_id.as_str())
    }

    /// Number of steps.
    fn __len__(&self) -> usize {
        self.inner.as_ref().map_or(0, |p| p.steps.len())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(p) = &self.inner {
            for s in &p.steps {
                visit.call(&s.invoke)?;
                visit.call(&s.arg)?;
                visit.call(&s.retry_on)?;
                visit.call(&s.non_retryable)?;
                for c in &s.conditions {
                    visit.call(c)?;
                }
            }
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.inner = None;
    }
}
