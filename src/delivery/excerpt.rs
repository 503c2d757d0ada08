//! The answer excerpt of an attempt: at most the first 1 KiB of the
//! endpoint's answer body, as text, kept in the attempt log for subscribers
//! and operators (`attempts.response_excerpt`).

/// How much of an answer's body is kept (1 KiB).
pub const EXCERPT: usize = 1024;

/// The text kept of an answer's first bytes: at most `EXCERPT` bytes, lossy
/// UTF-8 (a character cut at the end is dropped, not replaced); `None` for
/// an empty body.
pub fn excerpt(head: &[u8]) -> Option<String> {
    let head = &head[..head.len().min(EXCERPT)];
    let whole = match std::str::from_utf8(head) {
        Err(e) if e.error_len().is_none() => &head[..e.valid_up_to()],
        _ => head,
    };
    (!whole.is_empty()).then(|| String::from_utf8_lossy(whole).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_keeps_the_first_kibibyte_as_text() {
        let long = "a".repeat(EXCERPT + 10);
        assert_eq!(excerpt(long.as_bytes()).unwrap().len(), EXCERPT);
        assert_eq!(excerpt(b"").as_deref(), None);
        assert_eq!(excerpt(b"ok \xff").as_deref(), Some("ok \u{fffd}"));
    }

    #[test]
    fn an_excerpt_drops_a_character_cut_at_its_end() {
        let mut body = "b".repeat(EXCERPT - 1).into_bytes();
        body.extend_from_slice("é".as_bytes());
        let text = excerpt(&body).unwrap();
        assert_eq!(text.len(), EXCERPT - 1);
        assert!(text.chars().all(|c| c == 'b'));
    }
}
