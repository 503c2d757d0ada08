//! Sessions of the web UI: signing in with a token in a form, the session
//! cookie (`HttpOnly`, `SameSite=Strict`, expiring on the server), the
//! CSRF token every changing form carries, and signing out.
//!
//! The console (`/ui/`) signs in with the internal token; when none is
//! configured the console is open, and a session is made on the first
//! visit (its CSRF token still guards every form). The portal (`/portal/`)
//! signs in with a subscriber's own API token. Only hashes of the cookie's
//! id and of the token are stored (`store::ui_sessions`); the token is
//! checked again on every request, so a changed token ends its sessions.
//! Tokens travel in form bodies only: never in a URL, never in a log.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::UiError;
use super::form::Fields;
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::store::ui_sessions;
use crate::token;

/// How long a session lasts after signing in.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// How long a sign-in with a wrong token waits before it answers, so that
/// guessing is slow.
pub const WRONG_TOKEN_DELAY: Duration = Duration::from_secs(1);

/// Which UI a session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Console,
    Portal,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Console => "console",
            Audience::Portal => "portal",
        }
    }

    /// The path every page of this UI is under, and its cookie's path.
    pub fn prefix(self) -> &'static str {
        match self {
            Audience::Console => "/ui",
            Audience::Portal => "/portal",
        }
    }

    pub fn cookie_name(self) -> &'static str {
        match self {
            Audience::Console => "hookrelay_console",
            Audience::Portal => "hookrelay_portal",
        }
    }

    /// Its start page, where signing in happens.
    pub fn home(self) -> String {
        format!("{}/", self.prefix())
    }
}

/// A signed-in session.
#[derive(Debug, Clone)]
pub struct Session {
    pub audience: Audience,
    id_hash: String,
    /// The token every changing form must carry.
    pub csrf: String,
}

impl Session {
    /// Whether a posted form carries this session's CSRF token.
    pub fn csrf_matches(&self, presented: Option<&str>) -> bool {
        // Comparing hashes keeps the timing independent of the token.
        presented.is_some_and(|p| token::hash(p) == token::hash(&self.csrf))
    }
}

/// A random value for a cookie or a CSRF token (256 bits).
fn random_value() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, UiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| UiError::Api(crate::error::ApiError::internal("ui", "state missing")))
}

/// The hash stored for the console's session: the internal token's (empty
/// when the console is open).
fn console_token_hash(state: &AppState) -> String {
    state
        .settings
        .internal_token_hash
        .clone()
        .unwrap_or_default()
}

/// Whether the console is open (no internal token configured).
pub fn console_is_open(state: &AppState) -> bool {
    state.settings.internal_token_hash.is_none()
}

/// What a presented token signs in as: `None` when it is wrong.
async fn check_token(
    state: &AppState,
    audience: Audience,
    presented: &str,
) -> Result<Option<String>, UiError> {
    let presented_hash = token::hash(presented.trim());
    match audience {
        Audience::Console => Ok(match &state.settings.internal_token_hash {
            None => Some(String::new()),
            Some(expected) if *expected == presented_hash => Some(presented_hash),
            Some(_) => None,
        }),
        Audience::Portal => {
            if presented.trim().is_empty() {
                return Ok(None);
            }
            let lookup = presented_hash.clone();
            let owner = state
                .store
                .run(move |conn| crate::store::tokens::find(conn, &lookup))
                .await?;
            Ok(owner.map(|_| presented_hash))
        }
    }
}

/// Starts a session for a token that signed in: stores it and answers the
/// cookie to set.
async fn start(
    state: &AppState,
    audience: Audience,
    token_hash: String,
) -> Result<(Session, Cookie<'static>), UiError> {
    let id = random_value();
    let csrf = random_value();
    let id_hash = token::hash(&id);
    let expires_at = crate::store::now()
        + chrono::Duration::from_std(LIFETIME).unwrap_or(chrono::Duration::hours(8));
    let (stored_id, stored_csrf) = (id_hash.clone(), csrf.clone());
    state
        .store
        .run(move |conn| {
            ui_sessions::insert(
                conn,
                &stored_id,
                audience.as_str(),
                &token_hash,
                &stored_csrf,
                expires_at,
            )
        })
        .await?;
    let cookie = Cookie::build(audience.cookie_name(), id)
        .path(audience.prefix())
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::seconds(
            LIFETIME.as_secs() as i64,
        ))
        .finish();
    let session = Session {
        audience,
        id_hash,
        csrf,
    };
    Ok((session, cookie))
}

/// The cookie that removes a session's cookie from the browser.
fn removal(audience: Audience) -> Cookie<'static> {
    let mut cookie = Cookie::build(audience.cookie_name(), "")
        .path(audience.prefix())
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish();
    cookie.make_removal();
    cookie
}

/// The session a request carries, with the subscriber it belongs to on
/// the portal; `None` when there is none, it expired, or its token no
/// longer signs in.
async fn current(
    req: &HttpRequest,
    audience: Audience,
) -> Result<Option<(Session, Option<Caller>)>, UiError> {
    let Some(cookie) = req.cookie(audience.cookie_name()) else {
        return Ok(None);
    };
    let state = state(req)?;
    let id_hash = token::hash(cookie.value());
    let lookup = id_hash.clone();
    let found = state
        .store
        .run(move |conn| {
            let Some(row) = ui_sessions::find(conn, &lookup, audience.as_str())? else {
                return Ok(None);
            };
            let owner = match audience {
                Audience::Console => None,
                Audience::Portal => crate::store::tokens::find(conn, &row.token_hash)?,
            };
            Ok(Some((row, owner)))
        })
        .await?;
    let Some((row, owner)) = found else {
        return Ok(None);
    };
    let caller = match audience {
        Audience::Console if row.token_hash != console_token_hash(&state) => return Ok(None),
        Audience::Console => None,
        Audience::Portal => match owner {
            Some((marketplace_id, user_id)) => Some(Caller {
                marketplace_id,
                user_id,
            }),
            None => return Ok(None),
        },
    };
    let session = Session {
        audience,
        id_hash,
        csrf: row.csrf,
    };
    Ok(Some((session, caller)))
}

