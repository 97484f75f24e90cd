//! The Matrix Market reader on arbitrary bytes: typed error, or a file that round-trips and
//! converts to valid CSR (see `gradmat_operators::fuzz::check_matrix_market`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gradmat_operators::fuzz::check_matrix_market(data);
});
