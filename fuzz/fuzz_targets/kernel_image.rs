#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| xenguest_fuzz::checks::kernel_image(data));
