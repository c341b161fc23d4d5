//! `WorkflowContext` and the read-only mappings it exposes, backed by the engine's persistent maps
//! so handing each step its own view costs a pointer copy, not a dict copy.
use std::sync::Arc;

use pyo3::exceptions::{PyKeyError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use pyo3::{PyTraverseError, PyVisit};

use crate::engine::state::Map;

/// A Python value shared between persistent maps.
pub type Val = Arc<Py<PyAny>>;

/// Converts a `dict[str, Any]` (or any Mapping) into a persistent map.
pub fn map_from_py(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Map<Val>> {
    let mut map = Map::new();
    let Some(obj) = obj else { return Ok(map) };
    if obj.is_none() {
        return Ok(map);
    }
    if let Ok(sm) = obj.cast::<StateMap>() {
        return Ok(owned_copy(obj.py(), &sm.get().map));
    }
    let dict = if let Ok(d) = obj.cast::<PyDict>() {
        d.clone()
    } else {
        let d = PyDict::new(obj.py());
        d.call_method1(pyo3::intern!(obj.py(), "update"), (obj,))
            .map_err(|_| PyTypeError::new_err(format!("{what} must be a mapping with str keys")))?;
        d
    };
    for (k, v) in dict.iter() {
        let key: String = k.extract().map_err(|_| {
            let why = match k.is_instance_of::<pyo3::types::PyString>() {
                true => " (it holds a lone surrogate, which is not valid UTF-8)",
                false => "",
            };
            PyTypeError::new_err(format!(
                "{what} keys must be str, got {}{why}",
                k.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        })?;
        map.insert(Arc::from(key), Arc::new(v.unbind()));
    }
    Ok(map)
}

/// The same entries with references of their own: a map whose values are traversed must not
/// share them (see `WorkflowContext::__traverse__`).
/// NOTE: the values are replaced in a clone of the trie (its nodes copied once, nothing rehashed
/// or reinserted), not collected into a new map: ~290 instructions a step fewer on W1.
pub fn owned_copy(py: Python<'_>, map: &Map<Val>) -> Map<Val> {
    let mut out = map.clone();
    for (_, v) in out.iter_mut() {
        *v = Arc::new(v.clone_ref(py));
    }
    out
}

/// The entries in key order: what a step sees must not depend on hash order or on which sibling
/// finished first.
/// NOTE: the maps are hash tries, not ordered maps: an ordered map copied 64-entry nodes on every
/// insert into a shared map and made W1 (1,000 steps reading and writing state) ~30% slower.
/// Sorting costs O(n log n) only when Python iterates a mapping.
fn sorted(map: &Map<Val>) -> Vec<(&Arc<str>, &Val)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries
}

fn map_to_dict<'py>(py: Python<'py>, map: &Map<Val>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in sorted(map) {
        d.set_item(&**k, v.bind(py))?;
    }
    Ok(d)
}

/// The read-only mapping methods `StateMap` and `WorkflowContext` (over its variables) share:
/// written once here; each pyclass's methods of the same names only delegate, because pyo3
/// exposes only the methods of a class's one `#[pymethods]` block (its `multiple-pymethods`
/// feature would lift that at the cost of the `inventory` crate and life-before-main).
struct MapView<'a>(&'a Map<Val>);

impl MapView<'_> {
    fn lookup(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let Ok(k) = key.cast::<pyo3::types::PyString>() else {
            return Ok(None);
        };
        Ok(self.0.get(k.to_str()?).map(|v| v.clone_ref(py)))
    }

    fn getitem(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.lookup(py, key)?
            .ok_or_else(|| PyKeyError::new_err(key.clone().unbind()))
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn contains(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.lookup(key.py(), key)?.is_some())
    }

    fn iter<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.keys(py)?.try_iter().map(Bound::into_any)
    }

    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        Ok(self
            .lookup(py, key)?
            .unwrap_or_else(|| default.unwrap_or_else(|| py.None())))
    }

    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, sorted(self.0).into_iter().map(|(k, _)| &**k))
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, sorted(self.0).into_iter().map(|(_, v)| v.bind(py)))
    }

    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(
            py,
            sorted(self.0).into_iter().map(|(k, v)| (&**k, v.bind(py))),
        )
    }
}

/// A read-only mapping (``collections.abc.Mapping``) of str keys to step-visible values: a
/// context's ``variables`` or ``results``. Keys iterate in sorted order, so what a step sees never
/// depends on which sibling finished first.
#[pyclass(module = "batten", name = "StateMap", frozen, mapping)]
pub struct StateMap {
    pub map: Map<Val>,
    /// The context whose values these are, when that context owns them: holding it keeps them
    /// reachable for the GC without this map claiming them too.
    owner: Option<Py<WorkflowContext>>,
}

