#!/usr/bin/env python3
"""Writes the hand-made seed inputs of fuzz/corpus/<target>/ (seed-*). Files the fuzzers found
and minimised (`cargo fuzz cmin`) sit beside them without the seed- prefix.

The binary targets decode bytes with gradmat_operators::fuzz::bytes::Bytes: range(lo, hi) is one
byte mod (hi-lo+1), f64 is one byte b < 0xF0 -> (int8)b / 8, 0xF0..0xFE -> special values
(0, -0, NaN, inf, -inf, 1e300, -1e300, 1e-300, 5e-324, MAX, 1e154, 1e-154, 1+eps, 1e16, -1e-8),
0xFF -> 8 raw little-endian bytes."""
import gzip, os, struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


class S(int):
    """A special-value tag byte."""


NAN, INF, NINF, BIG, TINY, SUB = (S(b) for b in (0xF2, 0xF3, 0xF4, 0xF5, 0xF7, 0xF8))


def f(x):
    """Byte(s) decoding to x (x a multiple of 1/8 in [-16, 13.875]; S tags as themselves)."""
    if isinstance(x, S):
        return bytes([x])
    b = int(round(x * 8))
    assert -128 <= b <= 111
    return bytes([b & 0xFF])


def raw(x):
    return bytes([0xFF]) + struct.pack("<d", x)


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as fh:
        fh.write(data if isinstance(data, bytes) else data.encode())


# --- matrix_market -----------------------------------------------------------------------------
H = "%%MatrixMarket matrix "
mm = {
    "coord-sym": H + "coordinate real symmetric\n% a comment\n3 3 4\n1 1 2\n2 1 -1\n2 2 2\n3 3 1\n",
    "coord-general": H + "coordinate real general\n2 3 3\n1 1 1.5\n2 3 -2e-3\n1 2 7\n",
    "coord-dup": H + "coordinate real general\n2 2 3\n1 1 1\n1 1 2\n2 2 1e308\n",
    "coord-overflow-dup": H + "coordinate real general\n2 2 2\n1 1 1.7e308\n1 1 1.7e308\n",
    "pattern": H + "coordinate pattern symmetric\n4 4 3\n2 1\n3 2\n4 4\n",
    "integer": H + "coordinate integer general\n2 2 2\n1 1 3\n2 2 -4\n",
    "array-general": H + "array real general\n2 2\n1\n2\n3\n4\n",
    "array-sym": H + "array real symmetric\n3 3\n1\n2\n3\n4\n5\n6\n",
    "empty": "",
    "header-only": H + "coordinate real general\n",
    "bad-header": "%%MatrixMarket vector coordinate real general\n1 1 1\n1 1 1\n",
    "complex": H + "coordinate complex general\n1 1 1\n1 1 1 0\n",
    "truncated": H + "coordinate real general\n3 3 5\n1 1 1\n2 2 2\n",
    "too-many": H + "coordinate real general\n1 1 1\n1 1 1\n1 1 2\n",
    "nan": H + "coordinate real general\n2 2 1\n1 1 nan\n",
    "inf-overflow": H + "coordinate real general\n2 2 1\n1 1 1e400\n",
    "index-zero": H + "coordinate real general\n2 2 1\n0 1 1\n",
    "index-big": H + "coordinate real general\n2 2 1\n3 1 1\n",
    "huge-header": H + "coordinate real general\n1000000000 1000000000 1\n1 1 1\n",
    "huge-nnz": H + "coordinate real general\n3 3 18446744073709551615\n1 1 1\n",
    "huge-array": H + "array real general\n4294967296 4294967296\n1\n",
    "sym-both-triangles": H + "coordinate real symmetric\n2 2 2\n1 2 1\n2 1 1\n",
    "sym-nonsquare": H + "coordinate real symmetric\n2 3 1\n1 1 1\n",
    "crlf": (H + "coordinate real general\r\n% c\r\n2 2 1\r\n1 1 1\r\n"),
    "tokens": H + "coordinate real general\n2 2 1\n1 1\n",
    "garbage-number": H + "coordinate real general\n2 2 1\n1 1 1.0.0\n",
    "blank-lines": H + "coordinate real general\n\n\n2 2 1\n\n1 1 1\n\n",
    "skew": H + "coordinate real skew-symmetric\n2 2 1\n2 1 1\n",
}
for k, v in mm.items():
    write("matrix_market", k, v)
write("matrix_market", "gzip", gzip.compress(mm["coord-sym"].encode(), mtime=0))
write("matrix_market", "gzip-truncated", gzip.compress(mm["coord-general"].encode(), mtime=0)[:25])
write("matrix_market", "binary", bytes(range(256)))

