//! The `Origin` rule of WebSocket upgrades: browsers always send `Origin`,
//! so a page of another site is refused unless `allowed_origins` lists it;
//! the server's own origin (the one serving the web app) is always allowed,
//! and requests without `Origin` (non-browser clients) too.

use url::Url;

/// A web origin: scheme, host and port (default ports made explicit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]` (http or https, nothing after the
    /// authority but an optional `/`); `None` otherwise (e.g. `null`).
    pub fn parse(text: &str) -> Option<Origin> {
        let url = Url::parse(text).ok()?;
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
            || url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return None;
        }
        Some(Origin {
            scheme: url.scheme().to_owned(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        })
    }

    /// Whether this origin is the one a request with this `Host` header
    /// value (`host[:port]`) was sent to; the port defaults to the scheme's.
    pub fn is_host(&self, host: &str) -> bool {
        let Ok(url) = Url::parse(&format!("{}://{}", self.scheme, host.trim())) else {
            return false;
        };
        url.path() == "/"
            && url.host_str().map(str::to_ascii_lowercase).as_deref() == Some(self.host.as_str())
            && url.port_or_known_default() == Some(self.port)
    }
}

/// What `allowed_origins` allows besides the server's own origin.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    any: bool,
    listed: Vec<Origin>,
}

impl OriginPolicy {
    /// From the validated `allowed_origins` (`*` allows any origin).
    pub fn new(allowed: &[String]) -> OriginPolicy {
        OriginPolicy {
            any: allowed.iter().any(|a| a == "*"),
            listed: allowed.iter().filter_map(|a| Origin::parse(a)).collect(),
        }
    }

    /// Whether an upgrade with this `Origin` header, sent to `hosts` (the
    /// `Host` header, and `X-Forwarded-Host` from a proxy), may proceed.
    pub fn allows(&self, origin: Option<&str>, hosts: &[&str]) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.any {
            return true;
        }
        let Some(origin) = Origin::parse(origin) else {
            return false;
        };
        self.listed.contains(&origin) || hosts.iter().any(|host| origin.is_host(host))
    }
}

/// Checks one `allowed_origins` entry (for `Config::validate`).
pub fn valid_entry(entry: &str) -> bool {
    entry == "*" || Origin::parse(entry).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_listed_and_absent_are_allowed() {
        let own = OriginPolicy::new(&[]);
        assert!(own.allows(None, &["preau.example"]));
        assert!(own.allows(Some("https://preau.example"), &["preau.example"]));
        assert!(own.allows(Some("https://PREAU.example:443"), &["preau.example"]));
        assert!(own.allows(Some("http://127.0.0.1:8080"), &["127.0.0.1:8080"]));
        assert!(own.allows(Some("http://[::1]:8080"), &["[::1]:8080"]));
        assert!(!own.allows(Some("http://127.0.0.1:8081"), &["127.0.0.1:8080"]));
        assert!(!own.allows(Some("https://evil.example"), &["preau.example"]));
        assert!(!own.allows(Some("https://preau.example.evil"), &["preau.example"]));
        assert!(!own.allows(Some("null"), &["preau.example"]));
        assert!(!own.allows(Some("https://evil.example"), &[]));
        // Behind a proxy that rewrites Host.
        assert!(own.allows(
            Some("https://ent.example"),
            &["127.0.0.1:8080", "ent.example"]
        ));

        let listed = OriginPolicy::new(&["https://ent.example".to_owned()]);
        assert!(listed.allows(Some("https://ent.example"), &["preau.example"]));
        assert!(!listed.allows(Some("http://ent.example"), &["preau.example"]));
        assert!(listed.allows(Some("https://preau.example"), &["preau.example"]));
        let any = OriginPolicy::new(&["*".to_owned()]);
        assert!(any.allows(Some("https://evil.example"), &["preau.example"]));
    }

    #[test]
    fn entries_are_origins() {
        for ok in [
            "*",
            "https://ent.example",
            "http://localhost:5173",
            "https://a.b/",
        ] {
            assert!(valid_entry(ok), "{ok}");
        }
        for bad in [
            "",
            "ent.example",
            "https://ent.example/app",
            "ftp://x",
            "null",
            "https://u@x",
        ] {
            assert!(!valid_entry(bad), "{bad}");
        }
    }
}
