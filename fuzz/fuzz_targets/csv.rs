//! The GP's numeric CSV reader on arbitrary bytes (see `gradmat_apps::fuzz::check_csv`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gradmat_apps::fuzz::check_csv(data);
});
