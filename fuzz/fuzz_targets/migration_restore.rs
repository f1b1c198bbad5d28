#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| xenguest_fuzz::checks::migration_restore(data));