# --- csr_raw_parts -----------------------------------------------------------------------------
# nrows, ncols, mode, [rp_len], rp..., [nnz], ci..., [nv], v..., x(6), t, tr..., tc..., tv...
def csr(nrows, ncols, mode, rp, ci, v, rest=b""):
    out = bytes([nrows, ncols, mode])
    if mode & 1:
        out += bytes([len(rp)])
    out += bytes(rp)
    if mode & 4:
        out += bytes([len(ci)])
    out += bytes(ci)
    if mode & 16:
        out += bytes([len(v)])
    for x in v:
        out += f(x) if isinstance(x, (int, float)) else bytes([x])
    out += b"".join(f(x) for x in [1, -1, 0.5, 2, 3, -0.25])
    return out + rest

# valid 3x3 (cumulative counts 0,2,1,2 -> row ptr 0,2,3,5)
write("csr_raw_parts", "valid-3x3", csr(3, 3, 0, [0, 2, 1, 2], [0, 1, 1, 0, 2], [1, 2, 3, 4, 5]))
write("csr_raw_parts", "valid-empty", csr(0, 0, 0, [0], [], []))
write("csr_raw_parts", "rect", csr(2, 4, 0, [0, 3, 1], [0, 2, 3, 1], [1, -1, 2, 0.5]))
write("csr_raw_parts", "nan-value", csr(2, 2, 0, [0, 1, 1], [0, 1], [NAN, 1]))
write("csr_raw_parts", "unsorted", csr(2, 2, 8, [0, 2, 0], [1, 0], [1, 1]))
write("csr_raw_parts", "col-oob", csr(2, 2, 8, [0, 1, 1], [5, 1], [1, 1]))
write("csr_raw_parts", "rp-decreasing", csr(2, 2, 2 | 1, [0, 2, 1], [0, 1], [1, 1]))
write("csr_raw_parts", "rp-short", csr(3, 3, 1, [0, 1], [0], [1]))
write("csr_raw_parts", "values-short", csr(2, 2, 16, [0, 1, 1], [0, 1], [1]))
write("csr_raw_parts", "symmetric", csr(2, 2, 0, [0, 2, 2], [0, 1, 0, 1], [2, -1, -1, 2]))
write("csr_raw_parts", "triplets", csr(2, 2, 0, [0, 0, 0], [], [],
      bytes([4, 0, 1, 1, 0, 0, 1, 1, 0]) + f(1) + f(2) + f(3) + f(-1)))
write("csr_raw_parts", "triplets-overflow", csr(2, 2, 0, [0, 0, 0], [], [],
      bytes([2, 0, 0, 0, 0]) + raw(1.7e308) + raw(1.7e308)))

# --- lanczos / arnoldi -------------------------------------------------------------------------
# n-1, mode, entries (n*n), v (n), k, cotangents...
def krylov(n, mode, a, v, k, cot=b""):
    out = bytes([n - 1, mode])
    out += b"".join(f(x) if isinstance(x, (int, float)) else bytes([x]) for x in a)
    out += b"".join(f(x) if isinstance(x, (int, float)) else bytes([x]) for x in v)
    return out + bytes([k]) + cot

lap4 = [2, -1, 0, 0, -1, 2, -1, 0, 0, -1, 2, -1, 0, 0, -1, 2]
nonsym3 = [1, 0, 0, 5, 1, 0, 0, 5, 1]
cot4 = b"".join(f(x) for x in [1, 0.5, -1, 2, 1, 1, 1]) + bytes([7]) + b"\x08" * 16 + b"\x08" * 4 + f(1)
for target in ("lanczos", "arnoldi"):
    for name, data in {
        "lap4-k3": krylov(4, 0, lap4, [1, 0.5, -1, 2], 3, cot4),
        "lap4-full": krylov(4, 2, lap4, [1, 1, 1, 1], 4, cot4),
        "breakdown": krylov(4, 0, lap4, [1, 0, 0, 1], 4, cot4),  # symmetric v: invariant subspace
        "identity": krylov(3, 0, [1, 0, 0, 0, 1, 0, 0, 0, 1], [1, 2, 3], 3, cot4),
        "zero-v": krylov(3, 0, [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0], 2),
        "nan-v": krylov(2, 0, [1, 0, 0, 1], [NAN, 1], 2),
        "k0": krylov(2, 0, [1, 0, 0, 1], [1, 1], 0),
        "k-too-big": krylov(2, 0, [1, 0, 0, 1], [1, 1], 2),  # range(0, n+1): 2 -> K=2 ok; below 3
        "inf-op": krylov(2, 0, [INF, 0, 0, 1], [1, 1], 2),
        "nan-op": krylov(3, 1, [1, NAN, 0, 0, 1, 0, 0, 0, 1], [1, 1, 1], 3),
        "nonsym": krylov(3, 1, nonsym3, [1, 1, 1], 3, cot4),
        "nonsym-checked": krylov(3, 5, nonsym3, [1, 1, 1], 3, cot4),
        "huge": krylov(2, 0, [BIG, 0, 0, BIG], [1, 1], 2, cot4),
        "subnormal-v": krylov(2, 0, [1, 0, 0, 2], [SUB, 0], 2, cot4),
        "nan-cotangent": krylov(2, 0, [1, 0, 0, 2], [1, 1], 2, bytes([NAN]) * 8),
    }.items():
        write(target, name, data)
    write(target, "k-n-plus-1", krylov(2, 0, [1, 0, 0, 1], [1, 1], 3))

