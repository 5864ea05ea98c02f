//! Sign-in through the school's ENT: OpenID Connect, authorization code
//! with PKCE (`openidconnect`), then a préau token for the web app.
//!
//! - `GET /auth/config`: `{"oidc": bool, "label": …}`, so the app knows
//!   whether to offer the ENT button (always served).
//! - `GET /auth/login?return=/path`: a PKCE challenge, a CSRF state and a
//!   nonce, kept in a signed, HttpOnly cookie (not in this node's memory:
//!   with several nodes, the callback may reach another one), then a
//!   redirect to the provider.
//! - `GET /auth/callback?code&state`: checks the state, exchanges the code
//!   with the verifier, verifies the ID token (signature, audience, nonce,
//!   expiry), reads the user's claims from the userinfo endpoint, maps them
//!   to a role, classes and children (`OidcConfig`), mints a préau token
//!   valid `session`, and redirects to `return#token=…`: the fragment never
//!   reaches a server or its logs, and the app removes it at once.
//!
//! Every refusal is a short French page with a link back, and a log line
//! saying why (`oidc` target).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
    UserInfoClaims,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::auth::{now_secs, Claims, Keyring};
use crate::config::OidcConfig;
use crate::protocol::{valid_class, Role};

/// The sign-in cookie: lives as long as a sign-in may take at the ENT.
const COOKIE: &str = "preau_oidc";
const COOKIE_TTL: Duration = Duration::from_secs(600);
/// A failed discovery is tried again after this long, not at every click.
const DISCOVERY_RETRY: Duration = Duration::from_secs(10);
/// Timeout of each call to the provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// `return` paths are the app's own, at most this long.
const MAX_RETURN: usize = 512;

/// Role names as ENTs send them (lower case, accents removed): préau's own,
/// French profiles (ÉduConnect, Open ENT NG, Pronote) and English ones.
const ROLE_NAMES: &[(&str, Role)] = &[
    ("student", Role::Student),
    ("eleve", Role::Student),
    ("teacher", Role::Teacher),
    ("enseignant", Role::Teacher),
    ("parent", Role::Parent),
    ("relative", Role::Parent),
    ("responsable", Role::Parent),
    ("staff", Role::Staff),
    ("personnel", Role::Staff),
];

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the provider cannot be reached or described itself badly: {0}")]
    Discovery(String),
    #[error("the sign-in expired or was started elsewhere: {0}")]
    State(String),
    #[error("the provider refused the sign-in: {0}")]
    Provider(String),
    #[error("the code exchange failed: {0}")]
    Exchange(String),
    #[error("the ID token is not valid: {0}")]
    IdToken(String),
    #[error("the user's claims cannot be read: {0}")]
    UserInfo(String),
    #[error("the user's claims do not give a préau user: {0}")]
    Mapping(String),
    #[error("cannot sign: {0}")]
    Sign(#[from] crate::auth::AuthError),
}

