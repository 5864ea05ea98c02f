//! Signed tokens: HS256 JWTs with a key id, so the secret can rotate.
//!
//! The keyring's first key signs; every key verifies. Keys come from
//! `PREAU_SECRET` (`KID:SECRET[,KID:SECRET...]`, shared by all nodes) or, when
//! that is unset, from `<data>/secret`, which the first start creates with a
//! random key (mode 0600). HMAC verification is constant-time (ring, through
//! jsonwebtoken).

use std::io::Write;
use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::protocol::valid_class;
use crate::protocol::{Role, UserInfo};

/// Name of the secret file in the data folder.
pub const SECRET_FILE: &str = "secret";
const MIN_SECRET_LEN: usize = 16;
const MAX_ID_LEN: usize = 128;
const MAX_NAME_LEN: usize = 100;
const MAX_CLASSES: usize = 64;

/// User ids of the tokens nodes mint for catching up from each other
/// (they page many rooms at once and are not rate-limited).
pub const NODE_USER_PREFIX: &str = "node:";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("bad secret configuration: {0}")]
    Secret(String),
    #[error("cannot read or write the secret file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot sign token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id, stable across sessions (the ENT's id).
    pub sub: String,
    /// Display name shown to others.
    pub name: String,
    pub role: Role,
    /// Classes the user belongs to (a teacher: the classes they teach; a
    /// parent: their children's classes).
    #[serde(default)]
    pub classes: Vec<String>,
    /// For a parent: their children, each a user id or `{id, name?,
    /// classes?}` (then items of a child's classes are labelled with
    /// the child: a diary's due homework, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Child>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
}

/// One of a parent's children, as their token lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ChildClaim", into = "ChildClaim")]
pub struct Child {
    pub id: String,
    /// Shown to label what is the child's (their id when absent).
    pub name: Option<String>,
    /// The child's classes, among the parent's `classes`. Empty: the
    /// token does not say, and the child counts as in each of them.
    pub classes: Vec<String>,
}

impl Child {
    /// Whether what is of class `class` concerns this child.
    pub fn in_class(&self, class: &str) -> bool {
        self.classes.is_empty() || self.classes.iter().any(|c| c == class)
    }

    /// The name shown for the child.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

impl From<&str> for Child {
    fn from(id: &str) -> Child {
        Child {
            id: id.to_owned(),
            name: None,
            classes: Vec::new(),
        }
    }
}

impl From<String> for Child {
    fn from(id: String) -> Child {
        Child {
            id,
            name: None,
            classes: Vec::new(),
        }
    }
}

/// A child on the wire: a bare id, or a map (written as a bare id when it
/// says nothing more, so older tokens read the same).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ChildClaim {
    Id(String),
    Full {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        classes: Vec<String>,
    },
}

impl From<ChildClaim> for Child {
    fn from(claim: ChildClaim) -> Child {
        match claim {
            ChildClaim::Id(id) => Child::from(id),
            ChildClaim::Full { id, name, classes } => Child { id, name, classes },
        }
    }
}

impl From<Child> for ChildClaim {
    fn from(child: Child) -> ChildClaim {
        if child.name.is_none() && child.classes.is_empty() {
            ChildClaim::Id(child.id)
        } else {
            ChildClaim::Full {
                id: child.id,
                name: child.name,
                classes: child.classes,
            }
        }
    }
}

impl Claims {
    /// Whether `user` is one of this parent's children.
    pub fn has_child(&self, user: &str) -> bool {
        self.children.iter().any(|c| c.id == user)
    }

    pub fn user_info(&self) -> UserInfo {
        UserInfo {
            id: self.sub.clone(),
            name: self.name.clone(),
            role: self.role,
        }
    }

    pub fn in_class(&self, class: &str) -> bool {
        self.classes.iter().any(|c| c == class)
    }

