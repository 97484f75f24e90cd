//! Lanczos and its adjoint on small arbitrary matrices and vectors (see `gradmat_adjoint::fuzz::check_lanczos`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gradmat_adjoint::fuzz::check_lanczos(data);
});