impl StateMap {
    fn of(ctx: &Bound<'_, WorkflowContext>, map: &Map<Val>) -> Self {
        StateMap {
            map: map.clone(),
            owner: ctx.get().owns_values.then(|| ctx.clone().unbind()),
        }
    }
}

#[pymethods]
impl StateMap {
    fn __getitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        MapView(&self.map).getitem(py, key)
    }

    fn __len__(&self) -> usize {
        MapView(&self.map).len()
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        MapView(&self.map).contains(key)
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        MapView(&self.map).iter(py)
    }

    /// ``get(key, default=None)``: the value for ``key`` or ``default``.
    #[pyo3(signature = (key, default=None))]
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        MapView(&self.map).get(py, key, default)
    }

    /// The keys, as a list (sorted).
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        MapView(&self.map).keys(py)
    }

    /// The values, as a list, in key order.
    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        MapView(&self.map).values(py)
    }

    /// ``(key, value)`` pairs, as a list, in key order.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        MapView(&self.map).items(py)
    }

    /// A new ``dict`` copy of the mapping.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        map_to_dict(py, &self.map)
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> PyResult<bool> {
        map_to_dict(py, &self.map)?.eq(other)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("StateMap({})", map_to_dict(py, &self.map)?.repr()?))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.owner)
    }
}

/// The state of a workflow run as one step sees it (JAF's ``WorkflowContext``).
///
/// Create one to start a run: ``WorkflowContext(workflow_id="workflow", user_context=None,
/// variables=None, metadata=None)`` (``initial_data=`` is accepted as an alias of ``variables``, as in JAF's
/// e-commerce example). A step that declares a ``context`` parameter, and every condition, gets a
/// context whose ``variables`` are the initial variables plus the dict outputs of the steps it
/// depends on (directly or transitively), merged in declaration order, and whose ``results`` map
/// those steps' ids to their outputs. The context is itself a read-only mapping over its
/// variables, so ``lambda state: state["order_id"]`` and
/// ``lambda ctx: ctx.variables.get("priority")`` both work.
#[pyclass(module = "batten", name = "WorkflowContext", frozen, mapping)]
pub struct WorkflowContext {
    pub workflow_id: Arc<str>,
    pub user_context: Py<PyAny>,
    pub metadata: Py<PyAny>,
    pub vars: Map<Val>,
    pub results: Map<Val>,
    pub run_id: Option<Arc<str>>,
    pub step_id: Option<Arc<str>>,
    /// A durable run's path prefix for this step (`"parent/"` inside a composite), so the
    /// idempotency key names the step's full path.
    pub scope: Option<Arc<str>>,
    /// True when no other object holds these values' `Arc`s, so `__traverse__` may report them:
    /// contexts built by the caller and a run's final context. A step's context shares the
    /// run's values and reports none.
    pub owns_values: bool,
}

