//! Query page tokens: where a truncated query goes on, without telling the caller the record key
//! it stopped at. Keys can be sensitive (a resident's id number is the population dataset's key)
//! and are masked for most consumers, so a token seals the key with a node-local secret
//! (ChaCha20-Poly1305), bound to the dataset and the caller's department: only this node can
//! open it, and only for the same reader of the same dataset.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use exchange_core::store::{Batch, Store, StoreError};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};

/// Where the secret lives in the node's store. It never leaves the node.
const SECRET_KEY: &[u8] = b"meta/page-token-secret";

/// Seals and opens page tokens, and makes key pseudonyms.
pub(crate) struct PageTokens {
    key: LessSafeKey,
    rng: SystemRandom,
    /// For key pseudonyms; derived from the secret, so no key serves two purposes.
    pseudonyms: hmac::Key,
}

fn crypto(what: &str) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(SECRET_KEY).into_owned(),
        message: what.to_string(),
    }
}

impl PageTokens {
    /// Loads the node's secret, creating it (durably) on first start, so tokens outlive restarts.
    pub(crate) fn load_or_create(store: &dyn Store) -> Result<Self, StoreError> {
        let rng = SystemRandom::new();
        let secret = match store.get(SECRET_KEY)? {
            Some(secret) => secret,
            None => {
                let mut secret = vec![0u8; CHACHA20_POLY1305.key_len()];
                rng.fill(&mut secret).map_err(|_| crypto("no randomness"))?;
                let mut batch = Batch::default();
                batch.put(SECRET_KEY, secret.clone());
                store.commit(batch)?;
                secret
            }
        };
        let derive = |purpose: &[u8]| hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &secret), purpose);
        let token_key = derive(b"exchange page tokens");
        let key = UnboundKey::new(&CHACHA20_POLY1305, token_key.as_ref()).map_err(|_| crypto("wrong length"))?;
        Ok(Self {
            key: LessSafeKey::new(key),
            rng,
            pseudonyms: hmac::Key::new(hmac::HMAC_SHA256, derive(b"exchange key pseudonyms").as_ref()),
        })
    }

    /// A token for going on after `record_key` in `scope` (dataset and reader). Fails only
    /// when the system has no randomness (a repeated nonce would expose the secret).
    pub(crate) fn seal(&self, scope: &str, record_key: &str) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| "no randomness for a page token".to_string())?;
        let mut sealed = record_key.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(scope.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| "cannot seal a page token".to_string())?;
        let mut token = nonce.to_vec();
        token.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(token))
    }

    /// A stand-in for a record key the reader sees masked: the same for every read of `scope`
    /// (dataset and reading department), different for each key and for every other reader, and
    /// telling nothing of the key. Masked keys collide (`3201**********0012` is many people);
    /// a consumer keeping a copy needs one that does not.
    pub(crate) fn pseudonym(&self, scope: &str, record_key: &str) -> String {
        let mut message = Vec::with_capacity(scope.len() + record_key.len() + 1);
        message.extend_from_slice(scope.as_bytes());
        message.push(0);
        message.extend_from_slice(record_key.as_bytes());
        let tag = hmac::sign(&self.pseudonyms, &message);
        format!("~{}", URL_SAFE_NO_PAD.encode(&tag.as_ref()[..16]))
    }

    /// The record key a token names, if this node sealed it for `scope`.
    pub(crate) fn open(&self, scope: &str, token: &str) -> Option<String> {
        let bytes = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let key = self
            .key
            .open_in_place(nonce, Aad::from(scope.as_bytes()), &mut sealed)
            .ok()?;
        String::from_utf8(key.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use exchange_core::store::MemStore;

    use super::*;

    #[test]
    fn a_token_opens_only_on_its_node_for_its_scope_and_hides_the_key() {
        let store = MemStore::new();
        let tokens = PageTokens::load_or_create(&store).unwrap();
        let token = tokens
            .seal("js.gongan/population js.scjg", "320102199001010012")
            .unwrap();
        assert!(!token.contains("320102"), "{token}");
        assert_eq!(
            tokens.open("js.gongan/population js.scjg", &token).as_deref(),
            Some("320102199001010012")
        );
        // Another reader, another dataset, a changed token, another node: nothing.
        assert_eq!(tokens.open("js.gongan/population js.rsj", &token), None);
        let mut changed = token.clone().into_bytes();
        changed[20] = if changed[20] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            tokens.open("js.gongan/population js.scjg", &String::from_utf8(changed).unwrap()),
            None
        );
        assert_eq!(tokens.open("js.gongan/population js.scjg", "not a token!"), None);
        let elsewhere = PageTokens::load_or_create(&MemStore::new()).unwrap();
        assert_eq!(elsewhere.open("js.gongan/population js.scjg", &token), None);
        // The same node after a restart still opens it.
        let again = PageTokens::load_or_create(&store).unwrap();
        assert!(again.open("js.gongan/population js.scjg", &token).is_some());
    }
}

#[cfg(test)]
mod pseudonym_tests {
    use exchange_core::store::MemStore;

    use super::*;

    #[test]
    fn pseudonyms_are_stable_per_reader_distinct_per_key_and_reveal_nothing() {
        let store = MemStore::new();
        let secrets = PageTokens::load_or_create(&store).unwrap();
        let a = secrets.pseudonym("js.gongan/population\njs.scjg", "320102199001010012");
        assert_eq!(
            a,
            secrets.pseudonym("js.gongan/population\njs.scjg", "320102199001010012")
        );
        assert_eq!(
            a,
            PageTokens::load_or_create(&store)
                .unwrap()
                .pseudonym("js.gongan/population\njs.scjg", "320102199001010012")
        );
        assert_ne!(
            a,
            secrets.pseudonym("js.gongan/population\njs.scjg", "320102199001010020")
        );
        assert_ne!(
            a,
            secrets.pseudonym("js.gongan/population\njs.rsj", "320102199001010012")
        );
        assert!(a.starts_with('~') && !a.contains("3201") && a.len() == 23, "{a}");
    }
}
