//! The one place engine errors become Python exceptions. The classes live in
//! `batten/errors.py` (as pyca/cryptography does), so Python users and Rust raise the same types.
use pyo3::prelude::*;

use crate::engine::error::DefinitionError;

pyo3::import_exception!(batten.errors, WorkflowDefinitionError);
pyo3::import_exception!(batten.errors, StepTimeoutError);
pyo3::import_exception!(batten.errors, WorkflowTimeoutError);

/// Maps an engine definition error to `batten.errors.WorkflowDefinitionError`.
pub fn definition_error(err: DefinitionError) -> PyErr {
    WorkflowDefinitionError::new_err(err.to_string())
}

pyo3::import_exception!(batten.errors, StoreError);
pyo3::import_exception!(batten.errors, StoreURLError);
pyo3::import_exception!(batten.errors, StoreUnavailableError);
pyo3::import_exception!(batten.errors, RunNotFoundError);
pyo3::import_exception!(batten.errors, SchemaVersionError);
pyo3::import_exception!(batten.errors, CorruptRecordError);
pyo3::import_exception!(batten.errors, ApprovalError);
pyo3::import_exception!(batten.errors, CircuitOpenError);
pyo3::import_exception!(batten.errors, LeaseLostError);

/// Maps a store error to its `batten.errors` class (`StoreError` and subclasses).
pub fn store_error(err: crate::store::StoreError) -> PyErr {
    use crate::store::StoreError as E;
    let msg = err.to_string();
    match err {
        E::Url(_) => StoreURLError::new_err(msg),
        E::Unreachable(_) => StoreUnavailableError::new_err(msg),
        E::RunNotFound(id) => RunNotFoundError::new_err((msg, id)),
        E::SchemaVersion { .. } => SchemaVersionError::new_err(msg),
        E::Corrupt { .. } => CorruptRecordError::new_err(msg),
        E::AlreadyDecided { .. } => ApprovalError::new_err(msg),
        E::LeaseLost { run_id, .. } => LeaseLostError::new_err((msg, run_id)),
        E::RunExists(_) | E::Backend(_) => StoreError::new_err(msg),
    }
}