impl OidcError {
    fn status(&self) -> StatusCode {
        match self {
            OidcError::Discovery(_) | OidcError::Exchange(_) | OidcError::UserInfo(_) => {
                StatusCode::BAD_GATEWAY
            }
            OidcError::Sign(_) => StatusCode::INTERNAL_SERVER_ERROR,
            OidcError::State(_)
            | OidcError::Provider(_)
            | OidcError::IdToken(_)
            | OidcError::Mapping(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// What the person at the screen is told.
    fn french(&self) -> &'static str {
        match self {
            OidcError::Discovery(_) => "L'ENT ne répond pas pour le moment. Réessayez dans quelques minutes.",
            OidcError::State(_) => "La connexion a expiré ou a été commencée dans un autre onglet. Recommencez.",
            OidcError::Provider(_) => "L'ENT n'a pas autorisé la connexion.",
            OidcError::Exchange(_) | OidcError::IdToken(_) | OidcError::UserInfo(_) => {
                "L'ENT a répondu de façon inattendue. Recommencez ; si cela persiste, prévenez l'équipe informatique."
            }
            OidcError::Mapping(_) => "Votre compte ENT n'indique pas de profil que préau connaît (élève, enseignant, parent ou personnel). Prévenez l'équipe informatique.",
            OidcError::Sign(_) => "Erreur interne du serveur.",
        }
    }
}

/// What the cookie holds between `/auth/login` and `/auth/callback`.
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    return_to: String,
    exp: u64,
}

/// The userinfo claims préau does not know by name (role, classes…).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct Extra(BTreeMap<String, serde_json::Value>);
impl AdditionalClaims for Extra {}

/// The ENT sign-in, shared by its handlers.
pub struct Sso {
    config: OidcConfig,
    keyring: Keyring,
    http: openidconnect::reqwest::Client,
    /// The provider's metadata, fetched at the first sign-in (not at start:
    /// a node starts while the ENT is down).
    metadata: tokio::sync::Mutex<Option<CoreProviderMetadata>>,
    failed_at: Mutex<Option<Instant>>,
}

impl Sso {
    pub fn new(config: OidcConfig, keyring: Keyring) -> Result<Arc<Sso>, OidcError> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Redirects are not followed (SSRF), as openidconnect advises.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .map_err(|e| OidcError::Discovery(e.to_string()))?;
        Ok(Arc::new(Sso {
            config,
            keyring,
            http,
            metadata: tokio::sync::Mutex::new(None),
            failed_at: Mutex::new(None),
        }))
    }

    async fn metadata(&self) -> Result<CoreProviderMetadata, OidcError> {
        let mut cached = self.metadata.lock().await;
        if let Some(metadata) = cached.as_ref() {
            return Ok(metadata.clone());
        }
        if let Some(at) = *self.failed_at.lock() {
            if at.elapsed() < DISCOVERY_RETRY {
                return Err(OidcError::Discovery("failed moments ago".to_owned()));
            }
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| OidcError::Discovery(e.to_string()))?;
        match CoreProviderMetadata::discover_async(issuer, &self.http).await {
            Ok(metadata) => {
                tracing::info!(target: "oidc", issuer = %self.config.issuer, "provider discovered");
                *cached = Some(metadata.clone());
                Ok(metadata)
            }
            Err(err) => {
                *self.failed_at.lock() = Some(Instant::now());
                Err(OidcError::Discovery(chain(&err)))
            }
        }
    }

    async fn client(
        &self,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let metadata = self.metadata().await?;
        let redirect = RedirectUrl::new(self.config.redirect_url.clone())
            .map_err(|e| OidcError::Discovery(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            self.config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect))
    }

    /// The provider's authorization URL and the cookie that remembers this sign-in.
    async fn start(&self, return_to: String) -> Result<(String, String), OidcError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in &self.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let pending = Pending {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            return_to,
            exp: now_secs() + COOKIE_TTL.as_secs(),
        };
        Ok((url.to_string(), self.keyring.sign_value(&pending)?))
    }

    /// From the provider's answer to a préau token and where to go with it.
    async fn finish(
        &self,
        callback: Callback,
        cookie: Option<&str>,
    ) -> Result<(String, String), OidcError> {
        if let Some(error) = callback.error {
            let detail = callback.error_description.unwrap_or_default();
            return Err(OidcError::Provider(format!("{error} {detail}")));
        }
        let cookie = cookie.ok_or_else(|| OidcError::State("no sign-in cookie".to_owned()))?;
        let pending: Pending = self
            .keyring
            .open_value(cookie, now_secs())
            .map_err(|e| OidcError::State(e.to_string()))?;
        let (Some(code), Some(state)) = (callback.code, callback.state) else {
            return Err(OidcError::State("no code or state".to_owned()));
        };
        if state != pending.state {
            return Err(OidcError::State("state differs".to_owned()));
        }
        let client = self.client().await?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(chain(&e)))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| OidcError::IdToken("none in the token response".to_owned()))?;
        let id_claims = id_token
            .claims(&client.id_token_verifier(), &Nonce::new(pending.nonce))
            .map_err(|e| OidcError::IdToken(chain(&e)))?;
        let subject = id_claims.subject().clone();
        let info: UserInfoClaims<Extra, CoreGenderClaim> = client
            .user_info(tokens.access_token().clone(), Some(subject))
            .map_err(|e| OidcError::UserInfo(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::UserInfo(chain(&e)))?;
        let name = info
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned())
            .or_else(|| info.preferred_username().map(|u| u.as_str().to_owned()));
        let claims = map_claims(
            &self.config,
            info.subject().as_str(),
            name,
            &info.additional_claims().0,
            now_secs(),
        )?;
        tracing::info!(target: "oidc", user = %claims.sub, role = ?claims.role, classes = claims.classes.len(), "signed in through the ENT");
        Ok((pending.return_to, self.keyring.mint(&claims)?))
    }
}

