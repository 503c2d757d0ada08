//! Authentication extractors: `Caller` (a subscriber's bearer token, bound to
//! one marketplace and user) for the public listener, and `Operator` (the
//! `--internal-token`, when configured) for the internal one.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};

use super::AppState;
use crate::error::ApiError;
use crate::token;

/// The authenticated subscriber of a public request.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub marketplace_id: i64,
    pub user_id: i64,
}

fn bearer(req: &HttpRequest) -> Result<String, ApiError> {
    let header = req
        .headers()
        .get("Authorization")
        .ok_or_else(|| ApiError::Unauthorized("send `Authorization: Bearer <token>`".into()))?;
    let value = header.to_str().map_err(|_| {
        ApiError::Unauthorized("the Authorization header is not readable text".into())
    })?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized(
            "the Authorization header must be `Bearer <token>`".into(),
        ));
    }
    Ok(token.trim().to_string())
}

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("auth", "application state missing"))
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let found = bearer(req).and_then(|t| state(req).map(|s| (t, s)));
        Box::pin(async move {
            let (presented, state) = found?;
            let owner = state
                .store
                .run(move |conn| token::lookup(conn, &presented))
                .await?;
            match owner {
                Some((marketplace_id, user_id)) => Ok(Caller {
                    marketplace_id,
                    user_id,
                }),
                None => Err(ApiError::Unauthorized(
                    "the token is not valid; ask your platform operator for a token".into(),
                )),
            }
        })
    }
}

/// An authorized request on the internal listener.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Operator, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(state(req).and_then(|state| {
            match &state.settings.internal_token_hash {
                None => Ok(Operator),
                Some(expected) => {
                    // Comparing hashes keeps the comparison's timing
                    // independent of the secret.
                    if token::hash(&bearer(req)?) == *expected {
                        Ok(Operator)
                    } else {
                        Err(ApiError::Unauthorized(
                            "the internal token is wrong; use the value of --internal-token".into(),
                        ))
                    }
                }
            }
        }))
    }
}