#[pymethods]
impl WorkflowContext {
    #[new]
    #[pyo3(signature = (workflow_id=None, user_context=None, variables=None, metadata=None, *, initial_data=None))]
    fn new(
        py: Python<'_>,
        workflow_id: Option<Bound<'_, PyAny>>,
        user_context: Option<Bound<'_, PyAny>>,
        variables: Option<Bound<'_, PyAny>>,
        metadata: Option<Bound<'_, PyAny>>,
        initial_data: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        if variables.as_ref().is_some_and(|v| !v.is_none())
            && initial_data.as_ref().is_some_and(|v| !v.is_none())
        {
            return Err(PyTypeError::new_err(
                "WorkflowContext: pass variables= or its alias initial_data=, not both",
            ));
        }
        let vars = map_from_py(
            variables.as_ref().or(initial_data.as_ref()),
            "WorkflowContext.variables",
        )?;
        let dict_or_new = |o: Option<Bound<'_, PyAny>>| -> Py<PyAny> {
            match o {
                Some(o) if !o.is_none() => o.unbind(),
                _ => PyDict::new(py).into_any().unbind(),
            }
        };
        let workflow_id = match workflow_id.filter(|w| !w.is_none()) {
            Some(w) if !w.is_instance_of::<pyo3::types::PyString>() => {
                return Err(PyTypeError::new_err(format!(
                    "WorkflowContext: workflow_id must be a str, got {}",
                    crate::py::args::shown(&w)
                )))
            }
            Some(w) => crate::py::args::text(&w, || "WorkflowContext: workflow id".to_string())?,
            None => "workflow".to_string(),
        };
        Ok(WorkflowContext {
            workflow_id: Arc::from(workflow_id),
            user_context: dict_or_new(user_context),
            metadata: dict_or_new(metadata),
            vars,
            results: Map::new(),
            run_id: None,
            step_id: None,
            scope: None,
            owns_values: true,
        })
    }

    /// The workflow id given when the context was created (str).
    #[getter]
    fn workflow_id(&self) -> &str {
        &self.workflow_id
    }

    /// Caller-supplied data about the user or request (a dict, shared by every step).
    #[getter]
    fn user_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.user_context.clone_ref(py)
    }

    /// Caller-supplied metadata (a dict, shared by every step).
    #[getter]
    fn metadata(&self, py: Python<'_>) -> Py<PyAny> {
        self.metadata.clone_ref(py)
    }

    /// The variables this step sees, as a read-only mapping (see the class docs).
    #[getter]
    fn variables(slf: &Bound<'_, Self>) -> StateMap {
        StateMap::of(slf, &slf.get().vars)
    }

    /// Alias of ``variables`` (JAF's ``initial_data``).
    #[getter]
    fn initial_data(slf: &Bound<'_, Self>) -> StateMap {
        Self::variables(slf)
    }

    /// Alias of ``variables`` (the ``state.data`` JAF's ``WorkflowLogger`` example reads).
    #[getter]
    fn data(slf: &Bound<'_, Self>) -> StateMap {
        Self::variables(slf)
    }

    /// Outputs of the steps this step depends on (all completed steps in a final context),
    /// as a read-only mapping of step id to output.
    #[getter]
    fn results(slf: &Bound<'_, Self>) -> StateMap {
        StateMap::of(slf, &slf.get().results)
    }

    /// The run's id (a uuid4 hex string) inside a run; ``None`` on a context built by the caller.
    #[getter]
    fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }

    /// The id of the step this context was made for; ``None`` for a caller's or final context.
    #[getter]
    fn step_id(&self) -> Option<&str> {
        self.step_id.as_deref()
    }

    /// ``"{run_id}:{step_path}"``: stable for a run and step across attempts and, in a durable
    /// run, across ``resume`` (a step interrupted mid-flight runs again with the same key), so
    /// side-effecting tools can de-duplicate. Inside a composite of a durable run the path is
    /// ``"parent/step"`` and the run id is the durable run's. ``None`` outside a step.
    #[getter]
    fn idempotency_key(&self) -> Option<String> {
        match (&self.run_id, &self.step_id) {
            (Some(r), Some(s)) => Some(format!("{r}:{}{s}", self.scope.as_deref().unwrap_or(""))),
            _ => None,
        }
    }

    // The mapping over the variables: `MapView`, as in `StateMap`.
    fn __getitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        MapView(&self.vars).getitem(py, key)
    }

    fn __len__(&self) -> usize {
        MapView(&self.vars).len()
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        MapView(&self.vars).contains(key)
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        MapView(&self.vars).iter(py)
    }

    /// ``get(key, default=None)``: the value for ``key`` or ``default``.
    #[pyo3(signature = (key, default=None))]
    fn get(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        MapView(&self.vars).get(py, key, default)
    }

    /// The keys, as a list (sorted).
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        MapView(&self.vars).keys(py)
    }

    /// The values, as a list, in key order.
    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        MapView(&self.vars).values(py)
    }

    /// ``(key, value)`` pairs, as a list, in key order.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        MapView(&self.vars).items(py)
    }

    /// A plain-dict snapshot: ``{"workflow_id", "user_context", "variables", "metadata",
    /// "results"}``.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("workflow_id", &*self.workflow_id)?;
        d.set_item("user_context", &self.user_context)?;
        d.set_item("variables", map_to_dict(py, &self.vars)?)?;
        d.set_item("metadata", &self.metadata)?;
        d.set_item("results", map_to_dict(py, &self.results)?)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "WorkflowContext(workflow_id={:?}, variables={})",
            self.workflow_id,
            map_to_dict(py, &self.vars)?.repr()?
        ))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.user_context)?;
        visit.call(&self.metadata)?;
        // NOTE: the persistent maps share nodes, and each value holds a single Python reference
        // (an `Arc<Py>`) however many maps share it. Only a context that owns its values visits
        // them; if every sharer did, the GC would count more references than exist and could
        // clear objects still in use.
        if self.owns_values {
            for v in self.vars.values().chain(self.results.values()) {
                visit.call(&**v)?;
            }
        }
        Ok(())
    }
}