# --- dense_matfun ------------------------------------------------------------------------------
# n, mode, fsel, param, entries, mbar, rho
def dm(n, mode, fsel, param, a, mbar=None, rho=1):
    out = bytes([n, mode, fsel]) + (f(param) if isinstance(param, (int, float)) else bytes([param]))
    out += b"".join(f(x) if isinstance(x, (int, float)) else bytes([x]) for x in a)
    mbar = mbar if mbar is not None else [1] * (n * n)
    out += b"".join(f(x) for x in mbar) + f(rho)
    return out

spd3 = [4, 1, 0, 1, 3, 1, 0, 1, 2]
indef2 = [1, 2, 2, 1]
for i, name in enumerate(["exp", "scaled-exp", "log", "sqrt", "inv-sqrt", "inv", "powi", "pow"]):
    write("dense_matfun", name + "-spd", dm(3, 0, i, 0.5, spd3))
    write("dense_matfun", name + "-indef", dm(2, 0, i, -2, indef2))
write("dense_matfun", "empty", dm(0, 0, 0, 0, []))
write("dense_matfun", "nonsym", dm(2, 1, 2, 0, [1, 0, 3, 1]))
write("dense_matfun", "nan", dm(2, 0, 0, 0, [NAN, 0, 0, 1]))
write("dense_matfun", "exp-overflow", dm(2, 0, 0, 0, [BIG, 0, 0, 1]))
write("dense_matfun", "exp-big-norm", dm(2, 1, 0, 0, [13, 13, -13, 13]))
write("dense_matfun", "wrong-len", dm(2, 8, 0, 0, []) )
write("dense_matfun", "singular-log", dm(2, 0, 2, 0, [1, 1, 1, 1]))
write("dense_matfun", "scaled-nan-t", dm(2, 0, 1, NAN, [1, 0, 0, 1]))

# --- idx (the BNN pipeline's IDX reader: plain or gzip) -----------------------------------------
def idx(dims, data, ty=0x08):
    return bytes([0, 0, ty, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


write("idx", "labels", idx([5], [0, 1, 2, 9, 3]))
write("idx", "images", idx([2, 3, 2], range(12)))
write("idx", "empty-dim", idx([0, 28, 28], []))
write("idx", "gzip", gzip.compress(idx([2, 2], [1, 2, 3, 4]), mtime=0))
write("idx", "gzip-truncated", gzip.compress(idx([4], [1, 2, 3, 4]), mtime=0)[:20])
write("idx", "bad-magic", b"\x00\x01\x08\x01\x00\x00\x00\x01\x05")
write("idx", "float-type", idx([1], [0, 0, 0, 0], ty=0x0D))
write("idx", "zero-ndim", bytes([0, 0, 8, 0]))
write("idx", "truncated-header", idx([3, 3], [])[:9])
write("idx", "truncated-data", idx([3, 3], range(5)))
write("idx", "trailing", idx([2], [1, 2, 3]))
write("idx", "overflow-dims", idx([0xFFFFFFFF] * 3, []))
write("idx", "empty", b"")

# --- vector (gradmat quadform --vector: one number per line) -----------------------------------
vec = {
    "plain": "1\n2.5\n-3e-1\n",
    "comments": "# v\n\n  1 \n#x\n  # y\n-0\n",
    "crlf": "1\r\n2\r\n",
    "subnormal": "5e-324\n1e-310\n1.7976931348623157e308\n",
    "nan": "1\nnan\n",
    "inf": "1e400\n",
    "two-per-line": "1 2\n",
    "not-a-number": "1\nabc\n",
    "empty": "",
    "utf8": "1\n\u00e9\n",
    "hex": "0x10\n",
}
for k, v in vec.items():
    write("vector", k, v)
write("vector", "latin1", b"1\n\xe9\n")
write("vector", "nul", b"1\n\x00\n")
