//! OpenBao client (KV v2, token or AppRole login) and a cache of the secrets
//! the connector needs. There is no fallback: when OpenBao cannot answer, the
//! action fails with `secrets_unavailable`.
//!
//! Rotation: before the secrets are used (to sign lease tokens), the KV v2
//! secret's metadata is read (`current_version`, one small request on a
//! kept-alive connection) and the secret itself is read again only when its
//! version changed, so a lease issued after `JWT_SECRET` was rotated carries
//! tokens signed with the new secret, whatever `openbao.cache_seconds` says.

use crate::config::{OpenBaoConfig, Secret};
use crate::error::{Error, Result};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The secrets an action needs, read from `<mount>/<path>`.
#[derive(Clone)]
pub struct ConnectorSecrets {
    /// Signs lease tokens (the stack's `JWT_SECRET`).
    pub jwt_secret: Secret,
    /// The central publishable (anon) key for the gateway's `apikey` header.
    pub publishable_key: Secret,
    /// The runtime role's password, used when `database.url` carries none.
    pub postgres_password: Option<Secret>,
}

impl std::fmt::Debug for ConnectorSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectorSecrets(***)")
    }
}

/// Which version of the KV v2 secret a read saw: its `current_version`,
/// and the metadata's `created_time` (a secret deleted and written again
/// starts over at version 1).
#[derive(Debug, Clone, PartialEq, Eq)]
struct KvVersion {
    created_time: String,
    version: u64,
}

/// The secrets as last read, with when and at which version.
struct Cached {
    at: Instant,
    /// When a check or read that found these secrets current started.
    confirmed: Instant,
    version: Option<KvVersion>,
    secrets: ConnectorSecrets,
}

/// A minimal OpenBao HTTP client: the few calls the connector makes.
pub struct OpenBao {
    config: OpenBaoConfig,
    http: Transport,
    token: Mutex<Option<Secret>>,
    cache: Mutex<Option<Cached>>,
    /// The token may not read the secret's metadata: every check then reads
    /// the secret itself (as costly a request, and as current).
    metadata_denied: AtomicBool,
    /// Version checks made at once share one request (see `checked_version`).
    checks: VersionChecks,
}

/// Concurrent version checks, batched: a caller needs a check that started
/// after it arrived (one that started earlier may predate a rotation it
/// must see). Checks run one at a time; callers that arrive while one runs
/// all wait for the next, and the first of them makes it for all.
#[derive(Default)]
struct VersionChecks {
    /// Held while a check runs.
    running: Mutex<()>,
    /// Number of the last check started.
    started: std::sync::atomic::AtomicU64,
    /// Number and outcome of the last check finished.
    finished: std::sync::Mutex<(u64, Option<Result<Option<KvVersion>>>)>,
}

