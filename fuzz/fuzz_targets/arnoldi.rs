//! Arnoldi and its adjoint on small arbitrary matrices and vectors (see
//! `gradmat_reliability::check_arnoldi`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gradmat_reliability::check_arnoldi(data);
});
