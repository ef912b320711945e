//! Native half of the `supabase_connector` Python package: a thin layer
//! over the Rust crate. JSON crosses the boundary as text; the Python half
//! turns it into dicts and maps error codes to exception classes.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use std::sync::{Arc, Mutex, OnceLock};
use supabase_connector::{Config, Connector, Error};
use tokio::runtime::Runtime;

pyo3::create_exception!(
    _native,
    NativeError,
    pyo3::exceptions::PyException,
    "An error from the connector: args are (code, message, details_json)."
);

/// The module's Tokio runtime, created on first use, shut down by `shutdown()`.
fn runtime() -> PyResult<Arc<Runtime>> {
    static RUNTIME: OnceLock<Mutex<Option<Arc<Runtime>>>> = OnceLock::new();
    let cell = RUNTIME.get_or_init(|| Mutex::new(None));
    let mut guard = cell
        .lock()
        .map_err(|_| PyRuntimeError::new_err("runtime lock poisoned"))?;
    if guard.is_none() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("supabase-connector")
            .enable_all()
            .build()
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start the Tokio runtime: {e}")))?;
        *guard = Some(Arc::new(rt));
    }
    Ok(guard.as_ref().expect("set above").clone())
}

fn native_error(e: Error) -> PyErr {
    NativeError::new_err((e.code.as_str(), e.message.clone(), e.details.to_string()))
}

/// One connector: a pool and an OpenBao client, shared by every thread.
#[pyclass(frozen, module = "supabase_connector._native")]
struct NativeExecutor {
    connector: Arc<Connector>,
    runtime: Arc<Runtime>,
}

#[pymethods]
impl NativeExecutor {
    /// `config_json`: the JSON config, or None for the environment.
    #[new]
    #[pyo3(signature = (config_json=None))]
    fn new(py: Python<'_>, config_json: Option<&str>) -> PyResult<Self> {
        let value =
            match config_json {
                Some(text) => Some(serde_json::from_str(text).map_err(|e| {
                    native_error(Error::invalid(format!("config is not JSON: {e}")))
                })?),
                None => None,
            };
        let config = Config::from_json(value).map_err(native_error)?;
        let runtime = runtime()?;
        let connector = py
            .allow_threads(|| runtime.block_on(Connector::new(config)))
            .map_err(native_error)?;
        Ok(NativeExecutor {
            connector: Arc::new(connector),
            runtime,
        })
    }

    /// Run an action; params and result are JSON text. The GIL is released
    /// while the connector waits on PostgreSQL and OpenBao.
    fn execute(&self, py: Python<'_>, action: &str, params_json: &str) -> PyResult<String> {
        let params: serde_json::Value = serde_json::from_str(params_json)
            .map_err(|e| native_error(Error::invalid(format!("params are not JSON: {e}"))))?;
        let connector = self.connector.clone();
        let action = action.to_string();
        let result = py.allow_threads(|| {
            self.runtime
                .block_on(async move { connector.execute(&action, params).await })
        });
        result.map(|v| v.to_string()).map_err(native_error)
    }

    /// Close the pool; later calls fail with `database_unavailable`.
    fn close(&self) {
        self.connector.close();
    }

    fn __repr__(&self) -> String {
        "NativeExecutor(…)".into()
    }
}

/// The embedded catalog as JSON text.
#[pyfunction]
fn catalog_json() -> String {
    supabase_connector::catalog().to_string()
}

/// Action names, in catalog order.
#[pyfunction]
fn action_names() -> Vec<&'static str> {
    supabase_connector::catalog::action_names()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    m.add_class::<NativeExecutor>()?;
    m.add_function(wrap_pyfunction!(catalog_json, m)?)?;
    m.add_function(wrap_pyfunction!(action_names, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
