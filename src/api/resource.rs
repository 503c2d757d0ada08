//! One path and its handlers, registered together, so that a request with
//! any other method answers a JSON 405 that lists the allowed ones in
//! `Allow` (the framework's own 405 has no body).

use actix_web::http::Method;
use actix_web::{FromRequest, Handler, HttpRequest, Responder, web};

use crate::error::ApiError;

/// A path being given its handlers; `done` makes the actix resource.
pub struct Resource {
    path: &'static str,
    resource: actix_web::Resource,
    allowed: Vec<Method>,
}

impl Resource {
    pub fn at(path: &'static str) -> Resource {
        Resource {
            path,
            resource: web::resource(path),
            allowed: Vec::new(),
        }
    }

    pub fn get<F, Args>(self, handler: F) -> Resource
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::GET, handler)
    }

    pub fn post<F, Args>(self, handler: F) -> Resource
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::POST, handler)
    }

    pub fn put<F, Args>(self, handler: F) -> Resource
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::PUT, handler)
    }

    pub fn patch<F, Args>(self, handler: F) -> Resource
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::PATCH, handler)
    }

    pub fn delete<F, Args>(self, handler: F) -> Resource
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.on(Method::DELETE, handler)
    }

    fn on<F, Args>(mut self, method: Method, handler: F) -> Resource
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.allowed.push(method.clone());
        self.resource = self.resource.route(web::method(method).to(handler));
        self
    }

    /// The resource; other methods get the JSON 405.
    pub fn done(self) -> actix_web::Resource {
        let allow = allow_header(&self.allowed);
        let path = self.path;
        self.resource
            .default_service(web::to(move |req: HttpRequest| {
                let allow = allow.clone();
                async move {
                    Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed {
                        message: format!("{} is not allowed on {path}; use {allow}", req.method()),
                        allow,
                    })
                }
            }))
    }
}

fn allow_header(methods: &[Method]) -> String {
    methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_header_lists_the_methods_in_order() {
        assert_eq!(allow_header(&[Method::GET, Method::POST]), "GET, POST");
    }
}
