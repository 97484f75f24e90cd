//! The dense matrix functions on arbitrary small matrices (see `gradmat_matfun::fuzz::check_dense_matfun`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gradmat_matfun::fuzz::check_dense_matfun(data);
});
