//! Native half of the `supabase_connector` Python package: a thin layer
//! over the Rust crate. JSON crosses the boundary as text; the Python half
//! turns it into dicts and maps error codes to exception classes.
//!
//! Every call releases the GIL while the connector waits on PostgreSQL and
//! OpenBao. The connector's `tracing` events are handed to Python's
//! `logging` (loggers `supabase_connector.*`): events of a call are buffered
//! on the calling thread and emitted there, with the GIL, when the call
//! returns, so Tokio's threads never take the GIL and log records carry the
//! caller's thread (and, from `execute_async`, its context variables).

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use supabase_connector::{Config, Connector, Error};
use tokio::runtime::Runtime;

pyo3::create_exception!(
    _native,
    NativeError,
    pyo3::exceptions::PyException,
    "An error from the connector: args are (code, message, details_json)."
);

/// The module's Tokio runtime, created on first use and kept for the process.
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

// ------------------------------------------------------------------ logging

/// One `tracing` event, ready for `logging.Logger.handle`.
struct LogEvent {
    /// Python logging level (10 DEBUG … 40 ERROR).
    level: u8,
    /// Logger name: the Rust module path with `::` turned into `.`.
    logger: String,
    message: String,
    /// Span fields (outermost first), then the event's own fields.
    fields: Vec<(String, String)>,
    file: Option<&'static str>,
    line: Option<u32>,
}

thread_local! {
    /// Events of the call running on this thread, when one is.
    static CAPTURE: RefCell<Option<Vec<LogEvent>>> = const { RefCell::new(None) };
}

/// Events from Tokio tasks that run outside any call (a connection task
/// ending, say): emitted by the next call to return. Bounded.
static STRAY: Mutex<Vec<LogEvent>> = Mutex::new(Vec::new());
const STRAY_MAX: usize = 256;

/// Span fields, kept in the span's extensions.
struct SpanFields(Vec<(String, String)>);

#[derive(Default)]
struct Visitor {
    message: String,
    fields: Vec<(String, String)>,
}

impl tracing::field::Visit for Visitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else if !value.is_empty() {
            self.fields
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }
}

/// Forwards the connector's events (DEBUG and above) to the capture buffer.
struct PyLogLayer;

fn wanted(meta: &tracing::Metadata<'_>) -> bool {
    meta.target().starts_with("supabase_connector") && *meta.level() <= tracing::Level::DEBUG
}

impl<S> tracing_subscriber::Layer<S> for PyLogLayer
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if wanted(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        wanted(meta)
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut v = Visitor::default();
        attrs.record(&mut v);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(v.fields));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut v = Visitor::default();
        values.record(&mut v);
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            match ext.get_mut::<SpanFields>() {
                Some(fields) => fields.0.extend(v.fields),
                None => ext.insert(SpanFields(v.fields)),
            }
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        let mut v = Visitor::default();
        event.record(&mut v);
        let mut fields = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<SpanFields>() {
                    fields.extend(f.0.iter().cloned());
                }
            }
        }
        fields.extend(v.fields);
        let level = match *meta.level() {
            tracing::Level::ERROR => 40,
            tracing::Level::WARN => 30,
            tracing::Level::INFO => 20,
            _ => 10,
        };
        let record = LogEvent {
            level,
            logger: meta.target().replace("::", "."),
            message: v.message,
            fields,
            file: meta.file(),
            line: meta.line(),
        };
        let stray = CAPTURE.with(|c| match c.borrow_mut().as_mut() {
            Some(buffer) => {
                buffer.push(record);
                None
            }
            None => Some(record),
        });
        if let Some(record) = stray {
            if let Ok(mut q) = STRAY.lock() {
                if q.len() >= STRAY_MAX {
                    q.remove(0);
                }
                q.push(record);
            }
        }
    }
}

