//! The two HTTP listeners of a node, public (the API and the subscriber
//! portal) and internal (ingest, operations and the console): bound by one
//! helper each with its routes and the same limits, each connection's
//! stream wrapped so that what the HTTP layer refuses by itself is
//! answered in JSON too (`api::framing`).

use std::time::Duration;

use actix_web::{App, web};

use super::StartError;
use crate::api::{self, AppState};
use crate::config::ServeArgs;

/// Both listeners, bound and serving.
pub(super) struct Listeners {
    pub public: std::net::SocketAddr,
    pub internal: std::net::SocketAddr,
    pub handles: Vec<actix_web::dev::ServerHandle>,
}

/// Binds the public and the internal listener, each with its routes, and
/// starts serving on them.
pub(super) fn bind_listeners(
    args: &ServeArgs,
    state: &AppState,
    workers: usize,
) -> Result<Listeners, StartError> {
    let limits = ListenerLimits {
        workers,
        shutdown_timeout: args.shutdown_timeout,
        max_connections: args.max_connections as usize,
    };
    let public: Listener = ("public", args.public_addr, public_routes);
    let internal: Listener = ("internal", args.internal_addr, internal_routes);
    let mut bound = Vec::with_capacity(2);
    let mut handles = Vec::with_capacity(2);
    for (which, addr, routes) in [public, internal] {
        let (server, at) = bind(which, addr, state, routes, &limits)?;
        handles.push(server.handle());
        actix_rt::spawn(server);
        bound.push(at);
    }
    Ok(Listeners {
        public: bound[0],
        internal: bound[1],
        handles,
    })
}

/// The public listener: the subscription API and the subscriber portal.
fn public_routes(cfg: &mut web::ServiceConfig) {
    api::public::routes(cfg);
    crate::ui::portal::routes(cfg);
}

/// The internal listener: ingest, the operators' API and the console.
fn internal_routes(cfg: &mut web::ServiceConfig) {
    api::internal::routes(cfg);
    crate::ui::console::routes(cfg);
}

/// A client must send its request headers within this long of connecting
/// (or of its previous request, on a kept-alive connection), or gets a 408
/// and the connection is closed.
const HEADERS_WITHIN: Duration = Duration::from_secs(5);
/// An idle kept-alive connection is closed after this long.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// A listener's name, address and routes.
type Listener = (
    &'static str,
    std::net::SocketAddr,
    fn(&mut web::ServiceConfig),
);

/// What both listeners are bounded by.
struct ListenerLimits {
    workers: usize,
    shutdown_timeout: Duration,
    /// Open connections per listener (over all its workers).
    max_connections: usize,
}

/// Binds one listener with its routes; `which` names it in errors. Each
/// connection's stream is wrapped so that what the HTTP layer refuses by
/// itself is answered in JSON too (`api::framing`).
fn bind(
    which: &'static str,
    addr: std::net::SocketAddr,
    state: &AppState,
    routes: fn(&mut web::ServiceConfig),
    limits: &ListenerLimits,
) -> Result<(actix_web::dev::Server, std::net::SocketAddr), StartError> {
    use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
    let bind_error = |source| StartError::Bind {
        which,
        addr,
        source,
    };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let state = web::Data::new(state.clone());
    let server = actix_server::Server::build()
        .workers(limits.workers)
        .disable_signals()
        .shutdown_timeout(limits.shutdown_timeout.as_secs().max(1))
        .max_concurrent_connections(limits.max_connections.div_ceil(limits.workers).max(1))
        .listen(which, listener, move || {
            let state = state.clone();
            let app = App::new()
                .app_data(state)
                .wrap(api::json_errors())
                .configure(routes)
                .default_service(web::to(api::not_found))
                .into_factory()
                .map_err(|e: actix_web::Error| e.error_response());
            let http = actix_http::HttpService::build()
                .keep_alive(KEEP_ALIVE)
                .client_request_timeout(HEADERS_WITHIN)
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(bound)
                .finish(map_config(app, |_| actix_web::dev::AppConfig::default()));
            fn_service(|io: actix_rt::net::TcpStream| async move {
                let _ = io.set_nodelay(true);
                let peer = io.peer_addr().ok();
                Ok::<_, actix_http::error::DispatchError>((
                    api::framing::JsonFraming::new(io),
                    actix_http::Protocol::Http1,
                    peer,
                ))
            })
            .and_then(http)
        })
        .map_err(bind_error)?
        .run();
    Ok((server, bound))
}
