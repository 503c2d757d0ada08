//! JSON for what the HTTP layer refuses before any handler sees a request:
//! a request head it cannot parse (conflicting `Content-Length`s,
//! `Transfer-Encoding` with `Content-Length`, an oversized path, too many
//! headers) gets actix-http's own answer, a 400 or 431 with an empty body,
//! and the connection closes. `JsonFraming` wraps each connection's stream
//! and, on the way out, replaces exactly those answers (a status of 400 or
//! more with `content-length: 0`: every answer of the application itself
//! carries a JSON body) with a JSON `{"error","message"}` body.
//!
//! It follows the responses written on the connection by their
//! `content-length`; anything it does not understand (a chunked body, a
//! head it cannot parse) switches it to passing bytes through unchanged
//! for the rest of the connection, so it never alters a byte it is unsure
//! of.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::ErrorCode;

/// Longest response head it looks at.
const MAX_HEAD: usize = 16 * 1024;

/// Where the writer is in the responses it passes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// At (or within) a response head.
    Head,
    /// Within a body: this many bytes of it are still to come.
    Body(usize),
    /// Passing everything through.
    Through,
}

/// A connection's stream whose bodiless HTTP-layer error answers are
/// rewritten as JSON.
pub struct JsonFraming<T> {
    inner: T,
    position: Position,
    /// Bytes of the current head seen so far.
    head: Vec<u8>,
    /// Bytes accepted from the writer, not yet written to `inner`.
    out: Vec<u8>,
}

impl<T> JsonFraming<T> {
    pub fn new(inner: T) -> JsonFraming<T> {
        JsonFraming {
            inner,
            position: Position::Head,
            head: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Takes `buf` in, passing it to `out` with error heads rewritten.
    fn accept(&mut self, mut buf: &[u8]) {
        while !buf.is_empty() {
            match self.position {
                Position::Through => {
                    self.out.extend_from_slice(buf);
                    return;
                }
                Position::Body(left) => {
                    let n = left.min(buf.len());
                    self.out.extend_from_slice(&buf[..n]);
                    buf = &buf[n..];
                    self.position = if n == left {
                        Position::Head
                    } else {
                        Position::Body(left - n)
                    };
                }
                Position::Head => {
                    let before = self.head.len();
                    self.head.extend_from_slice(buf);
                    let Some(end) = find_head_end(&self.head) else {
                        if self.head.len() > MAX_HEAD {
                            self.out.append(&mut self.head);
                            self.position = Position::Through;
                        }
                        return;
                    };
                    let used = end - before;
                    buf = &buf[used..];
                    self.head.truncate(end);
                    let head = std::mem::take(&mut self.head);
                    let (bytes, next) = rewrite(head);
                    self.out.extend_from_slice(&bytes);
                    self.position = next;
                }
            }
        }
    }

    fn flush_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>
    where
        T: AsyncWrite + Unpin,
    {
        while !self.out.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.out) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.out.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The end (just past `\r\n\r\n`) of the head at the start of `bytes`.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// A head as it goes out, and where the writer is after it.
fn rewrite(head: Vec<u8>) -> (Vec<u8>, Position) {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = response.parse(&head) else {
        return (head, Position::Through);
    };
    let status = response.code.unwrap_or(0);
    let mut length = None;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return (head, Position::Through);
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_none() {
                return (head, Position::Through);
            }
        }
    }
    let length = length.unwrap_or(0);
    if status >= 400 && length == 0 {
        let kept: Vec<(String, Vec<u8>)> = response
            .headers
            .iter()
            .filter(|h| {
                !h.name.eq_ignore_ascii_case("content-length")
                    && !h.name.eq_ignore_ascii_case("content-type")
            })
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect();
        return (
            json_answer(status, response.reason.unwrap_or(""), &kept),
            Position::Head,
        );
    }
    let next = if length == 0 {
        Position::Head
    } else {
        Position::Body(length)
    };
    (head, next)
}

/// The JSON answer that replaces a bodiless error of the HTTP layer.
fn json_answer(status: u16, reason: &str, headers: &[(String, Vec<u8>)]) -> Vec<u8> {
    let (code, message) = match status {
        431 => (
            ErrorCode::RequestHeaderFieldsTooLarge,
            "the request has too many or too large headers (at most 96, and 32 KiB in all); send fewer",
        ),
        414 => (
            ErrorCode::UriTooLong,
            "the request path is too long; shorten it",
        ),
        408 => (
            ErrorCode::RequestTimeout,
            "the request headers did not arrive in time (5 s); send them at once",
        ),
        400 => (
            ErrorCode::BadRequest,
            "the request could not be parsed as HTTP/1.1: check its framing (one Content-Length, not together with Transfer-Encoding; a path of at most a few KiB; headers of the form `Name: value`)",
        ),
        _ => (ErrorCode::HttpError, "the HTTP layer refused the request"),
    };
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    out
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonFraming<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonFraming<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Keep what waits bounded: take more only once it is written.
        if !self.out.is_empty() {
            match self.flush_out(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.accept(buf);
        // Written as far as the socket takes it now; the rest on flush.
        match self.flush_out(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(buf.len())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.flush_out(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.flush_out(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut self.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(chunks: &[&[u8]]) -> String {
        let mut f = JsonFraming::new(());
        for c in chunks {
            f.accept(c);
        }
        String::from_utf8(f.out).unwrap()
    }

    #[test]
    fn a_bodiless_error_of_the_http_layer_becomes_json() {
        let out = through(&[
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: x\r\n\r\n",
        ]);
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.contains("connection: close\r\n"), "{out}");
        assert!(out.contains("content-type: application/json"), "{out}");
        let body = out.split("\r\n\r\n").nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "bad_request");
        assert!(
            out.contains(&format!("content-length: {}", body.len())),
            "{out}"
        );
    }

    #[test]
    fn answers_with_bodies_pass_unchanged_whatever_their_bodies_hold_and_however_split() {
        let body = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        let first = format!(
            "HTTP/1.1 202 Accepted\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let second = "HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}";
        let all = format!("{first}{second}");
        for split in [1, 7, 30, first.len(), all.len()] {
            let (a, b) = all.split_at(split.min(all.len()));
            assert_eq!(
                through(&[a.as_bytes(), b.as_bytes()]),
                all,
                "split at {split}"
            );
        }
    }

    #[test]
    fn a_chunked_or_unparsable_answer_switches_to_passing_through() {
        let chunked = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(through(&[chunked.as_bytes()]), chunked);
        let junk = "not http\r\n\r\nHTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(through(&[junk.as_bytes()]), junk);
    }

    #[test]
    fn a_204_and_a_100_continue_have_no_body_to_skip() {
        let out = through(&[
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n",
        ]);
        assert!(out.contains("request_header_fields_too_large"), "{out}");
    }
}
