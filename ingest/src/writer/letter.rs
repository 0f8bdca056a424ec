//! Dead letters as sent to the dead-letter topic: unchanged, or truncated with
//! the original's size and digest when too large for the topic.

use rdkafka::message::{Header, OwnedHeaders};

use crate::batch::DeadLetter;

/// A dead letter as sent: the rejected bytes unchanged, or, when key, value and headers
/// would pass `max` bytes, a truncated copy whose headers give the original's size and
/// SHA-256 so it can be found and matched at the source.
pub(super) struct Letter<'a> {
    pub(super) key: Option<&'a [u8]>,
    pub(super) value: Option<&'a [u8]>,
    error: &'a str,
    source: &'a str,
    /// `(size of the value, its SHA-256 in hex)` when truncated.
    pub(super) original: Option<(usize, String)>,
}

/// Room kept for the headers of a truncated copy and the record's own framing.
const HEADER_ROOM: usize = 1024;

impl<'a> Letter<'a> {
    pub(super) fn of(d: &'a DeadLetter, max: usize) -> Self {
        let key = d.key.as_deref();
        let value = d.value.as_deref();
        let size = key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len);
        // The reason is at most a few hundred bytes (it quotes at most 40 characters of
        // a field), but bound it anyway: it is built from the message.
        let error = truncate_utf8(&d.error, 512);
        if size + error.len() + d.source.len() + HEADER_ROOM <= max {
            return Self {
                key,
                value,
                error,
                source: &d.source,
                original: None,
            };
        }
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(value.unwrap_or_default());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let room = max.saturating_sub(error.len() + d.source.len() + 2 * HEADER_ROOM);
        let key = key.map(|k| &k[..k.len().min(room / 4)]);
        let room = room - key.map_or(0, <[u8]>::len);
        Self {
            key,
            value: value.map(|v| &v[..v.len().min(room)]),
            error,
            source: &d.source,
            original: Some((value.map_or(0, <[u8]>::len), hex)),
        }
    }

    pub(super) fn headers(&self) -> OwnedHeaders {
        let mut h = OwnedHeaders::new()
            .insert(Header {
                key: "spectra-error",
                value: Some(self.error.as_bytes()),
            })
            .insert(Header {
                key: "spectra-source",
                value: Some(self.source.as_bytes()),
            });
        if let Some((size, sha)) = &self.original {
            let size = size.to_string();
            h = h
                .insert(Header {
                    key: "spectra-truncated",
                    value: Some(b"true".as_slice()),
                })
                .insert(Header {
                    key: "spectra-original-size",
                    value: Some(size.as_bytes()),
                })
                .insert(Header {
                    key: "spectra-original-sha256",
                    value: Some(sha.as_bytes()),
                });
        }
        h
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(value: Vec<u8>) -> DeadLetter {
        DeadLetter {
            key: Some(b"PL-1".to_vec()),
            value: Some(value),
            error: "net_value is not a finite number".into(),
            source: "invoices/0/7".into(),
            class: "bad_number",
        }
    }

    #[test]
    fn small_dead_letters_go_unchanged() {
        let d = letter(b"{\"x\":1}".to_vec());
        let l = Letter::of(&d, 10_000);
        assert_eq!(l.value, d.value.as_deref());
        assert_eq!(l.key, d.key.as_deref());
        assert!(l.original.is_none());
    }

    #[test]
    fn a_poison_pill_is_truncated_with_its_size_and_digest() {
        let big = vec![b'x'; 5_000_000];
        let d = letter(big.clone());
        let l = Letter::of(&d, 100_000);
        let v = l.value.unwrap();
        assert!(v.len() < 100_000 && v.len() > 90_000, "{}", v.len());
        assert_eq!(v, &big[..v.len()]);
        let (size, sha) = l.original.clone().unwrap();
        assert_eq!(size, 5_000_000);
        use sha2::Digest as _;
        let want: String = sha2::Sha256::digest(&big)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sha, want);
        let h = l.headers();
        use rdkafka::message::Headers as _;
        let names: Vec<_> = h.iter().map(|h| h.key.to_owned()).collect();
        assert_eq!(
            names,
            [
                "spectra-error",
                "spectra-source",
                "spectra-truncated",
                "spectra-original-size",
                "spectra-original-sha256"
            ]
        );
    }
}
