//! TLS for PostgreSQL connections, set up on first use.
//!
//! Building a native-tls connector makes OpenSSL parse the whole system CA
//! bundle (about 50 ms with OpenSSL 3 on these machines), a third of a
//! short-lived CLI run. A connection that never negotiates TLS
//! (`sslmode=disable`, or `prefer` against a server without TLS) does not
//! need it, so the connector is built when a server first accepts TLS and
//! then shared by every connection.

use native_tls::{Certificate, TlsConnector};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A [`MakeTlsConnect`] whose native-tls connector is built on first use.
#[derive(Clone)]
pub struct LazyTls {
    /// An extra trusted root (`database.ca_file`), already parsed.
    root: Option<Certificate>,
    connector: Arc<OnceLock<Result<TlsConnector, String>>>,
}

impl LazyTls {
    pub fn new(root: Option<Certificate>) -> LazyTls {
        LazyTls {
            root,
            connector: Arc::new(OnceLock::new()),
        }
    }

    fn connector(&self) -> Result<TlsConnector, BoxError> {
        self.connector
            .get_or_init(|| {
                let mut builder = TlsConnector::builder();
                if let Some(root) = &self.root {
                    builder.add_root_certificate(root.clone());
                }
                builder.build().map_err(|e| format!("TLS: {e}"))
            })
            .clone()
            .map_err(Into::into)
    }

    /// Whether the connector has been built.
    #[cfg(test)]
    fn is_built(&self) -> bool {
        self.connector.get().is_some()
    }
}

impl<S> MakeTlsConnect<S> for LazyTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = postgres_native_tls::TlsStream<S>;
    type TlsConnect = LazyTlsConnect;
    type Error = BoxError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<LazyTlsConnect, BoxError> {
        Ok(LazyTlsConnect {
            tls: self.clone(),
            domain: domain.to_string(),
        })
    }
}

/// One connection's TLS handshake, made only if the server accepts TLS.
pub struct LazyTlsConnect {
    tls: LazyTls,
    domain: String,
}

impl<S> TlsConnect<S> for LazyTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = postgres_native_tls::TlsStream<S>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Stream, BoxError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let mut make = postgres_native_tls::MakeTlsConnector::new(self.tls.connector()?);
            let connect = MakeTlsConnect::<S>::make_tls_connect(&mut make, &self.domain)?;
            Ok(connect.connect(stream).await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_built_until_a_handshake() {
        let mut tls = LazyTls::new(None);
        let _ = MakeTlsConnect::<tokio::net::TcpStream>::make_tls_connect(&mut tls, "db");
        assert!(!tls.is_built());
        tls.connector().unwrap();
        assert!(tls.is_built());
    }
}
