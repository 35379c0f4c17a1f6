//! See `domvia_calls::fuzz_entry::hub` for what the input means and which invariants are checked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| domvia_calls::fuzz_entry::hub(data));
