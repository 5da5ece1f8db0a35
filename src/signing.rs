//! HMAC-SHA256 keys with ids, so they can be rotated: the first configured key signs, every
//! configured key verifies. Signed links and the audit chain each have their own list. A leaf
//! module: the database handle carries the audit keys without the library depending on access.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub type HmacSha256 = Hmac<Sha256>;

/// Signing keys by id. Never printed: `Debug` shows the ids only.
#[derive(Clone)]
pub struct SigningKeys {
    keys: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("SigningKeys").field("ids", &ids).finish()
    }
}

impl SigningKeys {
    /// Parses `id:secret` entries; the first signs. Secrets must be at least 32 characters.
    pub fn parse(entries: &[String]) -> Result<SigningKeys, String> {
        let mut keys = Vec::new();
        for entry in entries {
            let (id, secret) = entry
                .split_once(':')
                .ok_or("each key is id:secret (for example 2026-11:<64 hex digits>)")?;
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err("a key id is letters, digits and '-'".into());
            }
            if secret.len() < 32 {
                return Err(format!(
                    "key {id:?}: the secret must be at least 32 characters"
                ));
            }
            if keys.iter().any(|(known, _)| known == id) {
                return Err(format!("key id {id:?} appears twice"));
            }
            keys.push((id.to_string(), secret.as_bytes().to_vec()));
        }
        if keys.is_empty() {
            return Err("no keys".into());
        }
        Ok(SigningKeys { keys })
    }

    /// A key made for this process only: links die with it.
    pub fn ephemeral() -> SigningKeys {
        SigningKeys {
            keys: vec![("ephemeral".into(), {
                let mut secret = vec![0u8; 32];
                OsRng.fill_bytes(&mut secret);
                secret
            })],
        }
    }

    pub fn mac(&self, id: &str) -> Option<HmacSha256> {
        let (_, secret) = self.keys.iter().find(|(k, _)| k == id)?;
        HmacSha256::new_from_slice(secret).ok()
    }
}

impl SigningKeys {
    /// The id of the key that signs.
    pub fn signing_id(&self) -> &str {
        &self.keys[0].0
    }
}
