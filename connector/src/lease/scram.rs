//! Lease passwords and the SCRAM-SHA-256 verifiers sent to PostgreSQL in
//! their place (RFC 5802/7677; see docs/leases.md for the iteration count).

use crate::config::Secret;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Iterations of PBKDF2 in the verifier. Key stretching protects guessable
/// passwords; a 256-bit random one gains nothing from it, and a low count
/// keeps PostgreSQL's login check and our issue path cheap.
pub const SCRAM_ITERATIONS: u32 = 256;

/// 32 bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::getrandom(&mut buf).expect("the OS random number generator is available");
    buf
}

/// A fresh lease password: 256 random bits, hex-encoded (URL-safe).
pub fn new_password() -> Secret {
    Secret::new(hex::encode(random_bytes::<32>()))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, the form
/// PostgreSQL stores and accepts as `PASSWORD '…'`.
pub fn verifier(password: &Secret, salt: &[u8], iterations: u32) -> String {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.expose().as_bytes(), salt, iterations, &mut salted);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        B64.encode(salt),
        B64.encode(stored_key),
        B64.encode(server_key)
    )
}

/// A verifier with a fresh random salt and the connector's iteration count.
pub fn new_verifier(password: &Secret) -> String {
    verifier(password, &random_bytes::<16>(), SCRAM_ITERATIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc7677_test_vector() {
        // RFC 7677 §3 inputs (password "pencil", its salt, 4096 iterations); the
        // expected keys were computed independently with Python's hashlib.
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = verifier(&Secret::new("pencil"), &salt, 4096);
        assert_eq!(
            v,
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
    }

    #[test]
    fn passwords_are_random_and_long() {
        let a = new_password();
        let b = new_password();
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.expose().len(), 64);
        assert!(new_verifier(&a).starts_with("SCRAM-SHA-256$256:"));
    }
}
