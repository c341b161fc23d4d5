//! The one place engine errors become Python exceptions. The classes live in
//! `weft/errors.py` (as pyca/cryptography does), so Python users and Rust raise the same types.
use pyo3::prelude::*;

use crate::engine::error::DefinitionError;

pyo3::import_exception!(weft.errors, WorkflowDefinitionError);
pyo3::import_exception!(weft.errors, StepTimeoutError);
pyo3::import_exception!(weft.errors, WorkflowTimeoutError);

/// Maps an engine definition error to `weft.errors.WorkflowDefinitionError`.
pub fn definition_error(err: DefinitionError) -> PyErr {
    WorkflowDefinitionError::new_err(err.to_string())
}
