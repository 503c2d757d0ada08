//! The receiver of figure 11: `POST /r/{n}` with its own capacity per
//! path (concurrent requests) and a fixed service time. Over capacity, an
//! even path answers 429 at once and an odd path makes the request wait
//! (queues) until a place frees. Deliveries answered 200 are recorded in
//! its own [`Arrivals`] when the service time is over.

use crate::receiver::serve_on_thread;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use tokio::sync::Semaphore;

use crate::receiver::Arrivals;

/// Concurrent requests path `n` serves: 1, 2, 3, 4, 6, 8, 12, 16, 24, …
/// (powers of two and three times powers of two, in turn).
pub fn capacity(n: usize) -> usize {
    match n {
        0 => 1,
        n if !n.is_multiple_of(2) => 1 << n.div_ceil(2),
        n => 3 << (n / 2 - 1),
    }
}

/// Whether path `n` answers 429 over its capacity (else it queues).
pub fn rejects(n: usize) -> bool {
    n.is_multiple_of(2)
}

/// One receiver path.
struct Path {
    capacity: usize,
    rejects: bool,
    in_flight: AtomicUsize,
    gate: Semaphore,
    too_many: AtomicU64,
}

struct State {
    paths: Vec<Path>,
    service: Duration,
    arrivals: Arc<Arrivals>,
}

impl State {
    fn too_many(&self) -> u64 {
        self.paths
            .iter()
            .map(|p| p.too_many.load(Ordering::SeqCst))
            .sum()
    }
}

async fn receive(state: web::Data<State>, n: web::Path<usize>, body: web::Bytes) -> HttpResponse {
    let n = n.into_inner();
    let Some(path) = state.paths.get(n) else {
        return HttpResponse::Ok().finish();
    };
    if path.rejects {
        if path.in_flight.fetch_add(1, Ordering::SeqCst) >= path.capacity {
            path.in_flight.fetch_sub(1, Ordering::SeqCst);
            path.too_many.fetch_add(1, Ordering::SeqCst);
            return HttpResponse::TooManyRequests().finish();
        }
        tokio::time::sleep(state.service).await;
        state.arrivals.arrived(n, &body);
        path.in_flight.fetch_sub(1, Ordering::SeqCst);
        return HttpResponse::Ok().finish();
    }
    let Ok(_permit) = path.gate.acquire().await else {
        return HttpResponse::ServiceUnavailable().finish();
    };
    tokio::time::sleep(state.service).await;
    state.arrivals.arrived(n, &body);
    HttpResponse::Ok().finish()
}

/// The running paced receiver.
pub struct PacedReceiver {
    pub port: u16,
    pub arrivals: Arc<Arrivals>,
    state: web::Data<State>,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl PacedReceiver {
    /// Starts `paths` paths (capacities by [`capacity`]) serving each
    /// request for `service`, on its own thread with `workers` workers.
    pub fn start(paths: usize, service: Duration, workers: usize) -> Result<PacedReceiver, String> {
        let arrivals = Arc::new(Arrivals::default());
        let state = web::Data::new(State {
            paths: (0..paths)
                .map(|n| Path {
                    capacity: capacity(n),
                    rejects: rejects(n),
                    in_flight: AtomicUsize::new(0),
                    gate: Semaphore::new(capacity(n)),
                    too_many: AtomicU64::new(0),
                })
                .collect(),
            service,
            arrivals: arrivals.clone(),
        });
        let shared = state.clone();
        let (port, handle, thread) = serve_on_thread("paced-receiver", move || {
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(shared.clone())
                    .route("/r/{n}", web::post().to(receive))
            })
            .workers(workers)
            .backlog(4096)
            .disable_signals()
            .shutdown_timeout(1)
            .bind(("127.0.0.1", 0))?;
            let port = server.addrs().first().map_or(0, |a| a.port());
            Ok((port, server.run()))
        })?;
        Ok(PacedReceiver {
            port,
            arrivals,
            state,
            handle,
            thread: Some(thread),
        })
    }

    /// 429 answers so far, all paths.
    pub fn too_many(&self) -> u64 {
        self.state.too_many()
    }

    /// Stops the server and joins its thread.
    pub fn stop(mut self) {
        let handle = self.handle.clone();
        actix_rt::System::new().block_on(handle.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_run_one_two_three_four_six_eight_twelve() {
        let c: Vec<usize> = (0..12).map(capacity).collect();
        assert_eq!(c, [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]);
        assert_eq!(capacity(19), 1024);
    }

    #[test]
    fn even_paths_answer_429_and_odd_paths_queue() {
        assert!(rejects(0));
        assert!(!rejects(1));
        assert_eq!((0..20).filter(|n| rejects(*n)).count(), 10);
    }
}