/// The provider's claims as a préau user. Pure, so every mapping rule is
/// tested without a provider.
fn map_claims(
    config: &OidcConfig,
    subject: &str,
    name: Option<String>,
    extra: &BTreeMap<String, serde_json::Value>,
    now: u64,
) -> Result<Claims, OidcError> {
    let strings = |claim: &str| -> Vec<String> {
        match extra.get(claim) {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    let role = strings(&config.role_claim)
        .iter()
        .find_map(|value| role_of(config, value))
        .ok_or_else(|| {
            OidcError::Mapping(format!(
                "claim `{}` holds no known role ({:?})",
                config.role_claim,
                extra.get(&config.role_claim)
            ))
        })?;
    let mut classes: Vec<String> = strings(&config.classes_claim)
        .into_iter()
        .filter(|c| valid_class(c))
        .collect();
    classes.sort();
    classes.dedup();
    let children = if role == Role::Parent {
        strings(&config.children_claim)
            .into_iter()
            .map(Into::into)
            .collect()
    } else {
        Vec::new()
    };
    let claims = Claims {
        sub: subject.to_owned(),
        name: name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| subject.to_owned()),
        role,
        classes,
        children,
        exp: now + config.session.as_secs(),
        iat: now,
    };
    claims
        .validate()
        .map_err(|e| OidcError::Mapping(e.to_string()))?;
    Ok(claims)
}

fn role_of(config: &OidcConfig, value: &str) -> Option<Role> {
    let key: String = value.trim().to_lowercase().replace(['é', 'è', 'ê'], "e");
    let configured = config
        .roles
        .get(&key)
        .and_then(|name| ROLE_NAMES.iter().find(|(n, _)| n == name).map(|(_, r)| *r));
    configured.or_else(|| ROLE_NAMES.iter().find(|(n, _)| *n == key).map(|(_, r)| *r))
}

/// An error and its causes on one line (reqwest's are nested).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The routes; `sso` is `None` when no provider is configured (then only
/// `/auth/config` answers, saying so).
pub fn routes<S>(sso: Option<Arc<Sso>>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let label = sso.as_ref().map(|s| s.config.label.clone());
    let config = get(move || {
        let label = label.clone();
        async move { Json(serde_json::json!({ "oidc": label.is_some(), "label": label })) }
    });
    let router = Router::new().route("/auth/config", config);
    match sso {
        Some(sso) => router.merge(
            Router::new()
                .route("/auth/login", get(login))
                .route("/auth/callback", get(callback))
                .with_state(sso),
        ),
        None => router,
    }
}

#[derive(Deserialize)]
struct Login {
    #[serde(rename = "return")]
    return_to: Option<String>,
}

/// Only the app's own paths: `/…`, never `//host` (an open redirect).
fn safe_return(path: Option<String>) -> String {
    match path {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.len() <= MAX_RETURN
                && !p.contains('#')
                && p.chars().all(|c| !c.is_control()) =>
        {
            p
        }
        _ => "/".to_owned(),
    }
}

async fn login(State(sso): State<Arc<Sso>>, Query(query): Query<Login>) -> Response {
    match sso.start(safe_return(query.return_to)).await {
        Ok((url, cookie)) => {
            let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, url)]).into_response();
            set_cookie(&mut response, &sso, &cookie, COOKIE_TTL.as_secs());
            response
        }
        Err(err) => refusal(&err),
    }
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