    /// Checks what the signature cannot: sizes and class names.
    pub fn validate(&self) -> Result<(), AuthError> {
        let bad = |what: &str| Err(AuthError::Invalid(what.to_owned()));
        if self.sub.is_empty() || self.sub.len() > MAX_ID_LEN {
            return bad("sub must be 1 to 128 bytes");
        }
        if self.name.trim().is_empty() || self.name.len() > MAX_NAME_LEN {
            return bad("name must be 1 to 100 bytes");
        }
        if self.classes.len() > MAX_CLASSES || self.children.len() > MAX_CLASSES {
            return bad("too many classes or children");
        }
        if let Some(class) = self.classes.iter().find(|c| !valid_class(c) || *c == "_") {
            return Err(AuthError::Invalid(format!("bad class name {class:?}")));
        }
        for child in &self.children {
            if child.id.is_empty() || child.id.len() > MAX_ID_LEN {
                return bad("a child's id must be 1 to 128 bytes");
            }
            if child
                .name
                .as_ref()
                .is_some_and(|n| n.trim().is_empty() || n.len() > MAX_NAME_LEN)
            {
                return bad("a child's name must be 1 to 100 bytes");
            }
            if child.classes.len() > MAX_CLASSES {
                return bad("too many classes for a child");
            }
            // A child's classes are among the parent's: the policy reads
            // `classes`, the labels read the child's.
            if let Some(class) = child.classes.iter().find(|c| !self.in_class(c)) {
                return Err(AuthError::Invalid(format!(
                    "child {:?}: class {class:?} is not in classes",
                    child.id
                )));
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// The keys that sign and verify tokens.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("Keyring").field("kids", &kids).finish()
    }
}

impl Keyring {
    /// Parses `KID:SECRET[,KID:SECRET...]` (commas or newlines). A value
    /// without `KID:` gets the key id `default`.
    pub fn parse(spec: &str) -> Result<Keyring, AuthError> {
        let mut keys = Vec::new();
        for entry in spec
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (kid, secret) = match entry.split_once(':') {
                Some((kid, secret)) if valid_kid(kid) => (kid, secret),
                _ => ("default", entry),
            };
            if secret.len() < MIN_SECRET_LEN {
                return Err(AuthError::Secret(format!(
                    "the secret of key {kid:?} is shorter than {MIN_SECRET_LEN} bytes"
                )));
            }
            if keys.iter().any(|k: &Key| k.kid == kid) {
                return Err(AuthError::Secret(format!("key id {kid:?} appears twice")));
            }
            keys.push(Key {
                kid: kid.to_owned(),
                encoding: EncodingKey::from_secret(secret.as_bytes()),
                decoding: DecodingKey::from_secret(secret.as_bytes()),
            });
        }
        if keys.is_empty() {
            return Err(AuthError::Secret("no key given".to_owned()));
        }
        Ok(Keyring { keys })
    }

    /// The keyring from `env_secret` if set, else from `<data>/secret`,
    /// creating that file with a random key on first use.
    pub fn load(data_dir: &Path, env_secret: Option<&str>) -> Result<Keyring, AuthError> {
        if let Some(spec) = env_secret.filter(|s| !s.trim().is_empty()) {
            return Keyring::parse(spec);
        }
        let path = data_dir.join(SECRET_FILE);
        let io_err = |source| AuthError::SecretFile {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(spec) => Keyring::parse(&spec),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir).map_err(io_err)?;
                let spec = generate_secret_line();
                write_private(&path, &spec).map_err(io_err)?;
                tracing::info!(path = %path.display(), "generated a new token secret");
                Keyring::parse(&spec)
            }
            Err(err) => Err(io_err(err)),
        }
    }

    pub fn signing_kid(&self) -> &str {
        self.keys
            .first()
            .map(|k| k.kid.as_str())
            .unwrap_or("default")
    }

    /// Signs `claims` with the first key.
    pub fn mint(&self, claims: &Claims) -> Result<String, AuthError> {
        self.sign(claims, None)
    }

    /// Signs `payload` with the first key, its header naming the key and `typ`.
    fn sign<T: Serialize>(&self, payload: &T, typ: Option<&str>) -> Result<String, AuthError> {
        let key = self
            .keys
            .first()
            .ok_or_else(|| AuthError::Secret("no key".to_owned()))?;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        header.typ = typ.map(str::to_owned).or(header.typ);
        Ok(jsonwebtoken::encode(&header, payload, &key.encoding)?)
    }

    /// Verifies signature, algorithm, key id and expiry against `now_secs`.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Claims, AuthError> {
        let invalid = |e: jsonwebtoken::errors::Error| AuthError::Invalid(e.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        if header.typ.as_deref() == Some(VALUE_TYP) {
            return Err(AuthError::Invalid("a signed value, not a token".to_owned()));
        }
        let key = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| &k.kid == kid)
                .ok_or_else(|| AuthError::Invalid(format!("unknown key id {kid:?}")))?,
            None => self
                .keys
                .first()
                .ok_or_else(|| AuthError::Invalid("no key".to_owned()))?,
        };
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked below against the injected clock.
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp".to_owned()].into_iter().collect();
        let data =
            jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation).map_err(invalid)?;
        let claims = data.claims;
        if claims.exp <= now_secs {
            return Err(AuthError::Expired);
        }
        claims.validate()?;
        Ok(claims)
    }
}

