//! The dense matrix functions on arbitrary small matrices (see
//! `gradmat_apps::fuzz_checks::check_dense_matfun`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gradmat_apps::fuzz_checks::check_dense_matfun(data);
});
