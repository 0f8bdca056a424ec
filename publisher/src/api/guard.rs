//! What stands between the network and the handlers: the bearer tokens (the optional
//! `publish.read_token` on the read routes, `publish.api_token` on the `PUT` routes),
//! the request deadline and concurrency limit, and the browser security headers every
//! response carries.
//!
//! Tokens are compared as SHA-256 digests with a constant-time equality, so neither the
//! content nor the length of a configured token shows in response times.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use spectra_core::config::PublishConfig;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::{ApiError, ApiResult};

/// The console's Content-Security-Policy: scripts, style sheets, images and requests
/// from this origin only (the console inlines no script and no `<style>`; its charts set
/// `style` attributes, which `style-src-attr` allows), no plugins, no framing, forms
/// post back here only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case),
/// `None` when the header is missing, of another scheme or without a token.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

type Digest256 = [u8; 32];

fn digest(token: &str) -> Digest256 {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// The configured tokens, as digests (`None`: not set).
#[derive(Clone)]
pub struct Tokens {
    read: Option<Digest256>,
    write: Option<Digest256>,
}

impl Tokens {
    /// The tokens of `publish.read_token` and `publish.api_token`.
    pub fn new(cfg: &PublishConfig) -> Self {
        let set = |t: &str| (!t.trim().is_empty()).then(|| digest(t));
        Self {
            read: set(&cfg.read_token),
            write: set(&cfg.api_token),
        }
    }

    /// Whether `given` is the token of this digest, in constant time.
    fn is(given: &Digest256, expected: &Option<Digest256>) -> bool {
        expected.is_some_and(|e| bool::from(given[..].ct_eq(&e[..])))
    }

    /// A `PUT`: the bearer token must be `publish.api_token` (`403` while it is unset).
    pub fn authorize_write(&self, headers: &HeaderMap) -> ApiResult<()> {
        if self.write.is_none() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "editing is disabled: set publish.api_token (SPECTRA__PUBLISH__API_TOKEN) to enable it",
            ));
        }
        let given = bearer(headers).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing `Authorization: Bearer <token>` header",
            )
        })?;
        if Self::is(&digest(given), &self.write) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the bearer token is not valid",
            ))
        }
    }

    /// A read: open while `publish.read_token` is unset, else the bearer token must be
    /// the read or the write token.
    pub fn authorize_read(&self, headers: &HeaderMap) -> ApiResult<()> {
        if self.read.is_none() {
            return Ok(());
        }
        let given = bearer(headers).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "reading needs an `Authorization: Bearer <token>` header with publish.read_token or publish.api_token",
            )
        })?;
        let given = digest(given);
        // Both comparisons run whatever the first one found.
        let read = Self::is(&given, &self.read);
        let write = Self::is(&given, &self.write);
        if read | write {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the bearer token is not valid",
            ))
        }
    }
}

/// Middleware on the read routes: `GET` and `HEAD` need the read token when one is set;
/// other methods pass (their handlers check the write token).
pub async fn require_read(State(tokens): State<Tokens>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        if let Err(e) = tokens.authorize_read(req.headers()) {
            return e.into_response();
        }
    }
    next.run(req).await
}

/// The request deadline and the number of requests served at once.
#[derive(Clone)]
pub struct Limits {
    slots: Arc<Semaphore>,
    timeout: Duration,
}

impl Limits {
    /// From `publish.max_concurrent_requests` and `publish.request_timeout_seconds`.
    pub fn new(cfg: &PublishConfig) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(cfg.max_concurrent_requests.max(1))),
            timeout: Duration::from_secs(cfg.request_timeout_seconds.max(1)),
        }
    }
}

/// Middleware: waits for a free slot, then runs the request, all within the deadline;
/// past it the request is dropped and answered `503`.
pub async fn limit(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let run = async {
        let _slot = limits
            .slots
            .acquire()
            .await
            .expect("the request semaphore is never closed");
        next.run(req).await
    };
    match tokio::time::timeout(limits.timeout, run).await {
        Ok(response) => response,
        Err(_) => {
            let mut r = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the request did not finish within {} s (publish.request_timeout_seconds); the server is busy or the request too large, try again later",
                    limits.timeout.as_secs()
                ),
            )
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
    }
}

