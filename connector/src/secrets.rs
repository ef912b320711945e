//! OpenBao client (KV v2, token or AppRole login) and a short-lived cache of
//! the secrets the connector needs. There is no fallback: when OpenBao cannot
//! answer, the action fails with `secrets_unavailable`.

use crate::config::{OpenBaoConfig, Secret};
use crate::error::{Error, Result};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
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

/// A minimal OpenBao HTTP client: the three calls the connector makes.
pub struct OpenBao {
    config: OpenBaoConfig,
    http: Transport,
    token: Mutex<Option<Secret>>,
    cache: Mutex<Option<(Instant, ConnectorSecrets)>>,
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

    /// One authenticated request; an expired AppRole token is renewed once.
    async fn send(&self, method: Method, url: &str, body: Option<&Value>) -> Result<Value> {
        let mut relogin = false;
        loop {
            let token = self.token(relogin).await?;
            let (status, response) = self
                .http
                .send(method.clone(), url, Some(&token), body)
                .await?;
            match status {
                200..=299 => {
                    return if status == 204 || response.is_empty() {
                        Ok(Value::Null)
                    } else {
                        serde_json::from_slice(&response).map_err(|_| unreadable())
                    };
                }
                403 if self.config.approle.is_some() && !relogin => relogin = true,
                403 => {
                    return Err(Error::secrets(
                        "OpenBao denied access (HTTP 403): check the token and its policy",
                    ))
                }
                404 => return Err(Error::secrets("secret not found in OpenBao (HTTP 404)")),
                503 => return Err(Error::secrets("OpenBao is sealed or not ready (HTTP 503)")),
                _ => return Err(Error::secrets(format!("OpenBao answered HTTP {status}"))),
            }
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

    /// The connector's secrets, from the cache when fresh enough.
    pub async fn secrets(&self) -> Result<ConnectorSecrets> {
        let ttl = Duration::from_secs(self.config.cache_seconds);
        {
            let cache = self.cache.lock().await;
            if let Some((at, s)) = cache.as_ref() {
                if at.elapsed() < ttl {
                    return Ok(s.clone());
                }
            }
        }
        let kv = self.read_kv("").await?;
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
        *self.cache.lock().await = Some((Instant::now(), secrets.clone()));
        Ok(secrets)
    }

    /// Forget cached secrets (after a rotation).
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
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
/// never needs.
enum Transport {
    Plain {
        timeout: Duration,
        connect_timeout: Duration,
    },
    Tls(reqwest::Client),
}

impl Transport {
    fn new(config: &OpenBaoConfig) -> Result<Transport> {
        let timeout = Duration::from_secs(config.timeout_seconds.max(1));
        let connect_timeout = Duration::from_secs(config.timeout_seconds.clamp(1, 5));
        let addr = config.addr.as_deref().unwrap_or_default();
        if addr.starts_with("http://") {
            return Ok(Transport::Plain {
                timeout,
                connect_timeout,
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
            } => {
                let request = plain_request(method, url, token, body, *connect_timeout);
                tokio::time::timeout(*timeout, request)
                    .await
                    .map_err(|_| unreachable("timed out"))?
            }
        }
    }
}

/// One HTTP/1.1 request on a fresh connection (OpenBao is asked rarely:
/// its answers are cached).
async fn plain_request(
    method: Method,
    url: &str,
    token: Option<&Secret>,
    body: Option<&Value>,
    connect_timeout: Duration,
) -> Result<(u16, Vec<u8>)> {
    use http_body_util::BodyExt;
    let uri: hyper::Uri = url.parse().map_err(|_| unreachable("bad address"))?;
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
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|_| unreachable("request failed"))?;
    tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(hyper::header::HOST, authority.as_str());
    if let Some(t) = token {
        request = request.header("X-Vault-Token", t.expose());
    }
    let payload = match body {
        Some(b) => {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
            bytes::Bytes::from(serde_json::to_vec(b)?)
        }
        None => bytes::Bytes::new(),
    };
    let request = request
        .body(http_body_util::Full::new(payload))
        .map_err(|_| unreachable("request failed"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|_| unreachable("request failed"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|_| unreachable("request failed"))?
        .to_bytes();
    Ok((status, body.to_vec()))
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
