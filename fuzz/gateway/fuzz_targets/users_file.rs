#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sparkgate_fuzz_gateway::users_file::check(data));
