//! Arnoldi and its adjoint on small arbitrary matrices and vectors (see `gradmat_adjoint::fuzz::check_arnoldi`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gradmat_adjoint::fuzz::check_arnoldi(data);
});
