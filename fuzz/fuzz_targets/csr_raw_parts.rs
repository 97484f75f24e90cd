//! CSR construction from raw parts and from triplets (see `gradmat_operators::fuzz::check_csr_raw_parts`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gradmat_operators::fuzz::check_csr_raw_parts(data);
});