/// Middleware: the security headers on every response (console page, files, API).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    fn tokens(read: &str, write: &str) -> Tokens {
        Tokens::new(&PublishConfig {
            read_token: read.into(),
            api_token: write.into(),
            ..PublishConfig::default()
        })
    }

    fn status(r: ApiResult<()>) -> u16 {
        r.map_or_else(|e| e.status.as_u16(), |()| 200)
    }

    #[test]
    fn bearer_scheme_in_any_case_and_nothing_else() {
        for ok in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "bEaReR   abc  ",
            "Bearer\tabc",
        ] {
            assert_eq!(bearer(&headers(ok)), Some("abc"), "{ok:?}");
        }
        for bad in ["Basic abc", "Bearerabc", "Bearer", "Bearer   ", "abc", ""] {
            assert_eq!(bearer(&headers(bad)), None, "{bad:?}");
        }
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn write_token_required_and_compared_exactly() {
        let t = tokens("", "s3cret");
        assert_eq!(status(t.authorize_write(&headers("bearer s3cret"))), 200);
        assert_eq!(status(t.authorize_write(&headers("Bearer s3cre"))), 401);
        assert_eq!(status(t.authorize_write(&headers("Bearer s3cretx"))), 401);
        assert_eq!(status(t.authorize_write(&headers("Bearer S3CRET"))), 401);
        assert_eq!(status(t.authorize_write(&headers("Basic s3cret"))), 401);
        assert_eq!(status(t.authorize_write(&HeaderMap::new())), 401);
        // No write token: editing is off, whatever is sent.
        let off = tokens("r", "");
        assert_eq!(status(off.authorize_write(&headers("Bearer "))), 403);
        assert_eq!(status(off.authorize_write(&headers("Bearer r"))), 403);
    }

    #[test]
    fn reads_open_without_a_read_token_and_guarded_with_one() {
        let open = tokens("", "s3cret");
        assert_eq!(status(open.authorize_read(&HeaderMap::new())), 200);
        assert_eq!(status(open.authorize_read(&headers("Bearer wrong"))), 200);

        let guarded = tokens("r3ad", "s3cret");
        assert_eq!(status(guarded.authorize_read(&HeaderMap::new())), 401);
        assert_eq!(
            status(guarded.authorize_read(&headers("Bearer wrong"))),
            401
        );
        assert_eq!(status(guarded.authorize_read(&headers("Bearer r3a"))), 401);
        assert_eq!(status(guarded.authorize_read(&headers("bearer r3ad"))), 200);
        assert_eq!(
            status(guarded.authorize_read(&headers("Bearer s3cret"))),
            200,
            "the write token reads too"
        );
        // The read token does not write.
        assert_eq!(
            status(guarded.authorize_write(&headers("Bearer r3ad"))),
            401
        );
        // A read token without a write token: only the read token reads.
        let read_only = tokens("r3ad", "");
        assert_eq!(
            status(read_only.authorize_read(&headers("Bearer r3ad"))),
            200
        );
        assert_eq!(status(read_only.authorize_read(&headers("Bearer "))), 401);
    }

    #[test]
    fn a_401_names_the_bearer_scheme() {
        let e = tokens("r3ad", "")
            .authorize_read(&HeaderMap::new())
            .unwrap_err();
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
}

#[cfg(test)]
mod limit_tests {
    use std::time::Instant;

    use axum::routing::get;
    use axum::{middleware, Router};

    use super::*;

    #[tokio::test]
    async fn one_slot_and_a_deadline_turn_the_second_slow_request_away() {
        let cfg = PublishConfig {
            max_concurrent_requests: 1,
            request_timeout_seconds: 1,
            ..PublishConfig::default()
        };
        let app = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    "done"
                }),
            )
            .layer(middleware::from_fn_with_state(Limits::new(&cfg), limit));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/slow", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let c = reqwest::Client::new();
        let started = Instant::now();
        let (a, b) = tokio::join!(c.get(&url).send(), c.get(&url).send());
        let mut statuses = [a.unwrap(), b.unwrap()].map(|r| (r.status().as_u16(), r));
        statuses.sort_by_key(|s| s.0);
        // One ran; the other waited 0.7 s for the slot and would have finished at 1.4 s.
        assert_eq!(statuses[0].0, 200);
        assert_eq!(statuses[1].0, 503);
        assert_eq!(statuses[1].1.headers()["retry-after"], "5");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(950) && elapsed < Duration::from_secs(3),
            "{elapsed:?}"
        );
        // Alone, a request well within the deadline passes.
        assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    }
}
