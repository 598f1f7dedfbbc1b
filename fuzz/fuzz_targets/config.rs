//! Config parsing and validation: any text is a config or a list of errors, each with a
//! position inside the text and a message; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = gateway::config::load_str(text, "fuzz.yaml") {
        assert!(
            !errors.0.is_empty(),
            "an error result names at least one error"
        );
        // Lines as YAML counts them: LF, CRLF and a lone CR each end one.
        let lines =
            text.matches('\n').count() + text.replace("\r\n", "\n").matches('\r').count() + 1;
        for e in &errors.0 {
            assert_eq!(e.file, "fuzz.yaml");
            assert!(e.line <= lines, "{e}: line past the end of {lines} lines");
            assert!(!e.message.is_empty(), "{e}: no message");
        }
    }
});
