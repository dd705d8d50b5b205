//! `site-server`: a wasi:http component (it exports `wasi:http/incoming-handler`) serving the
//! files of a directory preopened at `/site` — a StaticSite's ConfigMap, mounted by the pods
//! the static-site-operator makes. Skiff serves it on the pod's IP at its containerPort, one
//! instance per request.
//!
//! - `GET /` answers `/site/index.html`; `GET /<file>` answers `/site/<file>` (one path
//!   segment: ConfigMap keys have no `/`; no `..`). `HEAD` answers the same without a body.
//! - `GET /healthz` answers 200 `ok` (the readiness probe).
//! - Anything else answers 404 (405 for other methods).
//!
//! Content-Type follows the extension: html, css, js, txt, json; anything else is
//! `application/octet-stream`.

/// Where the files are.
pub const ROOT: &str = "/site";

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Healthz,
    /// A file of the site, by its name in the directory.
    File(String),
    NotFound,
}

/// The route of a request target (`path?query`).
pub fn route(target: &str) -> Route {
    let path = target.split(['?', '#']).next().unwrap_or("");
    match path {
        "/healthz" => Route::Healthz,
        "" | "/" => Route::File("index.html".into()),
        _ => match path.strip_prefix('/') {
            Some(name) if is_file_name(name) => Route::File(name.into()),
            _ => Route::NotFound,
        },
    }
}

/// One entry of the directory: no separators, not `.`, and nothing starting `..` (the
/// kubelet's `..data` links in a ConfigMap volume are not the site's).
fn is_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && !name.starts_with("..") && !name.contains(['/', '\\', '\0'])
}

/// The Content-Type of a file, by its extension.
pub fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
mod component {
    use wasi::exports::http::incoming_handler::Guest;
    use wasi::http::types::{
        Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
    };

    use super::{ROOT, Route, content_type, route};

    struct SiteServer;

    wasi::http::proxy::export!(SiteServer);

    fn respond(out: ResponseOutparam, status: u16, content_type: &str, body: &[u8], head: bool) {
        let headers = Fields::new();
        let _ = headers.set("content-type", &[content_type.as_bytes().to_vec()]);
        let _ = headers.set("content-length", &[body.len().to_string().into_bytes()]);
        let response = OutgoingResponse::new(headers);
        let _ = response.set_status_code(status);
        let Ok(outgoing) = response.body() else { return };
        ResponseOutparam::set(out, Ok(response));
        if !head && let Ok(stream) = outgoing.write() {
            for chunk in body.chunks(4096) {
                if stream.blocking_write_and_flush(chunk).is_err() {
                    break;
                }
            }
            drop(stream);
        }
        let _ = OutgoingBody::finish(outgoing, None);
    }

    const TEXT: &str = "text/plain; charset=utf-8";

    impl Guest for SiteServer {
        fn handle(request: IncomingRequest, out: ResponseOutparam) {
            let head = match request.method() {
                Method::Get => false,
                Method::Head => true,
                _ => return respond(out, 405, TEXT, b"method not allowed\n", false),
            };
            let target = request.path_with_query().unwrap_or_else(|| "/".into());
            match route(&target) {
                Route::Healthz => respond(out, 200, TEXT, b"ok\n", head),
                Route::File(name) => match std::fs::read(format!("{ROOT}/{name}")) {
                    Ok(data) => respond(out, 200, content_type(&name), &data, head),
                    Err(_) => respond(out, 404, TEXT, b"not found\n", head),
                },
                Route::NotFound => respond(out, 404, TEXT, b"not found\n", head),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_should_map_paths_to_one_file_of_the_site() {
        let file = |n: &str| Route::File(n.into());
        let cases = [
            ("/", file("index.html")),
            ("", file("index.html")),
            ("/?utm=1", file("index.html")),
            ("/healthz", Route::Healthz),
            ("/style.css", file("style.css")),
            ("/app.js?v=2", file("app.js")),
            ("/.well-known", file(".well-known")),
            ("/..", Route::NotFound),
            ("/../etc/passwd", Route::NotFound),
            ("/..data", Route::NotFound),
            ("/.", Route::NotFound),
            ("/a/b.html", Route::NotFound),
            ("/a\\b", Route::NotFound),
            ("/index.html/", Route::NotFound),
            ("relative", Route::NotFound),
        ];
        for (target, want) in cases {
            assert_eq!(route(target), want, "{target:?}");
        }
    }

    #[test]
    fn content_type_should_follow_the_extension() {
        let cases = [
            ("index.html", "text/html; charset=utf-8"),
            ("INDEX.HTM", "text/html; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("notes.txt", "text/plain; charset=utf-8"),
            ("data.json", "application/json"),
            ("logo.png", "application/octet-stream"),
            ("README", "application/octet-stream"),
        ];
        for (name, want) in cases {
            assert_eq!(content_type(name), want, "{name}");
        }
    }
}
