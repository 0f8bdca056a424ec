//! The web console, embedded in the binary (`include_str!`): plain HTML, CSS and
//! vanilla JavaScript with inline SVG charts, no build step and no CDN, so it works on
//! offline machines. `app.js` talks to the JSON API only.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// `index.html`.
pub const INDEX: &str = include_str!("console/index.html");
/// `app.js`.
pub const APP_JS: &str = include_str!("console/app.js");
/// `style.css`.
pub const STYLE_CSS: &str = include_str!("console/style.css");

/// `GET /`.
pub async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

/// `GET /console/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, ty) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such console file").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
