#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| xenguest_fuzz::cli_checks::int_option(data));
