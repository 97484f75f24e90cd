# Reference values for crates/apps/tests/cli_exact.rs::bcsstk14_full_depth_matches_dense
# (run by hand: `python3 data/matrices/bcsstk14_reference.py data/matrices/bcsstk14.mtx.gz`,
# needs numpy and scipy; about 9 minutes on 2 cores).
#
# The values of vᵀ A^{-1/2} v and vᵀ log(A) v come from integral representations evaluated with
# LAPACK Cholesky solves only (trapezoid rule in t = log s, 1,601 nodes on [-40, 40]):
#   log λ = ∫₀^∞ (1/(1+s) − 1/(λ+s)) ds,   λ^{-1/2} = (2/π) ∫₀^∞ du/(λ + u²),
# because a dense eigendecomposition is accurate only to ε‖A‖ in the small eigenvalues
# (cond(A) ≈ 1.2e10): LAPACK's dsyevd differs from the Cholesky value of vᵀA⁻¹v by 7e-8 here.
# Printed: seed, vᵀA⁻¹v (Cholesky, eigh) | vᵀA^{-1/2}v (eigh, integral) | vᵀlog(A)v (eigh, integral).
# Measured output (numpy 2.4.6, scipy 1.17.1):
# 1 32.14342090523725 32.14341860056403 | isq 33.63265953766758 33.6326606921183 | log 18641.509982298485 18641.509976453137
# 2 25.331695215815312 25.33169367450784 | isq 27.233301875324297 27.233302645417496 | log 18556.73301899427 18556.73301425844
import numpy as np, scipy.io, gzip, scipy.linalg, sys
A = scipy.io.mmread(gzip.open(sys.argv[1])).toarray(); n = A.shape[0]
def vec(seed):
    i = np.arange(n, dtype=np.float64)
    return np.sin(1.0 + i * (0.7 + 0.1 * seed)) + 0.5 * np.cos(3.0 * i / n + seed)
w, U = np.linalg.eigh(A)
for seed in [1, 2]:
    v = vec(seed); c = U.T @ v
    inv_chol = v @ scipy.linalg.cho_solve(scipy.linalg.cho_factor(A), v)
    eig = {'inv': np.sum(c**2 / w), 'inv-sqrt': np.sum(c**2 / np.sqrt(w)), 'log': np.sum(c**2 * np.log(w))}
    # Integral representations with Cholesky solves (trapezoid in t = log s):
    #  log λ = ∫ (1/(1+s) − 1/(λ+s)) ds,  λ^{-1/2} = (2/π) ∫₀^∞ 1/(λ + u²) du.
    ts = np.linspace(-40, 40, 1601); h = ts[1] - ts[0]; vv = v @ v
    log_int = 0.0; isq_int = 0.0
    for t in ts:
        s = np.exp(t)
        q = v @ scipy.linalg.cho_solve(scipy.linalg.cho_factor(A + s * np.eye(n)), v)
        log_int += h * s * (vv / (1 + s) - q)
        q2 = v @ scipy.linalg.cho_solve(scipy.linalg.cho_factor(A + s * s * np.eye(n)), v)
        isq_int += h * s * (2 / np.pi) * q2
    print(seed, repr(inv_chol), repr(eig['inv']), '| isq', repr(eig['inv-sqrt']), repr(isq_int), '| log', repr(eig['log']), repr(log_int))
