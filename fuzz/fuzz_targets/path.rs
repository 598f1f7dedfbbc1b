//! Path normalisation: a normalised path is absolute, has no dot segments and no empty
//! segments, and is already normal (normalising it again changes nothing).
#![no_main]

use std::borrow::Cow;

use gateway::config::EncodedSlash;
use gateway::router::normalize_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for policy in [
        EncodedSlash::Reject,
        EncodedSlash::Keep,
        EncodedSlash::Decode,
    ] {
        let Ok(path) = normalize_path(raw, policy) else {
            continue;
        };
        assert!(path.starts_with('/'), "{raw:?} → {path:?}: not absolute");
        for segment in path[1..].split('/') {
            assert!(
                segment != "." && segment != "..",
                "{raw:?} → {path:?}: dot segment"
            );
        }
        assert!(!path.contains("//"), "{raw:?} → {path:?}: empty segment");
        match normalize_path(&path, policy) {
            Ok(Cow::Borrowed(again)) => assert_eq!(again, &*path),
            other => panic!("{raw:?} → {path:?} → {other:?}: not idempotent"),
        }
    }
});
