//! The vector files of `gradmat quadform` on arbitrary bytes (see `gradmat_apps::fuzz::check_vector`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gradmat_apps::fuzz::check_vector(data);
});
