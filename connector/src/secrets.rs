//! OpenBao client (KV v2, token or AppRole login) and a short-lived cache of
//! the secrets the connector needs. There is no fallback: when OpenBao cannot
//! answer, the action fails with `secrets_unavailable`.

use crate::config::{OpenBaoConfig, Secret};
use crate::error::{Error, Result};
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
    http: reqwest::Client,
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
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_seconds.max(1)))
            .connect_timeout(Duration::from_secs(config.timeout_seconds.clamp(1, 5)))
            .build()
            .map_err(|e| Error::internal(format!("HTTP client: {e}")))?;
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
        let resp = self
            .http
            .post(self.url(&format!("auth/{}/login", approle.mount)))
            .json(&json!({"role_id": approle.role_id, "secret_id": approle.secret_id.expose()}))
            .send()
            .await
            .map_err(unreachable)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Error::secrets(format!(
                "OpenBao AppRole login refused (HTTP {status})"
            )));
        }
        let body: Value = resp.json().await.map_err(unreachable)?;
        let token = body["auth"]["client_token"]
            .as_str()
            .ok_or_else(|| Error::secrets("OpenBao AppRole login returned no token"))?;
        *guard = Some(Secret::new(token));
        Ok(Secret::new(token))
    }

    /// One authenticated request; an expired AppRole token is renewed once.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut relogin = false;
        loop {
            let token = self.token(relogin).await?;
            let mut req = self
                .http
                .request(method.clone(), url)
                .header("X-Vault-Token", token.expose());
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.map_err(unreachable)?;
            let status = resp.status().as_u16();
            match status {
                200..=299 => {
                    return if status == 204 {
                        Ok(Value::Null)
                    } else {
                        resp.json().await.map_err(unreachable)
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
        let body = self
            .send(reqwest::Method::GET, &self.kv_url(sub), None)
            .await?;
        let data = body["data"]["data"]
            .as_object()
            .ok_or_else(|| Error::secrets("OpenBao answered without KV v2 data"))?;
        Ok(data.clone().into_iter().collect())
    }

    /// Write a KV v2 secret under the connector's path.
    pub async fn write_kv(&self, sub: &str, data: Value) -> Result<()> {
        self.send(
            reqwest::Method::POST,
            &self.kv_url(sub),
            Some(&json!({"data": data})),
        )
        .await
        .map(|_| ())
    }

    /// Delete a KV v2 secret (all versions) under the connector's path.
    pub async fn delete_kv(&self, sub: &str) -> Result<()> {
        let url = self.kv_url(sub).replacen("/data/", "/metadata/", 1);
        match self.send(reqwest::Method::DELETE, &url, None).await {
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

fn unreachable(e: reqwest::Error) -> Error {
    // reqwest errors name the URL but never the token header.
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    Error::secrets(format!("OpenBao unreachable: {what}"))
}
