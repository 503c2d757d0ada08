//! The web UI's pages without a browser: a plain HTTP request carrying a
//! session cookie (read from the browser) and, for a POST, a form body;
//! answered with its status, `Location`, `Set-Cookie` and text. Used to see
//! what a browser hides: status codes, redirects, a form posted without
//! its CSRF token.

use awc::http::Method;

use super::TestApp;
use super::http::url_encode;

/// A UI page's answer, as a plain HTTP client sees it.
#[derive(Debug)]
pub struct UiAnswer {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl TestApp {
    /// `GET url`, with `Cookie: <cookie>` when given; redirects not followed.
    pub async fn ui_get(&self, url: &str, cookie: Option<&str>) -> UiAnswer {
        self.ui_request(Method::GET, url, cookie, None).await
    }

    /// `POST url` of the form `fields` (URL-encoded), with `Cookie: <cookie>`
    /// when given; redirects not followed.
    pub async fn ui_post_form(
        &self,
        url: &str,
        cookie: Option<&str>,
        fields: &[(&str, &str)],
    ) -> UiAnswer {
        self.ui_request(Method::POST, url, cookie, Some(fields))
            .await
    }

    async fn ui_request(
        &self,
        method: Method,
        url: &str,
        cookie: Option<&str>,
        form: Option<&[(&str, &str)]>,
    ) -> UiAnswer {
        let what = format!("{method} {url}");
        let mut req = self.client.request(method, url);
        if let Some(c) = cookie {
            req = req.insert_header(("Cookie", c));
        }
        let sent = match form {
            Some(fields) => {
                let body: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
                    .collect();
                req.insert_header(("Content-Type", "application/x-www-form-urlencoded"))
                    .send_body(body.join("&"))
                    .await
            }
            None => req.send().await,
        };
        let mut res = sent.unwrap_or_else(|e| panic!("{what} failed: {e}\n{}", self.log_tail(30)));
        let header = |name: &str| -> Vec<String> {
            res.headers()
                .get_all(name)
                .filter_map(|v| v.to_str().ok())
                .map(str::to_string)
                .collect()
        };
        let location = header("location").into_iter().next();
        let set_cookies = header("set-cookie");
        let status = res.status().as_u16();
        let bytes = res
            .body()
            .limit(16 << 20)
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e}"));
        UiAnswer {
            status,
            location,
            set_cookies,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }
}
