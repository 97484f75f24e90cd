//! Calibration metrics against hand-computed values, and the diagonal sampler's covariance.

use gradmat_apps::bnn::predict::{
    auroc, diagonal_offsets, expected_calibration_error, metrics, Predictions,
};

#[test]
fn auroc_by_hand() {
    assert!((auroc(&[0.9, 0.8], &[0.1, 0.2]) - 1.0).abs() < 1e-15);
    assert!(auroc(&[0.1], &[0.9]).abs() < 1e-15);
    // Pairs: (0.5 vs 0.5) tie = ½, (0.5 vs 0.2) = 1, (0.3 vs 0.5) = 0, (0.3 vs 0.2) = 1 → 2.5/4.
    assert!((auroc(&[0.5, 0.3], &[0.5, 0.2]) - 0.625).abs() < 1e-15);
    assert!(auroc(&[], &[0.1]).is_nan());
}

#[test]
fn ece_and_metrics_by_hand() {
    // Two classes, three points. Confidences 0.9 (correct), 0.6 (wrong), 0.95 (correct).
    let probs = vec![0.9, 0.1, 0.6, 0.4, 0.05, 0.95];
    let labels = [0, 1, 1];
    // 15 bins of width 1/15: 0.9 → bin 13, 0.6 → bin 9, 0.95 → bin 14.
    // ECE = (1/3)(|1 − 0.9| + |0 − 0.6| + |1 − 0.95|) = 0.75/3 = 0.25.
    let ece = expected_calibration_error(&probs, 2, &labels, 15);
    assert!((ece - 0.25).abs() < 1e-14, "{ece}");
    // With one bin: |2/3 − (0.9 + 0.6 + 0.95)/3| = |0.6667 − 0.8167| = 0.15.
    let ece1 = expected_calibration_error(&probs, 2, &labels, 1);
    assert!((ece1 - 0.15).abs() < 1e-14, "{ece1}");
    let pred = Predictions {
        probs: probs.clone(),
        log_pred: vec![0.9f64.ln(), 0.4f64.ln(), 0.95f64.ln()],
        sample_loglik: vec![-1.0, -3.0],
        classes: 2,
    };
    let m = metrics(&pred, &labels);
    assert!((m.accuracy - 2.0 / 3.0).abs() < 1e-15);
    let nlpd = -(0.9f64.ln() + 0.4f64.ln() + 0.95f64.ln()) / 3.0;
    assert!((m.nlpd - nlpd).abs() < 1e-15);
    // (1/3) log((e⁻¹ + e⁻³)/2).
    let jl = ((-1f64).exp() + (-3f64).exp()).ln() - 2f64.ln();
    assert!((m.joint_loglik - jl / 3.0).abs() < 1e-15);
}

#[test]
fn diagonal_samples_have_the_diagonal_variance() {
    // Var(z/√(d+α)) = 1/(d+α). With 4000 samples the relative standard error of a sample
    // variance is √(2/4000) ≈ 0.022; 5 standard errors = 0.11.
    let d = [0.0, 3.0, 8.0];
    let groups: Vec<std::ops::Range<usize>> = std::iter::once(0..3).collect();
    let s = diagonal_offsets(&d, &groups, &[1.0], 4000, 3);
    for i in 0..3 {
        let var: f64 = s.iter().map(|v| v[i] * v[i]).sum::<f64>() / s.len() as f64;
        let want = 1.0 / (d[i] + 1.0);
        assert!((var / want - 1.0).abs() < 0.11, "{i}: {var} vs {want}");
    }
}
