//! Form fields of the web UI: a posted `application/x-www-form-urlencoded`
//! body (at most `MAX_FORM_BYTES`), or a page's query string, as named
//! text values; and the lenient reading of optional filter fields (an
//! empty field is no filter).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;

use super::error::UiError;

/// The largest form body the UI reads.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Named text values of a form or query string, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// Parses `a=1&b=x+y` (form or query string encoding).
    pub fn parse(bytes: &[u8]) -> Fields {
        Fields(
            url::form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// A page's query string.
    pub fn query(req: &HttpRequest) -> Fields {
        Fields::parse(req.query_string().as_bytes())
    }

    /// The first value of `name`, as given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name` trimmed; `None` when absent or blank.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// The value of `name` as a number: `Ok(None)` when absent or blank, an
    /// error naming the field when it is not a number.
    pub fn number(&self, name: &str, label: &str) -> Result<Option<i64>, String> {
        match self.text(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                format!(
                    "{label} must be a whole number, not `{}`",
                    crate::api::quote(v)
                )
            }),
        }
    }
}

impl FromRequest for Fields {
    type Error = UiError;
    type Future = Pin<Box<dyn Future<Output = Result<Fields, UiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_form = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let mut payload = payload.take();
        Box::pin(async move {
            let mut body = Vec::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|_| {
                    UiError::BadForm("the form did not arrive whole; send it again".into())
                })?;
                if body.len() + chunk.len() > MAX_FORM_BYTES {
                    return Err(UiError::BadForm(format!(
                        "the form is larger than {} KiB",
                        MAX_FORM_BYTES / 1024
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            if !is_form && !body.is_empty() {
                return Err(UiError::BadForm(
                    "send the form as application/x-www-form-urlencoded".into(),
                ));
            }
            Ok(Fields::parse(&body))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_decoded_and_blank_ones_are_no_value() {
        let f = Fields::parse(b"token=a+b%2Fc&empty=&n=%2042%20&bad=x1");
        assert_eq!(f.get("token"), Some("a b/c"));
        assert_eq!(f.text("empty"), None);
        assert_eq!(f.get("empty"), Some(""));
        assert_eq!(f.number("n", "N"), Ok(Some(42)));
        assert_eq!(f.number("missing", "N"), Ok(None));
        assert!(
            f.number("bad", "Marketplace")
                .unwrap_err()
                .contains("Marketplace")
        );
    }
}
