//! The BNN pipeline's IDX reader on arbitrary bytes (plain or gzip) (see `gradmat_apps::fuzz::check_idx`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gradmat_apps::fuzz::check_idx(data);
});
