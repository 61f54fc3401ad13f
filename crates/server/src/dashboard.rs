//! The live dashboard at `/` on the HTTP admin port.
//!
//! One self-contained page (`dashboard.html`: HTML, CSS and script in one
//! file) compiled into the binary, so there is no build step and nothing to
//! fetch from elsewhere: it works on a machine without internet access. The
//! page polls this region's `/v1/status` and `/v1/conflicts` once a second
//! and draws this region's view of the cluster; rates and the conflicts
//! chart come from differences between successive polls.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard.html");

/// Only the page's own inline script and style run, and they may talk only
/// to the port that served them. Journal values are client data; the page
/// inserts them as text, and this policy is the second line of defence.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE,
    )
}

#[cfg(test)]
mod tests {
    use super::PAGE;

    /// The machine a region runs on may have no internet: the page must not
    /// load anything but what this port serves.
    #[test]
    fn page_loads_nothing_from_elsewhere() {
        const SVG_NAMESPACE: &str = "http://www.w3.org/2000/svg";
        let without_namespace = PAGE.replace(SVG_NAMESPACE, "");
        for scheme in ["http://", "https://", "//cdn", "@import"] {
            assert!(
                !without_namespace.contains(scheme),
                "dashboard.html refers to {scheme}"
            );
        }
        for path in ["/v1/status", "/v1/conflicts"] {
            assert!(PAGE.contains(path), "dashboard.html does not poll {path}");
        }
        assert!(
            !PAGE.contains("innerHTML"),
            "journal values are client data: insert text, never markup"
        );
    }
}