async fn callback(
    State(sso): State<Arc<Sso>>,
    headers: HeaderMap,
    Query(query): Query<Callback>,
) -> Response {
    let cookie = cookie_value(&headers, COOKIE);
    let mut response = match sso.finish(query, cookie.as_deref()).await {
        Ok((return_to, token)) => (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, format!("{return_to}#token={token}"))],
        )
            .into_response(),
        Err(err) => refusal(&err),
    };
    // Used once, whatever the outcome.
    set_cookie(&mut response, &sso, "", 0);
    response
}

fn set_cookie(response: &mut Response, sso: &Sso, value: &str, max_age: u64) {
    let secure = if sso.config.redirect_url.starts_with("https:") {
        "; Secure"
    } else {
        ""
    };
    let cookie =
        format!("{COOKIE}={value}; Path=/auth; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn refusal(err: &OidcError) -> Response {
    tracing::warn!(target: "oidc", error = %err, "ENT sign-in refused");
    let page = format!(
        "<!doctype html><html lang=\"fr\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Connexion impossible — préau</title></head>\
         <body><main><h1>Connexion impossible</h1><p role=\"alert\">{}</p><p><a href=\"/\">Retour à la connexion</a></p></main></body></html>",
        err.french()
    );
    (err.status(), Html(page)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extra(value: serde_json::Value) -> BTreeMap<String, serde_json::Value> {
        serde_json::from_value(value).unwrap_or_default()
    }

    #[test]
    fn ent_profiles_map_to_roles_classes_and_children() {
        let config = OidcConfig::default();
        let pupil = map_claims(
            &config,
            "u1",
            Some("Ana Martin".into()),
            &extra(json!({"role": "ELEVE", "classes": ["3B", "bad class!", "3B"]})),
            1000,
        )
        .unwrap();
        assert_eq!(pupil.role, Role::Student);
        assert_eq!(pupil.classes, vec!["3B"]);
        assert_eq!(pupil.exp, 1000 + 8 * 3600);
        let parent = map_claims(
            &config,
            "p1",
            None,
            &extra(json!({"role": ["Relative"], "classes": "3B", "children": ["u1"]})),
            0,
        )
        .unwrap();
        assert_eq!((parent.role, parent.name.as_str()), (Role::Parent, "p1"));
        assert_eq!(parent.children, vec![crate::auth::Child::from("u1")]);
        // Children are a parent's only.
        let teacher = map_claims(
            &config,
            "t1",
            Some("M. Durand".into()),
            &extra(json!({"role": "Enseignant", "children": ["u1"]})),
            0,
        )
        .unwrap();
        assert!(teacher.children.is_empty());
        assert_eq!(teacher.role, Role::Teacher);
    }

    #[test]
    fn an_unknown_role_is_refused_and_the_school_can_map_its_own() {
        let mut config = OidcConfig::default();
        let unknown = map_claims(&config, "x", None, &extra(json!({"role": "Invité"})), 0);
        assert!(matches!(unknown, Err(OidcError::Mapping(_))));
        assert!(matches!(
            map_claims(&config, "x", None, &extra(json!({})), 0),
            Err(OidcError::Mapping(_))
        ));
        config.roles.insert("persrelelv".into(), "parent".into());
        let mapped = map_claims(
            &config,
            "x",
            None,
            &extra(json!({"role": "PersRelEleve"})),
            0,
        );
        assert!(mapped.is_err(), "only the configured value maps");
        let mapped = map_claims(&config, "x", None, &extra(json!({"role": "PERSRELELV"})), 0);
        assert_eq!(mapped.map(|c| c.role).ok(), Some(Role::Parent));
    }

    #[test]
    fn return_paths_stay_on_this_server() {
        assert_eq!(
            safe_return(Some("/console/?room=3B%2Fchat%2Fa".into())),
            "/console/?room=3B%2Fchat%2Fa"
        );
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "relative",
            "/a#b",
        ] {
            assert_eq!(safe_return(Some(bad.into())), "/", "{bad}");
        }
        assert_eq!(safe_return(None), "/");
    }
}
