//! HS256 JSON Web Tokens, as GoTrue signs them, so the central PostgREST
//! accepts lease tokens.

use crate::config::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// Sign `claims` with HS256.
pub fn sign(claims: &Value, secret: &Secret) -> String {
    let header = B64URL.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string());
    let payload = B64URL.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    let signature = B64URL.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Verify an HS256 token's signature and return its claims (no `exp`
/// check: callers decide). Used by tests and the demo.
#[cfg(any(test, feature = "devtools", feature = "internals"))]
pub fn verify(token: &str, secret: &Secret) -> Option<Value> {
    let (signing_input, signature) = token.rsplit_once('.')?;
    let (header, payload) = signing_input.split_once('.')?;
    let header: Value = serde_json::from_slice(&B64URL.decode(header).ok()?).ok()?;
    if header["alg"] != "HS256" {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).ok()?;
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&B64URL.decode(signature).ok()?).ok()?;
    serde_json::from_slice(&B64URL.decode(payload).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let secret = Secret::new("super-secret-jwt-token-with-at-least-32-characters-long");
        let token = sign(&json!({"role": "lease_x", "exp": 1}), &secret);
        assert_eq!(verify(&token, &secret).unwrap()["role"], "lease_x");
        assert!(verify(&token, &Secret::new("other")).is_none());
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64URL.encode(json!({"role": "postgres", "exp": 1}).to_string());
        parts[1] = &forged;
        assert!(verify(&parts.join("."), &secret).is_none());
    }

    #[test]
    fn known_vector() {
        // jwt.io's HS256 example, secret "your-256-bit-secret"
        let token = sign(
            &json!({"sub": "1234567890", "name": "John Doe", "iat": 1516239022}),
            &Secret::new("your-256-bit-secret"),
        );
        assert!(verify(&token, &Secret::new("your-256-bit-secret")).is_some());
    }
}
