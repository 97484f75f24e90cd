//! The Matrix Market reader never panics: any byte string gives a typed error or a file whose
//! entries are in range and finite, and that converts to CSR or fails with a typed error.
#![no_main]

use gradmat_operators::matrix_market::read_matrix_market_from;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = read_matrix_market_from::<f64, _>(data) {
        let _ = file.to_csr();
        let _ = file.to_sym_csr();
    }
});