/// The operator's console session; without one, a redirect to sign-in.
pub struct ConsoleSession(pub Session);

/// A subscriber's portal session and who they are; without one, a
/// redirect to sign-in.
pub struct PortalSession(pub Session, pub Caller);

impl FromRequest for ConsoleSession {
    type Error = UiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, UiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            match current(&req, Audience::Console).await? {
                Some((session, _)) => Ok(ConsoleSession(session)),
                None => Err(UiError::SignIn(Audience::Console)),
            }
        })
    }
}

impl FromRequest for PortalSession {
    type Error = UiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, UiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            match current(&req, Audience::Portal).await? {
                Some((session, Some(caller))) => Ok(PortalSession(session, caller)),
                _ => Err(UiError::SignIn(Audience::Portal)),
            }
        })
    }
}

/// A changing form, posted by a signed-in browser with its session's CSRF
/// token: anything else is refused (403) before the handler runs.
pub struct Posted<S> {
    pub session: S,
    pub fields: Fields,
}

/// What a posted form's session extractor gives the CSRF check.
pub trait HasSession {
    fn session(&self) -> &Session;
}

impl HasSession for ConsoleSession {
    fn session(&self) -> &Session {
        &self.0
    }
}

impl HasSession for PortalSession {
    fn session(&self) -> &Session {
        &self.0
    }
}

impl<S> FromRequest for Posted<S>
where
    S: FromRequest<Error = UiError> + HasSession + 'static,
{
    type Error = UiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, UiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = S::from_request(req, payload);
        let fields = Fields::from_request(req, payload);
        Box::pin(async move {
            let session = session.await?;
            let fields = fields.await?;
            if !session.session().csrf_matches(fields.get("csrf")) {
                return Err(UiError::Forged(session.session().audience));
            }
            Ok(Posted { session, fields })
        })
    }
}

/// `POST <prefix>/sign-in`: a right token starts a session and goes to the
/// start page; a wrong one waits a moment and shows the form again with a
/// message, and nothing else.
pub async fn sign_in(
    req: HttpRequest,
    fields: Fields,
    audience: Audience,
) -> Result<HttpResponse, UiError> {
    let state = state(&req)?;
    let presented = fields.get("token").unwrap_or("");
    match check_token(&state, audience, presented).await? {
        Some(token_hash) => {
            let (_, cookie) = start(&state, audience, token_hash).await?;
            log::info!("{} session started", audience.as_str());
            Ok(HttpResponse::SeeOther()
                .insert_header(("Location", audience.home()))
                .cookie(cookie)
                .finish())
        }
        None => {
            actix_rt::time::sleep(WRONG_TOKEN_DELAY).await;
            Err(UiError::WrongToken(audience))
        }
    }
}

/// Starts a session for an open console (no internal token), so that its
/// forms carry a CSRF token too; answers the cookie to set with the page.
pub async fn open_console(req: &HttpRequest) -> Result<(Session, Cookie<'static>), UiError> {
    let state = state(req)?;
    start(&state, Audience::Console, String::new()).await
}

/// The session of a console page, or `None` when signing in is needed.
pub async fn console_session(req: &HttpRequest) -> Result<Option<Session>, UiError> {
    Ok(current(req, Audience::Console).await?.map(|(s, _)| s))
}

/// The session of a portal page and its subscriber, or `None`.
pub async fn portal_session(req: &HttpRequest) -> Result<Option<(Session, Caller)>, UiError> {
    Ok(current(req, Audience::Portal)
        .await?
        .and_then(|(s, c)| c.map(|c| (s, c))))
}

/// `POST <prefix>/sign-out`: ends the session on the server and in the
/// browser.
pub async fn sign_out(req: &HttpRequest, session: &Session) -> Result<HttpResponse, UiError> {
    let state = state(req)?;
    let id_hash = session.id_hash.clone();
    state
        .store
        .run(move |conn| ui_sessions::delete(conn, &id_hash))
        .await?;
    Ok(HttpResponse::SeeOther()
        .insert_header(("Location", session.audience.home()))
        .cookie(removal(session.audience))
        .finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_without_the_sessions_csrf_token_does_not_match() {
        let session = Session {
            audience: Audience::Portal,
            id_hash: "x".into(),
            csrf: "right".into(),
        };
        assert!(session.csrf_matches(Some("right")));
        assert!(!session.csrf_matches(Some("wrong")));
        assert!(!session.csrf_matches(Some("")));
        assert!(!session.csrf_matches(None));
    }

    #[test]
    fn each_ui_has_its_own_cookie_under_its_own_path() {
        assert_eq!(Audience::Console.home(), "/ui/");
        assert_eq!(Audience::Portal.home(), "/portal/");
        assert_ne!(
            Audience::Console.cookie_name(),
            Audience::Portal.cookie_name()
        );
        let removed = removal(Audience::Portal);
        assert_eq!(removed.path(), Some("/portal"));
        assert_eq!(removed.http_only(), Some(true));
    }

    #[test]
    fn random_values_are_long_and_differ() {
        let (a, b) = (random_value(), random_value());
        assert_ne!(a, b);
        assert!(a.len() >= 43);
    }
}