impl OpenBao {
    pub fn new(config: OpenBaoConfig) -> Result<OpenBao> {
        if config.addr.is_none() {
            return Err(Error::secrets(
                "OpenBao address is not configured (openbao.addr, BAO_ADDR or VAULT_ADDR)",
            ));
        }
        if config.token.is_none() && config.approle.is_none() {
            return Err(Error::secrets(
                "no OpenBao credentials configured (openbao.token, openbao.approle, BAO_TOKEN or VAULT_TOKEN)",
            ));
        }
        let http = Transport::new(&config)?;
        Ok(OpenBao {
            token: Mutex::new(config.token.clone()),
            config,
            http,
            cache: Mutex::new(None),
            metadata_denied: AtomicBool::new(false),
            checks: VersionChecks::default(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/v1/{}",
            self.config
                .addr
                .as_deref()
                .unwrap_or_default()
                .trim_end_matches('/'),
            path
        )
    }

    fn kv_url(&self, sub: &str) -> String {
        let base = self.config.path.trim_matches('/');
        let path = if sub.is_empty() {
            base.to_string()
        } else {
            format!("{base}/{sub}")
        };
        self.url(&format!(
            "{}/data/{}",
            self.config.mount.trim_matches('/'),
            path
        ))
    }

    /// The current token, logging in with AppRole first when needed.
    async fn token(&self, force_login: bool) -> Result<Secret> {
        let mut guard = self.token.lock().await;
        if !force_login {
            if let Some(t) = guard.as_ref() {
                return Ok(t.clone());
            }
        }
        let Some(approle) = &self.config.approle else {
            return guard
                .clone()
                .ok_or_else(|| Error::secrets("no OpenBao token"));
        };
        let login = json!({"role_id": approle.role_id, "secret_id": approle.secret_id.expose()});
        let (status, body) = self
            .http
            .send(
                Method::POST,
                &self.url(&format!("auth/{}/login", approle.mount)),
                None,
                Some(&login),
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(Error::secrets(format!(
                "OpenBao AppRole login refused (HTTP {status})"
            )));
        }
        let body: Value = serde_json::from_slice(&body).map_err(|_| unreadable())?;
        let token = body["auth"]["client_token"]
            .as_str()
            .ok_or_else(|| Error::secrets("OpenBao AppRole login returned no token"))?;
        *guard = Some(Secret::new(token));
        Ok(Secret::new(token))
    }

    /// One authenticated request: its status and body; an expired AppRole
    /// token is renewed once.
    async fn send_raw(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Vec<u8>)> {
        let mut relogin = false;
        loop {
            let token = self.token(relogin).await?;
            let (status, response) = self
                .http
                .send(method.clone(), url, Some(&token), body)
                .await?;
            if status == 403 && self.config.approle.is_some() && !relogin {
                relogin = true;
                continue;
            }
            return Ok((status, response));
        }
    }

    /// One authenticated request; anything but success is `secrets_unavailable`.
    async fn send(&self, method: Method, url: &str, body: Option<&Value>) -> Result<Value> {
        let (status, response) = self.send_raw(method, url, body).await?;
        match status {
            200..=299 => {
                if status == 204 || response.is_empty() {
                    Ok(Value::Null)
                } else {
                    serde_json::from_slice(&response).map_err(|_| unreadable())
                }
            }
            403 => Err(Error::secrets(
                "OpenBao denied access (HTTP 403): check the token and its policy",
            )),
            404 => Err(Error::secrets("secret not found in OpenBao (HTTP 404)")),
            503 => Err(Error::secrets("OpenBao is sealed or not ready (HTTP 503)")),
            _ => Err(Error::secrets(format!("OpenBao answered HTTP {status}"))),
        }
    }

    /// Read a KV v2 secret under the connector's path (`sub` = "" for the root).
    pub async fn read_kv(&self, sub: &str) -> Result<BTreeMap<String, Value>> {
        let body = self.send(Method::GET, &self.kv_url(sub), None).await?;
        let data = body["data"]["data"]
            .as_object()
            .ok_or_else(|| Error::secrets("OpenBao answered without KV v2 data"))?;
        Ok(data.clone().into_iter().collect())
    }

    /// Write a KV v2 secret under the connector's path.
    pub async fn write_kv(&self, sub: &str, data: Value) -> Result<()> {
        self.send(
            Method::POST,
            &self.kv_url(sub),
            Some(&json!({"data": data})),
        )
        .await
        .map(|_| ())
    }

    /// Delete a KV v2 secret (all versions) under the connector's path.
    pub async fn delete_kv(&self, sub: &str) -> Result<()> {
        let url = self.kv_url(sub).replacen("/data/", "/metadata/", 1);
        match self.send(Method::DELETE, &url, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.message.contains("404") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The connector's secrets, from the cache when fresh enough
    /// (`openbao.cache_seconds`), without asking OpenBao whether they changed.
    pub async fn secrets(&self) -> Result<ConnectorSecrets> {
        let ttl = Duration::from_secs(self.config.cache_seconds);
        {
            let cache = self.cache.lock().await;
            if let Some(c) = cache.as_ref() {
                if c.at.elapsed() < ttl {
                    return Ok(c.secrets.clone());
                }
            }
        }
        self.fetch(None).await
    }

    /// The connector's secrets as they are in OpenBao now, for signing: the
    /// secret's version is checked first (one small request) and the secret
    /// read again only when it changed (or the cache is older than
    /// `openbao.cache_seconds`). A lease issued after a rotation of
    /// `JWT_SECRET` is therefore signed with the new secret; with
    /// `openbao.signing_check_ms` set, a lease issued that long after it.
    pub async fn secrets_for_signing(&self) -> Result<ConnectorSecrets> {
        let ttl = Duration::from_secs(self.config.cache_seconds);
        let reuse = Duration::from_millis(self.config.signing_check_ms);
        if !reuse.is_zero() {
            let cache = self.cache.lock().await;
            if let Some(c) = cache.as_ref() {
                if c.confirmed.elapsed() < reuse && c.at.elapsed() < ttl {
                    return Ok(c.secrets.clone());
                }
            }
        }
        let started = Instant::now();
        let current = self.checked_version().await?;
        if let Some(current) = &current {
            let mut cache = self.cache.lock().await;
            if let Some(c) = cache.as_mut() {
                if c.version.as_ref() == Some(current) && c.at.elapsed() < ttl {
                    // the check began at or after `started`
                    c.confirmed = c.confirmed.max(started);
                    return Ok(c.secrets.clone());
                }
            }
        }
        self.fetch(current).await
    }

    /// The secret's version as a check started after this call saw it,
    /// sharing that check with the calls made meanwhile.
    async fn checked_version(&self) -> Result<Option<KvVersion>> {
        let checks = &self.checks;
        let wanted = checks.started.load(Ordering::SeqCst) + 1;
        let _running = checks.running.lock().await;
        {
            let finished = checks.finished.lock().unwrap_or_else(|e| e.into_inner());
            if finished.0 >= wanted {
                if let Some(outcome) = &finished.1 {
                    return outcome.clone();
                }
            }
        }
        let number = checks.started.fetch_add(1, Ordering::SeqCst) + 1;
        let outcome = self.current_version().await;
        *checks.finished.lock().unwrap_or_else(|e| e.into_inner()) =
            (number, Some(outcome.clone()));
        outcome
    }

    /// The secret's version now, from its KV v2 metadata; `None` when the
    /// token may not read metadata (then only a full read tells).
    async fn current_version(&self) -> Result<Option<KvVersion>> {
        if self.metadata_denied.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let url = self.kv_url("").replacen("/data/", "/metadata/", 1);
        let (status, body) = self.send_raw(Method::GET, &url, None).await?;
        match status {
            200 => {
                let body: Value = serde_json::from_slice(&body).map_err(|_| unreadable())?;
                let data = &body["data"];
                match (
                    data["current_version"].as_u64(),
                    data["created_time"].as_str(),
                ) {
                    (Some(version), Some(created_time)) => Ok(Some(KvVersion {
                        created_time: created_time.to_string(),
                        version,
                    })),
                    _ => Err(Error::secrets(
                        "OpenBao answered without KV v2 metadata (is the mount KV version 2?)",
                    )),
                }
            }
            403 => {
                self.metadata_denied.store(true, Ordering::Relaxed);
                tracing::warn!(
                    mount = %self.config.mount,
                    path = %self.config.path,
                    "the OpenBao token may not read the secret's metadata: every lease reads the secret itself to see a rotation (grant read on <mount>/metadata/<path> to save that)"
                );
                Ok(None)
            }
            404 => Err(Error::secrets("secret not found in OpenBao (HTTP 404)")),
            503 => Err(Error::secrets("OpenBao is sealed or not ready (HTTP 503)")),
            _ => Err(Error::secrets(format!("OpenBao answered HTTP {status}"))),
        }
    }

    /// Read the secret in full and cache it, with `checked` (the version a
    /// metadata read just saw) when the data read is of that version.
    async fn fetch(&self, checked: Option<KvVersion>) -> Result<ConnectorSecrets> {
        let started = Instant::now();
        let body = self.send(Method::GET, &self.kv_url(""), None).await?;
        let kv: BTreeMap<String, Value> = body["data"]["data"]
            .as_object()
            .ok_or_else(|| Error::secrets("OpenBao answered without KV v2 data"))?
            .clone()
            .into_iter()
            .collect();
        let read_version = body["data"]["metadata"]["version"].as_u64();
        let get = |k: &str| -> Option<Secret> {
            kv.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(Secret::new)
        };
        let missing = |k: &str| {
            Error::secrets(format!(
                "OpenBao secret {}/{} has no {k}",
                self.config.mount, self.config.path
            ))
        };
        let secrets = ConnectorSecrets {
            jwt_secret: get("JWT_SECRET").ok_or_else(|| missing("JWT_SECRET"))?,
            publishable_key: get("SUPABASE_PUBLISHABLE_KEY")
                .or_else(|| get("ANON_KEY"))
                .ok_or_else(|| missing("SUPABASE_PUBLISHABLE_KEY"))?,
            postgres_password: get("POSTGRES_PASSWORD"),
        };
        // A rotation between the two reads leaves the cache without a
        // version: the next check reads the secret again.
        *self.cache.lock().await = Some(Cached {
            at: Instant::now(),
            confirmed: started,
            version: checked.filter(|c| Some(c.version) == read_version),
            secrets: secrets.clone(),
        });
        Ok(secrets)
    }

}

fn unreachable(what: &str) -> Error {
    Error::secrets(format!("OpenBao unreachable: {what}"))
}

fn unreadable() -> Error {
    Error::secrets("OpenBao answered with something that is not JSON")
}

/// How requests reach OpenBao: plain HTTP/1.1 over TCP for an `http://`
/// address (a dev server, or an agent on the same host), reqwest with TLS
/// for `https://`. Building a TLS client makes OpenSSL parse the system CA
/// bundle (about 50 ms), a third of a short CLI run, which a plain address
/// never needs. Both keep connections alive between requests: the version
/// check before each signing action is then one small request.
enum Transport {
    Plain {
        timeout: Duration,
        connect_timeout: Duration,
        idle: std::sync::Mutex<Vec<Sender>>,
    },
    Tls(reqwest::Client),
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>;

/// Idle plain connections kept for reuse.
const MAX_IDLE: usize = 8;

impl Transport {
    fn new(config: &OpenBaoConfig) -> Result<Transport> {
        let timeout = Duration::from_secs(config.timeout_seconds.max(1));
        let connect_timeout = Duration::from_secs(config.timeout_seconds.clamp(1, 5));
        let addr = config.addr.as_deref().unwrap_or_default();
        if addr.starts_with("http://") {
            return Ok(Transport::Plain {
                timeout,
                connect_timeout,
                idle: std::sync::Mutex::new(Vec::new()),
            });
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .build()
            .map_err(|e| Error::internal(format!("HTTP client: {e}")))?;
        Ok(Transport::Tls(client))
    }

    /// One request: its status and body. Errors never carry the token.
    async fn send(
        &self,
        method: Method,
        url: &str,
        token: Option<&Secret>,
        body: Option<&Value>,
    ) -> Result<(u16, Vec<u8>)> {
        match self {
            Transport::Tls(client) => {
                let mut req = client.request(method, url);
                if let Some(t) = token {
                    req = req.header("X-Vault-Token", t.expose());
                }
                if let Some(b) = body {
                    req = req.json(b);
                }
                let resp = req.send().await.map_err(|e| {
                    unreachable(if e.is_timeout() {
                        "timed out"
                    } else if e.is_connect() {
                        "cannot connect"
                    } else {
                        "request failed"
                    })
                })?;
                let status = resp.status().as_u16();
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|_| unreachable("request failed"))?;
                Ok((status, bytes.to_vec()))
            }
            Transport::Plain {
                timeout,
                connect_timeout,
                idle,
            } => {
                let request = async {
                    let uri: hyper::Uri = url.parse().map_err(|_| unreachable("bad address"))?;
                    // A kept connection the server closed meanwhile fails
                    // before any answer: try once more on a new one.
                    if let Some(sender) = take_idle(idle) {
                        if let Ok((sender, answer)) =
                            plain_request(sender, &method, &uri, token, body).await
                        {
                            keep_idle(idle, sender);
                            return Ok(answer);
                        }
                    }
                    let sender = plain_connect(&uri, *connect_timeout).await?;
                    let (sender, answer) = plain_request(sender, &method, &uri, token, body)
                        .await
                        .map_err(|_| unreachable("request failed"))?;
                    keep_idle(idle, sender);
                    Ok(answer)
                };
                tokio::time::timeout(*timeout, request)
                    .await
                    .map_err(|_| unreachable("timed out"))?
            }
        }
    }
}

/// An idle kept connection that is still open, if any.
fn take_idle(idle: &std::sync::Mutex<Vec<Sender>>) -> Option<Sender> {
    let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
    while let Some(sender) = idle.pop() {
        if !sender.is_closed() {
            return Some(sender);
        }
    }
    None
}

fn keep_idle(idle: &std::sync::Mutex<Vec<Sender>>, sender: Sender) {
    let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
    if !sender.is_closed() && idle.len() < MAX_IDLE {
        idle.push(sender);
    }
}

/// A new HTTP/1.1 connection to the URI's host.
async fn plain_connect(uri: &hyper::Uri, connect_timeout: Duration) -> Result<Sender> {
    let authority = uri
        .authority()
        .ok_or_else(|| unreachable("bad address"))?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::time::timeout(
        connect_timeout,
        tokio::net::TcpStream::connect((authority.host(), port)),
    )
    .await
    .map_err(|_| unreachable("timed out"))?
    .map_err(|_| unreachable("cannot connect"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|_| unreachable("request failed"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One HTTP/1.1 request on a connection; the connection comes back with
/// the answer, for reuse.
async fn plain_request(
    mut sender: Sender,
    method: &Method,
    uri: &hyper::Uri,
    token: Option<&Secret>,
    body: Option<&Value>,
) -> std::result::Result<(Sender, (u16, Vec<u8>)), ()> {
    use http_body_util::BodyExt;
    let authority = uri.authority().ok_or(())?;
    sender.ready().await.map_err(|_| ())?;
    let mut request = hyper::Request::builder()
        .method(method.clone())
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(hyper::header::HOST, authority.as_str());
    if let Some(t) = token {
        request = request.header("X-Vault-Token", t.expose());
    }
    let payload = match body {
        Some(b) => {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
            bytes::Bytes::from(serde_json::to_vec(b).map_err(|_| ())?)
        }
        None => bytes::Bytes::new(),
    };
    let request = request
        .body(http_body_util::Full::new(payload))
        .map_err(|_| ())?;
    let response = sender.send_request(request).await.map_err(|_| ())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|_| ())?
        .to_bytes();
    Ok((sender, (status, body.to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn config(addr: &str) -> OpenBaoConfig {
        OpenBaoConfig {
            addr: Some(addr.into()),
            token: Some(Secret::new("t0ken")),
            ..OpenBaoConfig::default()
        }
    }

    #[test]
    fn plain_http_needs_no_tls_client() {
        assert!(matches!(
            Transport::new(&config("http://127.0.0.1:8200")).unwrap(),
            Transport::Plain { .. }
        ));
        assert!(matches!(
            Transport::new(&config("https://bao.internal:8200")).unwrap(),
            Transport::Tls(_)
        ));
    }

    #[tokio::test]
    async fn plain_request_sends_the_token_and_reads_a_chunked_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
            }
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{\"a\": 1\r\n1\r\n}\r\n0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8_lossy(&seen).to_lowercase()
        });
        let bao = OpenBao::new(config(&format!("http://{addr}"))).unwrap();
        let body = bao
            .send(Method::GET, &bao.url("secret/data/x"), None)
            .await
            .unwrap();
        assert_eq!(body, json!({"a": 1}));
        let request = server.await.unwrap();
        assert!(
            request.starts_with("get /v1/secret/data/x http/1.1"),
            "{request}"
        );
        assert!(request.contains("x-vault-token: t0ken"), "{request}");
    }

    /// Read one request head (no body) from `socket`.
    async fn read_head(socket: &mut tokio::net::TcpStream) -> String {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1];
        while !seen.ends_with(b"\r\n\r\n") {
            if socket.read(&mut buf).await.unwrap() == 0 {
                break;
            }
            seen.push(buf[0]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    }

    async fn answer(socket: &mut tokio::net::TcpStream, body: &str) {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        socket.write_all(body.as_bytes()).await.unwrap();
    }

    #[tokio::test]
    async fn plain_requests_keep_their_connection_alive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // One connection only: a second one would never be accepted.
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            for n in 0..3 {
                assert!(read_head(&mut socket).await.starts_with("GET /v1/x"));
                answer(&mut socket, &format!("{{\"n\": {n}}}")).await;
            }
        });
        let bao = OpenBao::new(config(&format!("http://{addr}"))).unwrap();
        for n in 0..3 {
            let body = bao.send(Method::GET, &bao.url("x"), None).await.unwrap();
            assert_eq!(body, json!({ "n": n }));
        }
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_kept_connection_the_server_closed_is_replaced() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for n in 0..2 {
                let (mut socket, _) = listener.accept().await.unwrap();
                read_head(&mut socket).await;
                answer(&mut socket, &format!("{{\"n\": {n}}}")).await;
                // then the server closes it (an idle timeout, a restart)
            }
        });
        let bao = OpenBao::new(config(&format!("http://{addr}"))).unwrap();
        assert_eq!(
            bao.send(Method::GET, &bao.url("x"), None).await.unwrap(),
            json!({"n": 0})
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            bao.send(Method::GET, &bao.url("x"), None).await.unwrap(),
            json!({"n": 1})
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn concurrent_version_checks_share_requests_started_after_them() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let counter = counter.clone();
                tokio::spawn(async move {
                    while read_head(&mut socket)
                        .await
                        .starts_with("GET /v1/secret/metadata/")
                    {
                        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        let body = format!(
                            r#"{{"data": {{"current_version": {n}, "created_time": "t"}}}}"#
                        );
                        answer(&mut socket, &body).await;
                    }
                });
            }
        });
        let bao = OpenBao::new(config(&format!("http://{addr}"))).unwrap();
        // Eight at once: the first check, then one more for all who came
        // while it ran.
        let seen = futures_util::future::join_all((0..8).map(|_| bao.checked_version())).await;
        let versions: Vec<u64> = seen
            .into_iter()
            .map(|v| v.unwrap().unwrap().version)
            .collect();
        assert!(requests.load(Ordering::SeqCst) <= 2, "{versions:?}");
        // One after another: each sees a check that started after it came.
        let before = requests.load(Ordering::SeqCst);
        let next = bao.checked_version().await.unwrap().unwrap().version;
        assert_eq!(
            (next, requests.load(Ordering::SeqCst)),
            (before + 1, before + 1)
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_not_a_hang() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let bao = OpenBao::new(config(&format!("http://127.0.0.1:{port}"))).unwrap();
        let err = bao.read_kv("").await.unwrap_err();
        assert_eq!(err.code.as_str(), "secrets_unavailable");
        assert!(err.message.contains("cannot connect"), "{}", err.message);
    }
}