/// The `typ` of signed values that are not tokens ([`Keyring::sign_value`]):
/// a token verifier refuses them, and they refuse tokens.
const VALUE_TYP: &str = "preau-value";

impl Keyring {
    /// Signs a short-lived value the server hands to a browser and reads
    /// back (the state of an ENT sign-in, in a cookie). Not a token: its
    /// `typ` differs, and [`Keyring::verify`] needs claims it lacks.
    pub fn sign_value<T: Serialize>(&self, value: &T) -> Result<String, AuthError> {
        self.sign(value, Some(VALUE_TYP))
    }

    /// Reads back a value of [`Keyring::sign_value`], if its signature
    /// holds and its `exp` is after `now_secs`.
    pub fn open_value<T: serde::de::DeserializeOwned>(
        &self,
        signed: &str,
        now_secs: u64,
    ) -> Result<T, AuthError> {
        #[derive(Deserialize)]
        struct Expiry {
            exp: u64,
        }
        let invalid = |e: jsonwebtoken::errors::Error| AuthError::Invalid(e.to_string());
        let header = jsonwebtoken::decode_header(signed).map_err(invalid)?;
        if header.typ.as_deref() != Some(VALUE_TYP) {
            return Err(AuthError::Invalid("not a signed value".to_owned()));
        }
        let key = self
            .keys
            .iter()
            .find(|k| header.kid.as_ref() == Some(&k.kid))
            .ok_or_else(|| AuthError::Invalid("unknown key id".to_owned()))?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp".to_owned()].into_iter().collect();
        let expiry = jsonwebtoken::decode::<Expiry>(signed, &key.decoding, &validation)
            .map_err(invalid)?
            .claims;
        if expiry.exp <= now_secs {
            return Err(AuthError::Expired);
        }
        Ok(
            jsonwebtoken::decode::<T>(signed, &key.decoding, &validation)
                .map_err(invalid)?
                .claims,
        )
    }
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 32
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn generate_secret_line() -> String {
    let mut secret = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut secret);
    let mut kid = [0u8; 4];
    rand::thread_rng().fill_bytes(&mut kid);
    format!("k{}:{}\n", hex::encode(kid), hex::encode(secret))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_values_and_tokens_are_not_interchangeable() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct State {
            state: String,
            exp: u64,
        }
        let keys = Keyring::parse("k1:0123456789abcdef0123456789abcdef").unwrap();
        let value = State {
            state: "abc".into(),
            exp: 100,
        };
        let signed = keys.sign_value(&value).unwrap();
        assert_eq!(keys.open_value::<State>(&signed, 99).unwrap(), value);
        assert!(matches!(
            keys.open_value::<State>(&signed, 100),
            Err(AuthError::Expired)
        ));
        // A value is no token, and a token is no value.
        assert!(keys.verify(&signed, 0).is_err());
        let token = keys.mint(&claims(100)).unwrap();
        assert!(keys.verify(&token, 99).is_ok());
        assert!(keys.open_value::<State>(&token, 0).is_err());
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "u1".into(),
            name: "Ana".into(),
            role: Role::Student,
            classes: vec!["3B".into()],
            children: vec![],
            exp,
            iat: 0,
        }
    }

    #[test]
    fn mint_verify_and_expiry() {
        let ring = Keyring::parse("k1:0123456789abcdef0123").unwrap();
        let token = ring.mint(&claims(1000)).unwrap();
        assert_eq!(ring.verify(&token, 999).unwrap().sub, "u1");
        assert!(matches!(ring.verify(&token, 1000), Err(AuthError::Expired)));
    }

    #[test]
    fn rotation_and_forgery() {
        let old = Keyring::parse("old:0123456789abcdef0123").unwrap();
        let rotated = Keyring::parse("new:fedcba9876543210fedc,old:0123456789abcdef0123").unwrap();
        let token = old.mint(&claims(1000)).unwrap();
        assert!(rotated.verify(&token, 1).is_ok(), "old key still verifies");
        assert_eq!(rotated.signing_kid(), "new");
        let other = Keyring::parse("old:xxxxxxxxxxxxxxxxxxxxxxxx").unwrap();
        assert!(matches!(
            other.verify(&token, 1),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            Keyring::parse("short:abc"),
            Err(AuthError::Secret(_))
        ));
    }

    #[test]
    fn secret_file_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = Keyring::load(dir.path(), None).unwrap();
        let b = Keyring::load(dir.path(), None).unwrap();
        let token = a.mint(&claims(u64::MAX)).unwrap();
        assert!(b.verify(&token, 1).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
