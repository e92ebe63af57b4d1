//! What pgpatrol needs of etcd v3's JSON gateway (the API Patroni's `etcd3` DCS uses): keys
//! and values travel base64-encoded.

/// Standard base64 with padding (etcd's JSON gateway encodes keys this way).
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"/service/demo/"), "L3NlcnZpY2UvZGVtby8=");
    }
}