fn install_log_layer() {
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(PyLogLayer);
    // Fails only when another subscriber is already global: keep that one.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Run `f` (GIL released by the caller) with this thread's events captured.
fn captured<T>(f: impl FnOnce() -> T) -> (T, Vec<LogEvent>) {
    CAPTURE.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let out = f();
    let events = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (out, events)
}

/// Hand events to Python's `logging`, on the calling thread, with the GIL.
/// Logging failures never turn a finished action into an error.
fn emit(py: Python<'_>, mut events: Vec<LogEvent>) {
    if let Ok(mut q) = STRAY.lock() {
        if !q.is_empty() {
            let mut all = std::mem::take(&mut *q);
            all.append(&mut events);
            events = all;
        }
    }
    if events.is_empty() {
        return;
    }
    let _ = emit_events(py, events);
}

fn emit_events(py: Python<'_>, events: Vec<LogEvent>) -> PyResult<()> {
    let logging = py.import("logging")?;
    for e in events {
        let logger = logging.call_method1("getLogger", (e.logger.as_str(),))?;
        if !logger
            .call_method1("isEnabledFor", (e.level,))?
            .is_truthy()?
        {
            continue;
        }
        let mut message = e.message;
        if !e.fields.is_empty() {
            let text: Vec<String> = e.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            message = format!("{message} ({})", text.join(", "));
        }
        let fields = PyDict::new(py);
        for (k, v) in &e.fields {
            fields.set_item(k, v)?;
        }
        let extra = PyDict::new(py);
        extra.set_item("connector_fields", fields)?;
        let record = logger.call_method1(
            "makeRecord",
            (
                e.logger.as_str(),
                e.level,
                e.file.unwrap_or("<rust>"),
                e.line.unwrap_or(0),
                message,
                (),
                py.None(),
                py.None(),
                extra,
            ),
        )?;
        logger.call_method1("handle", (record,))?;
    }
    Ok(())
}

/// Run a connector future to completion on the module's runtime; a panic
/// becomes an `internal` error instead of unwinding into Python.
fn block_on<T>(
    runtime: &Runtime,
    fut: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(fut))).unwrap_or_else(
        |panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            Err(Error::internal(format!("the connector panicked: {what}")))
        },
    )
}

// ----------------------------------------------------------------- executor

/// One connector: a pool and an OpenBao client, shared by every thread.
#[pyclass(frozen, module = "supabase_connector._native")]
struct NativeExecutor {
    connector: Arc<Connector>,
    runtime: Arc<Runtime>,
    closed: AtomicBool,
}

impl NativeExecutor {
    /// Parse, run and serialise one action with the GIL released; returns
    /// the result and the time spent in Rust (parse + action + serialise).
    fn run(&self, py: Python<'_>, action: &str, params_json: &str) -> (Result<String, Error>, f64) {
        let connector = self.connector.clone();
        let runtime = self.runtime.clone();
        let closed = self.closed.load(Ordering::Acquire);
        let ((result, elapsed), events) = py.allow_threads(|| {
            captured(|| {
                let started = Instant::now();
                let result = if closed {
                    Err(Error::database("the executor is closed"))
                } else {
                    serde_json::from_str::<serde_json::Value>(params_json)
                        .map_err(|e| Error::invalid(format!("params are not JSON: {e}")))
                        .and_then(|params| {
                            block_on(&runtime, async { connector.execute(action, params).await })
                        })
                        .map(|v| v.to_string())
                };
                (result, started.elapsed().as_secs_f64())
            })
        });
        emit(py, events);
        (result, elapsed)
    }
}

#[pymethods]
impl NativeExecutor {
    /// `config_json`: the JSON config, or None for the environment.
    #[new]
    #[pyo3(signature = (config_json=None))]
    fn new(py: Python<'_>, config_json: Option<&str>) -> PyResult<Self> {
        let runtime = runtime()?;
        let (connector, events) = py.allow_threads(|| {
            captured(|| {
                let value = match config_json {
                    Some(text) => Some(
                        serde_json::from_str(text)
                            .map_err(|e| Error::invalid(format!("config is not JSON: {e}")))?,
                    ),
                    None => None,
                };
                let config = Config::from_json(value)?;
                block_on(&runtime, Connector::new(config))
            })
        });
        emit(py, events);
        Ok(NativeExecutor {
            connector: Arc::new(connector.map_err(native_error)?),
            runtime,
            closed: AtomicBool::new(false),
        })
    }

    /// Run an action; params and result are JSON text. The GIL is released
    /// while the connector works.
    fn execute(&self, py: Python<'_>, action: &str, params_json: &str) -> PyResult<String> {
        self.run(py, action, params_json).0.map_err(native_error)
    }

    /// `execute` that also returns the seconds spent on the Rust side of the
    /// call (JSON parse, action, JSON serialise): for measuring the Python
    /// layer's overhead.
    fn execute_timed(
        &self,
        py: Python<'_>,
        action: &str,
        params_json: &str,
    ) -> PyResult<(String, f64)> {
        let (result, elapsed) = self.run(py, action, params_json);
        Ok((result.map_err(native_error)?, elapsed))
    }

    /// Close the pool; later calls fail with `database_unavailable`.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.connector.close();
    }

    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn __repr__(&self) -> String {
        format!("NativeExecutor(closed={})", self.closed())
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
    install_log_layer();
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    m.add_class::<NativeExecutor>()?;
    m.add_function(wrap_pyfunction!(catalog_json, m)?)?;
    m.add_function(wrap_pyfunction!(action_names, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "BUILD_PROFILE",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    )?;
    Ok(())
}
