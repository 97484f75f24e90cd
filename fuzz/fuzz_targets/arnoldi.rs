//! Arnoldi and its adjoint on small arbitrary matrices and vectors (see
//! `gradmat_apps::fuzz_checks::check_arnoldi`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gradmat_apps::fuzz_checks::check_arnoldi(data);
});
