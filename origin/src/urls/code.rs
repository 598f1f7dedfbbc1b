//! Generated short codes: random base62.

use rand::Rng;

/// Length of a generated code: 62^7 ≈ 3.5 × 10^12 codes, so collisions are rare and retried.
pub const LEN: usize = 7;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A new random code of [`LEN`] base62 characters (from the thread's CSPRNG, so codes cannot
/// be guessed from earlier ones).
pub fn generate() -> String {
    let mut rng = rand::rng();
    (0..LEN)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_base62_of_the_right_length_and_vary() {
        let codes: HashSet<String> = (0..1000).map(|_| generate()).collect();
        assert_eq!(codes.len(), 1000);
        for c in &codes {
            assert_eq!(c.len(), LEN);
            assert!(c.bytes().all(|b| b.is_ascii_alphanumeric()), "{c}");
        }
    }
}
