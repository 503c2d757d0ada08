//! What every page of the web UI shares: the frame around its content
//! (`Chrome`: title, navigation, the session's CSRF token, the message of
//! the last action), rendering a template into an answer with the
//! headers every page carries, and the redirect after an action with its
//! message ("flash", kept for one page view in a short-lived cookie).

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::session::{Audience, Session};

/// The cookie carrying the message of the last action to the next page.
const FLASH_COOKIE: &str = "hookrelay_flash";

/// One link of the navigation.
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The message of the last action, shown once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
    /// It tells what a test event did (shown as `#test-result`).
    pub test: bool,
}

impl Flash {
    pub fn ok(text: impl Into<String>) -> Flash {
        Flash {
            ok: true,
            text: text.into(),
            test: false,
        }
    }

    pub fn error(text: impl Into<String>) -> Flash {
        Flash {
            ok: false,
            text: text.into(),
            test: false,
        }
    }

    /// What an action did: `ok` words its success, else the API's refusal.
    pub fn of<T>(done: Result<T, crate::error::ApiError>, ok: impl FnOnce(T) -> String) -> Flash {
        match done {
            Ok(value) => Flash::ok(ok(value)),
            Err(e) => Flash::refused(&e),
        }
    }

    /// The message of an API error.
    pub fn refused(e: &crate::error::ApiError) -> Flash {
        Flash::error(e.body()["message"].as_str().unwrap_or_default())
    }

    /// What a test event did.
    pub fn test_result(ok: bool, text: impl Into<String>) -> Flash {
        Flash {
            ok,
            text: text.into(),
            test: true,
        }
    }

    /// The id of the element that shows it.
    pub fn element_id(&self) -> &'static str {
        if self.test { "test-result" } else { "flash" }
    }

    fn encode(&self) -> String {
        let kind = match (self.ok, self.test) {
            (true, false) => 'o',
            (false, false) => 'e',
            (true, true) => 't',
            (false, true) => 'f',
        };
        URL_SAFE_NO_PAD.encode(format!("{kind}{}", self.text))
    }

    fn decode(value: &str) -> Option<Flash> {
        let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut chars = text.chars();
        let (ok, test) = match chars.next()? {
            'o' => (true, false),
            'e' => (false, false),
            't' => (true, true),
            'f' => (false, true),
            _ => return None,
        };
        Some(Flash {
            ok,
            text: chars.as_str().chars().take(2000).collect(),
            test,
        })
    }
}

/// The frame of a page.
pub struct Chrome {
    pub title: String,
    pub prefix: &'static str,
    pub product: &'static str,
    pub nav: Vec<NavItem>,
    pub csrf: String,
    pub flash: Option<Flash>,
    /// The page refreshes its `data-live` regions on its own.
    pub live: bool,
}

const CONSOLE_NAV: [(&str, &str); 6] = [
    ("/ui/", "Overview"),
    ("/ui/endpoints", "Endpoints"),
    ("/ui/dead-letters", "Dead letters"),
    ("/ui/subscriptions", "Subscriptions"),
    ("/ui/events", "Events"),
    ("/ui/notices", "Notices"),
];

const PORTAL_NAV: [(&str, &str); 1] = [("/portal/", "Subscriptions")];

impl Chrome {
    /// The frame of a page titled `title` under navigation item `current`
    /// (its href), for a signed-in `session`.
    pub fn new(
        req: &HttpRequest,
        session: &Session,
        title: impl Into<String>,
        current: &str,
    ) -> Chrome {
        let (product, items): (&'static str, &[(&'static str, &'static str)]) =
            match session.audience {
                Audience::Console => ("hookrelay console", &CONSOLE_NAV),
                Audience::Portal => ("hookrelay portal", &PORTAL_NAV),
            };
        Chrome {
            title: title.into(),
            prefix: session.audience.prefix(),
            product,
            nav: items
                .iter()
                .map(|&(href, label)| NavItem {
                    href,
                    label,
                    current: href == current,
                })
                .collect(),
            csrf: session.csrf.clone(),
            flash: flash_of(req),
            live: false,
        }
    }

    /// The same, refreshing its live regions on its own.
    pub fn live(mut self) -> Chrome {
        self.live = true;
        self
    }
}

/// The message left by the previous action, if any.
fn flash_of(req: &HttpRequest) -> Option<Flash> {
    req.cookie(FLASH_COOKIE)
        .and_then(|c| Flash::decode(c.value()))
}

/// Headers every page carries: nothing from elsewhere, no framing, no
/// caching, no referrer.
fn with_page_headers(mut answer: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    answer
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("Cache-Control", "no-store"));
    answer
}

/// A rendered page with `status`; a template that fails to render (a bug)
/// is a plain 500.
pub fn html(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => with_page_headers(HttpResponse::build(status)).body(body),
        Err(e) => {
            log::error!("a page failed to render: {e}");
            crate::metrics::internal_error(crate::metrics::ErrorSite::Api);
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("hookrelay could not render this page; the cause is in its log")
        }
    }
}

/// A page answered 200 to a signed-in browser; the flash it showed is
/// removed.
pub fn show(req: &HttpRequest, audience: Audience, page: &impl Template) -> HttpResponse {
    let mut answer = html(StatusCode::OK, page);
    if req.cookie(FLASH_COOKIE).is_some() {
        let mut gone = flash_cookie(audience, String::new());
        gone.make_removal();
        let _ = answer.add_cookie(&gone);
    }
    answer
}

fn flash_cookie(audience: Audience, value: String) -> Cookie<'static> {
    Cookie::build(FLASH_COOKIE, value)
        .path(audience.prefix())
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(60))
        .finish()
}

/// After an action: back to `location`, where `flash` is shown once.
pub fn redirect(audience: Audience, location: &str, flash: Flash) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("Location", location.to_string()))
        .insert_header(("Cache-Control", "no-store"))
        .cookie(flash_cookie(audience, flash.encode()))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flash_survives_its_cookie_and_garbage_is_no_flash() {
        for f in [
            Flash::ok("Replayed 3 dead letters"),
            Flash::error("é; = \"x\""),
            Flash::test_result(false, "refused"),
        ] {
            assert_eq!(Flash::decode(&f.encode()), Some(f));
        }
        assert_eq!(Flash::decode("%%%"), None);
        assert_eq!(Flash::decode(&URL_SAFE_NO_PAD.encode("xhello")), None);
    }
}
